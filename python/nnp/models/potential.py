"""The potential wrapper: a backbone's per-atom energies -> energy, forces and virials (the contract).

Forces come from one gradient over the edge vectors, ``g_e = dE/dr_e`` with ``r_e = x_j - x_i``:
``F_i += g_e``, ``F_j -= g_e``, ``W = -sum_e r_e (x) g_e``. Periodic images and LAMMPS ghost atoms are
therefore handled the same way: they only ever enter through edge vectors.

This module is the one force/virial path: :meth:`Potential.contract_outputs` gives the contract's outputs
to the TorchScript file (:meth:`Potential.forward`) and to the ``.pt2`` export (nnp.export_pt2), and
training (:func:`nnp.train.predict.predict_batch`) calls the same :meth:`Potential.energy_and_forces`.

Every backbone declares its task head as ``HEAD``: the names of its submodules that map latent features
to the target (the energy readout). Everything else is the transferable backbone; optimiser groups,
freezing and pretrained-weight transfer all read this one declaration (:func:`is_head`).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn


class Potential(nn.Module):
    """Wraps an energy backbone ``backbone(species, edge_index, edge_vectors) -> (N,)``.

    Per-atom energy: ``e_i = scale * backbone_i + shift + ref[species_i]`` where ``ref`` are the
    per-species reference energies (least-squares fit on the training set), ``shift`` and ``scale``
    normalise the backbone output.
    """

    def __init__(
        self,
        backbone: nn.Module,
        species: List[str],
        cutoff: float,
        num_interactions: int,
        model_kind: str,
        reference_energies: Tensor | None = None,
        scale: float = 1.0,
        shift: float = 0.0,
    ):
        super().__init__()
        self.backbone = backbone
        self.species: List[str] = list(species)
        self.cutoff = float(cutoff)
        self.num_interactions = int(num_interactions)
        self.model_kind = model_kind
        ref = torch.zeros(len(species)) if reference_energies is None else reference_energies.clone()
        self.register_buffer("reference_energies", ref.to(torch.get_default_dtype()))
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.register_buffer("shift", torch.tensor(float(shift)))

    def head_prefixes(self) -> Tuple[str, ...]:
        """State-dict prefixes of the task head (the backbone's declared ``HEAD``)."""
        return tuple(f"backbone.{name}" for name in self.backbone.HEAD)

    @torch.jit.export
    def node_features(self, species: Tensor, edge_index: Tensor, edge_vectors: Tensor) -> Tensor:
        """Per-atom latent features of the backbone (for analyses; not part of the MD contract)."""
        return self.backbone.node_features(species, edge_index, edge_vectors)

    def atom_energies(self, species: Tensor, edge_index: Tensor, edge_vectors: Tensor) -> Tensor:
        raw = self.backbone(species, edge_index, edge_vectors)
        return raw * self.scale + self.shift + self.reference_energies[species]

    def energy_and_forces(
        self, species: Tensor, edge_index: Tensor, edge_vectors: Tensor, num_local: int, create_graph: bool
    ) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """Per-atom energies ``e_i``, forces on every node and ``g_e = dE_local/dr_e`` for every edge.

        ``E_local`` sums the energies of nodes ``< num_local``. ``create_graph`` keeps the graph of the
        gradient (training on forces needs it).
        """
        local = torch.arange(species.shape[0], device=species.device) < num_local
        return self.local_energy_and_forces(species, edge_index, edge_vectors, local, create_graph)

    def local_energy_and_forces(
        self, species: Tensor, edge_index: Tensor, edge_vectors: Tensor, local: Tensor, create_graph: bool
    ) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """:meth:`energy_and_forces` with ``local`` a (N,) bool mask of the nodes whose energies count."""
        if not edge_vectors.requires_grad:
            edge_vectors = edge_vectors.detach().requires_grad_(True)
        atom_energy = self.atom_energies(species, edge_index, edge_vectors)
        total = torch.where(local, atom_energy, torch.zeros_like(atom_energy)).sum()
        grads = torch.autograd.grad([total], [edge_vectors], create_graph=create_graph, allow_unused=True)
        grad = grads[0]
        if grad is None:  # no edges reach the energy
            grad = torch.zeros_like(edge_vectors)
        return atom_energy, forces_from_edge_gradient(grad, edge_index, species.shape[0]), grad

    def contract_outputs(
        self, species: Tensor, edge_index: Tensor, edge_vectors: Tensor, local: Tensor, create_graph: bool
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """The five outputs of the contract (energy, atom_energy, forces, virial, atom_virial) for the
        ``local`` nodes' energy: the one output path of training, TorchScript files and ``.pt2`` files."""
        atom_energy, forces, grad = self.local_energy_and_forces(species, edge_index, edge_vectors, local,
                                                                 create_graph)
        n = species.shape[0]
        # The two sums over the whole system (energy, virial) are accumulated in float64 whatever the
        # model dtype: a float32 sum of N atom energies of -50 eV each would carry errors of ~1e-3 eV
        # that NVE energy tracking would see. Per-atom outputs stay in the model dtype.
        energy = torch.where(local, atom_energy, torch.zeros_like(atom_energy)).to(torch.float64).sum()
        if grad is None:  # direct forces: no strain derivative
            virial = torch.zeros((3, 3), dtype=torch.float64, device=forces.device)
            atom_virial = torch.zeros((n, 3, 3), dtype=forces.dtype, device=forces.device)
        else:
            per_edge = edge_virials(grad, edge_vectors)
            virial = per_edge.to(torch.float64).sum(0)
            atom_virial = atom_virial_from_edge_virials(per_edge, edge_index, n)
        return energy, atom_energy, forces, virial, atom_virial

    def forward(
        self, species: Tensor, edge_index: Tensor, edge_vectors: Tensor, num_local: int
    ) -> Dict[str, Tensor]:
        local = torch.arange(species.shape[0], device=species.device) < num_local
        energy, atom_energy, forces, virial, atom_virial = self.contract_outputs(
            species, edge_index, edge_vectors, local, self.training)
        return {"energy": energy, "atom_energy": atom_energy, "forces": forces, "virial": virial,
                "atom_virial": atom_virial}


def is_head(name: str, head_prefixes: Tuple[str, ...]) -> bool:
    """Whether parameter/buffer ``name`` belongs to one of the head modules ``head_prefixes``."""
    return any(name == p or name.startswith(p + ".") for p in head_prefixes)


def forces_from_edge_gradient(grad: Tensor, edge_index: Tensor, num_nodes: int) -> Tensor:
    """``F_i += g_e``, ``F_j -= g_e`` for every edge ``e = (i, j)``."""
    forces = torch.zeros((num_nodes, 3), dtype=grad.dtype, device=grad.device)
    forces.index_add_(0, edge_index[0], grad)
    forces.index_add_(0, edge_index[1], -grad)
    return forces


def edge_virials(grad: Tensor, edge_vectors: Tensor) -> Tensor:
    """Each edge's virial ``-r_e (x) dE/dr_e`` (E, 3, 3); the total virial is their sum."""
    return -edge_vectors.unsqueeze(2) * grad.unsqueeze(1)


def atom_virial_from_edge_virials(per_edge: Tensor, edge_index: Tensor, num_nodes: int) -> Tensor:
    """Per-atom virials: each edge's virial split half to its centre, half to its neighbour."""
    half = 0.5 * per_edge
    virial = torch.zeros((num_nodes, 3, 3), dtype=per_edge.dtype, device=per_edge.device)
    virial.index_add_(0, edge_index[0], half)
    virial.index_add_(0, edge_index[1], half)
    return virial


class DirectForcePotential(Potential):
    """A potential whose forces come from a head (GemNet-dT), not from the energy gradient.

    The backbone provides ``energy_and_edge_forces(species, edge_index, edge_vectors)``: atom energies
    and one force vector per edge, acting on the edge's centre atom. Not energy conserving in NVE;
    ``virial`` and ``atom_virial`` are zero (the head gives no strain derivative).
    """

    def local_energy_and_forces(
        self, species: Tensor, edge_index: Tensor, edge_vectors: Tensor, local: Tensor, create_graph: bool
    ) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        raw, edge_forces = self.backbone.energy_and_edge_forces(species, edge_index, edge_vectors)
        atom_energy = raw * self.scale + self.shift + self.reference_energies[species]
        n = species.shape[0]
        forces = torch.zeros((n, 3), dtype=edge_forces.dtype, device=edge_forces.device)
        forces = forces.index_add_(0, edge_index[0], edge_forces * self.scale)
        # ghosts' own forces belong to another rank's local atom: only local forces are meaningful
        forces = torch.where(local.unsqueeze(-1), forces, torch.zeros_like(forces))
        return atom_energy, forces, None

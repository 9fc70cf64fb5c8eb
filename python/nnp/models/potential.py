"""The potential wrapper: a backbone's per-atom energies -> energy, forces and virials (the contract).

Forces come from one gradient over the edge vectors, ``g_e = dE/dr_e`` with ``r_e = x_j - x_i``:
``F_i += g_e``, ``F_j -= g_e``, ``W = -sum_e r_e (x) g_e``. Periodic images and LAMMPS ghost atoms are
therefore handled the same way: they only ever enter through edge vectors.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

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

    @torch.jit.export
    def node_features(self, species: Tensor, edge_index: Tensor, edge_vectors: Tensor) -> Tensor:
        """Per-atom latent features of the backbone (for analyses; not part of the MD contract)."""
        return self.backbone.node_features(species, edge_index, edge_vectors)

    def atom_energies(self, species: Tensor, edge_index: Tensor, edge_vectors: Tensor) -> Tensor:
        raw = self.backbone(species, edge_index, edge_vectors)
        return raw * self.scale + self.shift + self.reference_energies[species]

    def energy_and_gradient(
        self, species: Tensor, edge_index: Tensor, edge_vectors: Tensor, num_local: int, create_graph: bool
    ) -> Tuple[Tensor, Tensor]:
        """Per-atom energies and ``dE_local/dr_e`` for every edge."""
        if not edge_vectors.requires_grad:
            edge_vectors = edge_vectors.detach().requires_grad_(True)
        atom_energy = self.atom_energies(species, edge_index, edge_vectors)
        total = atom_energy[:num_local].sum()
        grads = torch.autograd.grad(
            [total], [edge_vectors], create_graph=create_graph, allow_unused=True
        )
        grad = grads[0]
        if grad is None:  # no edges reach the energy
            grad = torch.zeros_like(edge_vectors)
        return atom_energy, grad

    def forward(
        self, species: Tensor, edge_index: Tensor, edge_vectors: Tensor, num_local: int
    ) -> Dict[str, Tensor]:
        atom_energy, grad = self.energy_and_gradient(
            species, edge_index, edge_vectors, num_local, self.training
        )
        n = species.shape[0]
        return {
            "energy": atom_energy[:num_local].sum(),
            "atom_energy": atom_energy,
            "forces": forces_from_edge_gradient(grad, edge_index, n),
            "virial": -torch.einsum("ea,eb->ab", edge_vectors, grad),
            "atom_virial": atom_virial_from_edge_gradient(grad, edge_vectors, edge_index, n),
        }


def forces_from_edge_gradient(grad: Tensor, edge_index: Tensor, num_nodes: int) -> Tensor:
    forces = torch.zeros((num_nodes, 3), dtype=grad.dtype, device=grad.device)
    forces.index_add_(0, edge_index[0], grad)
    forces.index_add_(0, edge_index[1], -grad)
    return forces


def atom_virial_from_edge_gradient(
    grad: Tensor, edge_vectors: Tensor, edge_index: Tensor, num_nodes: int
) -> Tensor:
    half = -0.5 * edge_vectors.unsqueeze(2) * grad.unsqueeze(1)
    virial = torch.zeros((num_nodes, 3, 3), dtype=grad.dtype, device=grad.device)
    virial.index_add_(0, edge_index[0], half)
    virial.index_add_(0, edge_index[1], half)
    return virial


class DirectForcePotential(Potential):
    """A potential whose forces come from a head (GemNet-dT), not from the energy gradient.

    The backbone provides ``energy_and_edge_forces(species, edge_index, edge_vectors)``: atom energies
    and one force vector per edge, acting on the edge's centre atom. Not energy conserving in NVE;
    ``virial`` and ``atom_virial`` are zero (the head gives no strain derivative).
    """

    def atom_energies_and_forces(self, species: Tensor, edge_index: Tensor, edge_vectors: Tensor) -> Tuple[Tensor, Tensor]:
        raw, edge_forces = self.backbone.energy_and_edge_forces(species, edge_index, edge_vectors)
        atom_energy = raw * self.scale + self.shift + self.reference_energies[species]
        forces = torch.zeros((species.shape[0], 3), dtype=edge_forces.dtype, device=edge_forces.device)
        forces = forces.index_add_(0, edge_index[0], edge_forces * self.scale)
        return atom_energy, forces

    def forward(
        self, species: Tensor, edge_index: Tensor, edge_vectors: Tensor, num_local: int
    ) -> Dict[str, Tensor]:
        atom_energy, forces = self.atom_energies_and_forces(species, edge_index, edge_vectors)
        n = species.shape[0]
        # ghosts' own forces belong to another rank's local atom: only local forces are meaningful
        local = (torch.arange(n, device=forces.device) < num_local).unsqueeze(-1)
        forces = torch.where(local, forces, torch.zeros_like(forces))
        zero_virial = torch.zeros((3, 3), dtype=forces.dtype, device=forces.device)
        return {
            "energy": atom_energy[:num_local].sum(),
            "atom_energy": atom_energy,
            "forces": forces,
            "virial": zero_virial,
            "atom_virial": torch.zeros((n, 3, 3), dtype=forces.dtype, device=forces.device),
        }

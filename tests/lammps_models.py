"""Contract-conforming test potentials written in plain torch (independent of ``nnp.models``/``nnp.export``).

``ReferencePotential`` is a real many-body potential: species embedding, ``layers`` rounds of messages
weighted by smooth radial functions of ``|r_ij|`` (Gaussian basis times a cosine cutoff, so energy and
forces go to zero smoothly at the cutoff), per-atom energies from an MLP of the final features. Forces
and virials come from one ``torch.autograd.grad`` of the energy over the edge vectors and are scattered
exactly as docs/model_contract.md prescribes. It is a second, independent implementation of the
contract, used to check the C++ side against something that does not share code with the lead's models.

``write_model`` saves it as a TorchScript file with the metadata extra files; its keyword arguments can
override or delete metadata to produce the bad files the error tests need.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch
from ase import Atoms
from ase.neighborlist import neighbor_list


class ReferencePotential(torch.nn.Module):
    def __init__(self, num_species: int = 2, cutoff: float = 3.0, layers: int = 3, width: int = 16,
                 num_rbf: int = 8, seed: int = 0, nan_species: int = -1):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)

        def param(*shape, scale=1.0):
            return torch.nn.Parameter(scale * torch.randn(*shape, generator=gen, dtype=torch.float64),
                                      requires_grad=False)

        self.cutoff = float(cutoff)
        self.layers = int(layers)
        self.embedding = param(num_species, width)
        self.centres = torch.nn.Parameter(torch.linspace(0.5, cutoff, num_rbf, dtype=torch.float64),
                                          requires_grad=False)
        self.gamma = float((num_rbf / cutoff) ** 2)
        self.w_radial = torch.nn.ParameterList([param(num_rbf, width, scale=1 / math.sqrt(num_rbf))
                                                for _ in range(layers)])
        self.w_neigh = torch.nn.ParameterList([param(width, width, scale=1 / math.sqrt(width)) for _ in range(layers)])
        self.w_update = torch.nn.ParameterList([param(width, width, scale=0.5 / math.sqrt(width))
                                                for _ in range(layers)])
        self.w_out1 = param(width, width, scale=1 / math.sqrt(width))
        self.w_out2 = param(width, 1, scale=0.3 / math.sqrt(width))
        shift = torch.tensor([-13.6, -430.0, -1030.0, -2040.0][:num_species], dtype=torch.float64)
        if 0 <= nan_species < num_species:
            shift[nan_species] = float("nan")
        self.shift = torch.nn.Parameter(shift, requires_grad=False)

    def _features(self, species: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor) -> torch.Tensor:
        centre, neighbour = edge_index[0], edge_index[1]
        r = torch.sqrt((edge_vectors * edge_vectors).sum(1))
        inside = (r < self.cutoff).to(edge_vectors.dtype)
        envelope = 0.5 * (torch.cos(math.pi * torch.clamp(r / self.cutoff, max=1.0)) + 1.0) * inside
        rbf = torch.exp(-self.gamma * (r.unsqueeze(1) - self.centres.unsqueeze(0)) ** 2) * envelope.unsqueeze(1)
        h = self.embedding[species]
        for radial, neigh, update in zip(self.w_radial, self.w_neigh, self.w_update):
            message = (rbf @ radial) * torch.tanh(h[neighbour] @ neigh)
            aggregate = torch.zeros_like(h).index_add_(0, centre, message)
            h = h + torch.tanh(aggregate @ update)
        return h

    @torch.jit.export
    def node_features(self, species: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor):
        return self._features(species, edge_index, edge_vectors)

    def forward(self, species: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor,
                num_local: int) -> Dict[str, torch.Tensor]:
        vectors = edge_vectors.detach().requires_grad_(True)
        h = self._features(species, edge_index, vectors)
        atom_energy = (torch.tanh(h @ self.w_out1) @ self.w_out2).squeeze(1) + self.shift[species]
        energy = atom_energy[:num_local].sum()
        grads = torch.autograd.grad([energy], [vectors], allow_unused=True)
        g: Optional[torch.Tensor] = grads[0]
        if g is None:
            g = torch.zeros_like(vectors)
        centre, neighbour = edge_index[0], edge_index[1]
        n = species.shape[0]
        forces = torch.zeros((n, 3), dtype=vectors.dtype, device=vectors.device)
        forces = forces.index_add(0, centre, g).index_add(0, neighbour, -g)
        edge_virial = -vectors.detach().unsqueeze(2) * g.unsqueeze(1)  # (E, 3, 3): -r (x) dE/dr
        atom_virial = torch.zeros((n, 3, 3), dtype=vectors.dtype, device=vectors.device)
        atom_virial = atom_virial.index_add(0, centre, 0.5 * edge_virial).index_add(0, neighbour, 0.5 * edge_virial)
        return {"energy": energy.detach(), "atom_energy": atom_energy.detach(), "forces": forces,
                "virial": edge_virial.sum(0), "atom_virial": atom_virial}


def metadata(species=("H", "O"), cutoff=3.0, layers=3, dtype="float64") -> dict[str, str]:
    return {"format_version": "1", "species": " ".join(species), "cutoff": repr(float(cutoff)),
            "num_interactions": str(layers), "dtype": dtype, "units": "metal", "model_kind": "reference_mp",
            "forces": "conservative", "nnp_version": "test", "provenance": '{"source": "tests/lammps_models.py"}'}


def write_model(path: str | Path, species=("H", "O"), cutoff: float = 3.0, layers: int = 3, dtype: str = "float64",
                seed: int = 0, nan_species: int = -1, drop: tuple[str, ...] = (),
                meta: dict[str, str] | None = None) -> Path:
    """Script a ``ReferencePotential`` and save it with metadata; ``meta`` (overrides) and ``drop`` edit it."""
    module = ReferencePotential(len(species), cutoff, layers, seed=seed, nan_species=nan_species)
    module = module.to(getattr(torch, dtype)).eval()
    extra = metadata(species, cutoff, layers, dtype)
    extra.update(meta or {})
    for key in drop:
        extra.pop(key)
    path = Path(path)
    torch.jit.save(torch.jit.script(module), str(path), _extra_files=extra)
    return path


def load_model(path: str | Path):
    extra = {k: "" for k in metadata()}
    module = torch.jit.load(str(path), _extra_files=extra)
    return module, {k: (v.decode() if isinstance(v, bytes) else v) for k, v in extra.items()}


def ase_graph(atoms: Atoms, species: list[str], cutoff: float):
    """Full neighbour list with every periodic image mapped to its owner (ASE, independent of nnp)."""
    i, j, d = neighbor_list("ijD", atoms, cutoff)
    index = {s: k for k, s in enumerate(species)}
    z = np.array([index[s] for s in atoms.get_chemical_symbols()], dtype=np.int64)
    return z, np.stack([i, j]).astype(np.int64), np.asarray(d, dtype=np.float64)


def voigt(w: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 6) in LAMMPS order xx yy zz xy xz yz (symmetrised)."""
    return np.stack([w[..., 0, 0], w[..., 1, 1], w[..., 2, 2], 0.5 * (w[..., 0, 1] + w[..., 1, 0]),
                     0.5 * (w[..., 0, 2] + w[..., 2, 0]), 0.5 * (w[..., 1, 2] + w[..., 2, 1])], -1)


def reference_results(path: str | Path, atoms: Atoms) -> dict:
    """Evaluate a model file with torch.jit in Python on an ASE graph: the reference for LAMMPS."""
    module, meta = load_model(path)
    dtype = getattr(torch, meta["dtype"])
    z, edges, vectors = ase_graph(atoms, meta["species"].split(), float(meta["cutoff"]))
    out = module(torch.from_numpy(z), torch.from_numpy(edges), torch.from_numpy(vectors).to(dtype), len(atoms))
    out = {k: v.detach().double().numpy() for k, v in out.items()}
    out["virial_voigt"] = voigt(out["virial"])
    out["atom_virial_voigt"] = voigt(out["atom_virial"])
    return out

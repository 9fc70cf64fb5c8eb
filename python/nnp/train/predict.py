"""Batched predictions and error metrics shared by training and evaluation."""

from __future__ import annotations

from typing import Dict

import torch
from torch import Tensor
from torch_geometric.data import Batch

from ..data.graph import edge_vectors
from ..models.potential import DirectForcePotential, Potential, forces_from_edge_gradient


def predict_batch(model: Potential, batch: Batch, create_graph: bool) -> Dict[str, Tensor]:
    """Energy per structure, forces per atom and stress per structure (ASE sign, eV/Å^3)."""
    vectors = edge_vectors(batch)
    if not vectors.requires_grad:
        vectors = vectors.requires_grad_(True)
    n = batch.num_nodes
    num_graphs = batch.num_graphs
    if isinstance(model, DirectForcePotential):
        atom_energy, forces = model.atom_energies_and_forces(batch.species, batch.edge_index, vectors)
        energy = torch.zeros(num_graphs, dtype=atom_energy.dtype).index_add_(0, batch.batch, atom_energy)
        return {"energy": energy, "forces": forces}
    atom_energy, grad = model.energy_and_gradient(batch.species, batch.edge_index, vectors, n, create_graph)
    energy = torch.zeros(num_graphs, dtype=atom_energy.dtype).index_add_(0, batch.batch, atom_energy)
    forces = forces_from_edge_gradient(grad, batch.edge_index, n)
    edge_graph = batch.batch[batch.edge_index[0]]
    virial = torch.zeros((num_graphs, 3, 3), dtype=grad.dtype).index_add_(
        0, edge_graph, -vectors.unsqueeze(2) * grad.unsqueeze(1)
    )
    volume = torch.linalg.det(batch.cell).abs().clamp_min(1e-12)
    stress = -virial / volume.view(-1, 1, 1)
    return {"energy": energy, "forces": forces, "stress": stress}


class MetricAccumulator:
    """Running MAE/RMSE of energy per atom (eV/atom) and force components (eV/Å)."""

    def __init__(self):
        self.sums: Dict[str, float] = {}
        self.counts: Dict[str, int] = {}

    def _add(self, name: str, error: Tensor) -> None:
        error = error.detach().double()
        self.sums[f"{name}_abs"] = self.sums.get(f"{name}_abs", 0.0) + float(error.abs().sum())
        self.sums[f"{name}_sq"] = self.sums.get(f"{name}_sq", 0.0) + float((error**2).sum())
        self.counts[name] = self.counts.get(name, 0) + error.numel()

    def update(self, pred: Dict[str, Tensor], batch: Batch) -> None:
        natoms = torch.bincount(batch.batch, minlength=batch.num_graphs)
        if hasattr(batch, "energy"):
            self._add("energy_per_atom", (pred["energy"] - batch.energy) / natoms)
        if hasattr(batch, "forces"):
            self._add("forces", pred["forces"] - batch.forces)

    def result(self) -> Dict[str, float]:
        out = {}
        for name, count in self.counts.items():
            out[f"{name}_mae"] = self.sums[f"{name}_abs"] / count
            out[f"{name}_rmse"] = (self.sums[f"{name}_sq"] / count) ** 0.5
        return out


def format_metrics_table(rows: Dict[str, Dict[str, float]]) -> str:
    """Plain-text table: one row per split, energy in meV/atom, forces in meV/Å."""
    header = f"{'split':<8}{'E MAE':>12}{'E RMSE':>12}{'F MAE':>12}{'F RMSE':>12}"
    units = f"{'':<8}{'meV/atom':>12}{'meV/atom':>12}{'meV/Å':>12}{'meV/Å':>12}"
    lines = [header, units]
    for split, m in rows.items():
        vals = [m.get(k, float("nan")) * 1000 for k in (
            "energy_per_atom_mae", "energy_per_atom_rmse", "forces_mae", "forces_rmse")]
        lines.append(f"{split:<8}" + "".join(f"{v:>12.2f}" for v in vals))
    return "\n".join(lines)

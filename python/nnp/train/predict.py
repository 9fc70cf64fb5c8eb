"""Batched predictions and error metrics shared by training and evaluation.

Predictions go through :meth:`nnp.models.potential.Potential.energy_and_forces` and
:func:`nnp.models.potential.edge_virials`, the same path as the exported model.
"""

from __future__ import annotations

from typing import Dict

import torch
from torch import Tensor
from torch_geometric.data import Batch

from ..data.graph import edge_vectors
from ..models.potential import Potential, edge_virials


def predict_batch(model: Potential, batch: Batch, create_graph: bool) -> Dict[str, Tensor]:
    """Energy per structure, forces per atom and, for conservative models, stress per structure
    (ASE sign, eV/Å^3)."""
    vectors = edge_vectors(batch)
    if not vectors.requires_grad:
        vectors = vectors.requires_grad_(True)
    atom_energy, forces, grad = model.energy_and_forces(batch.species, batch.edge_index, vectors, batch.num_nodes,
                                                        create_graph)
    energy = torch.zeros(batch.num_graphs, dtype=atom_energy.dtype, device=atom_energy.device)
    out = {"energy": energy.index_add(0, batch.batch, atom_energy), "forces": forces}
    if grad is not None:
        edge_graph = batch.batch[batch.edge_index[0]]
        virial = torch.zeros((batch.num_graphs, 3, 3), dtype=grad.dtype, device=grad.device)
        virial = virial.index_add(0, edge_graph, edge_virials(grad, vectors))
        volume = torch.linalg.det(batch.cell).abs().clamp_min(1e-12)
        out["stress"] = -virial / volume.view(-1, 1, 1)
    return out


VOIGT = ([0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1])  # xx yy zz yz xz xy of a 3x3 tensor, ASE's order


def voigt(stress: Tensor) -> Tensor:
    """(structures, 3, 3) -> (structures, 6): the six independent components, ASE's order. The training loss and
    the metrics both weigh the stress this way (each component once)."""
    return stress[:, VOIGT[0], VOIGT[1]]


class MetricAccumulator:
    """Running MAE/RMSE of energy per atom (eV/atom), force components (eV/Å) and, for structures with a stress
    label, the stress's six Voigt components and the pressure (eV/Å³; pressure = -trace/3)."""

    NAMES = ("energy_per_atom", "forces", "stress", "pressure")

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
        if hasattr(batch, "stress") and "stress" in pred:
            error = pred["stress"] - batch.stress  # (structures, 3, 3)
            self._add("stress", voigt(error))
            self._add("pressure", error.diagonal(dim1=1, dim2=2).mean(-1))

    def totals(self) -> list[float]:
        """Sums and counts as one flat list (to add up over processes)."""
        return [v for name in self.NAMES for v in (self.sums.get(f"{name}_abs", 0.0),
                                                    self.sums.get(f"{name}_sq", 0.0), self.counts.get(name, 0))]

    def result(self, totals: list[float] | None = None) -> Dict[str, float]:
        """MAE and RMSE of this accumulator, or of ``totals`` (:meth:`totals` summed over processes)."""
        values = totals if totals is not None else self.totals()
        out = {}
        for k, name in enumerate(self.NAMES):
            absolute, square, count = values[3 * k : 3 * k + 3]
            if count:
                out[f"{name}_mae"] = absolute / count
                out[f"{name}_rmse"] = (square / count) ** 0.5
        return out


def format_metrics_table(rows: Dict[str, Dict[str, float]]) -> str:
    """Plain-text table: one row per split, energy in meV/atom, forces in meV/Å; stress and pressure in meV/Å³
    (1 meV/Å³ = 1.602 kbar) when a row has them."""
    columns = [("E MAE", "meV/atom", "energy_per_atom_mae"), ("E RMSE", "meV/atom", "energy_per_atom_rmse"),
               ("F MAE", "meV/Å", "forces_mae"), ("F RMSE", "meV/Å", "forces_rmse")]
    if any("stress_mae" in m for m in rows.values()):
        columns += [("S MAE", "meV/Å³", "stress_mae"), ("P MAE", "meV/Å³", "pressure_mae")]
    width = max([8, *(len(split) + 1 for split in rows)])  # the split's name whole (a file name from nnp evaluate)
    lines = [f"{'split':<{width}}" + "".join(f"{name:>12}" for name, _, _ in columns),
             f"{'':<{width}}" + "".join(f"{unit:>12}" for _, unit, _ in columns)]
    for split, m in rows.items():
        values = "".join(f"{m.get(key, float('nan')) * 1000:>12.2f}" for _, _, key in columns)
        lines.append(f"{split:<{width}}" + values)
    return "\n".join(lines)

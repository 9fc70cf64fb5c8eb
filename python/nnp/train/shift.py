"""The per-atom energy shift: set in closed form so that the model has zero mean energy error."""

from __future__ import annotations

import torch
from torch_geometric.data import Batch

from ..data.graph import edge_vectors
from ..models.potential import Potential
from .data import GraphDataset


@torch.no_grad()
def center_energy_shift(model: Potential, dataset: GraphDataset, frames: int = 32, batch_size: int = 8) -> None:
    """Set ``model.shift`` so that the model has zero mean energy error on the first ``frames`` frames.

    At initialisation it removes the readout's constant offset (times the force scale), which training
    would remove only slowly; after training it removes the constant offset a force-dominated loss leaves.
    """
    model.shift.zero_()
    device = model.shift.device
    residual, atoms = 0.0, 0
    count = min(frames, len(dataset))
    for start in range(0, count, batch_size):
        batch = Batch.from_data_list([dataset.graph(k) for k in range(start, min(start + batch_size, count))])
        batch = batch.to(device)
        predicted = model.atom_energies(batch.species, batch.edge_index, edge_vectors(batch)).sum()
        residual += float(batch.energy.sum() - predicted)
        atoms += batch.num_nodes
    if atoms:
        model.shift += residual / atoms

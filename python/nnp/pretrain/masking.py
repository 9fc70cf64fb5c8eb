"""Masked-atom pretraining targets (Zhang, Li, Barati Farimani 2024).

Per frame, a fraction of the molecules is chosen; in each, one hydrogen (optionally any atom) is
removed from the graph entirely. The model's per-atom vector on the remaining atoms of that molecule
must point to the removed atom (minimum image); the loss is ``1 - mean cosine similarity``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data



@dataclass
class MaskedFrame:
    """Which atoms to drop and, for the atoms that keep a target, the vector to the dropped atom."""

    removed: np.ndarray  # indices of removed atoms (in the full frame)
    target_atoms: np.ndarray  # indices (in the full frame) of atoms that carry a target
    targets: np.ndarray  # (len(target_atoms), 3) vectors from each target atom to its removed atom


def choose_masks(
    graph: Data, molecules: list[np.ndarray], symbols: list[str], ratio: float, rng: np.random.Generator,
    mask_heavy: bool = False,
) -> MaskedFrame:
    """Pick molecules and the atom to hide in each; targets use the bonded (minimum) image."""
    candidates = [m for m in molecules if len(m) >= 2]
    n_pick = int(round(ratio * len(candidates)))
    chosen = rng.choice(len(candidates), size=n_pick, replace=False) if n_pick else []
    positions = graph.pos.double().numpy()
    cell = graph.cell[0].double().numpy()
    pbc = graph.pbc[0].numpy()
    removed, target_atoms, targets = [], [], []
    for k in chosen:
        molecule = candidates[k]
        pool = [a for a in molecule if mask_heavy or symbols[a] == "H"]
        if not pool:
            continue
        hidden = int(rng.choice(pool))
        rest = [a for a in molecule if a != hidden]
        vectors = positions[hidden] - positions[rest]
        if pbc.any():
            from ase.geometry import find_mic

            vectors, _ = find_mic(vectors, cell, pbc)
        removed.append(hidden)
        target_atoms.extend(rest)
        targets.append(vectors)
    return MaskedFrame(
        removed=np.array(removed, dtype=np.int64),
        target_atoms=np.array(target_atoms, dtype=np.int64),
        targets=np.concatenate(targets) if targets else np.zeros((0, 3)),
    )


def remove_atoms(graph: Data, removed: np.ndarray) -> tuple[Data, Tensor]:
    """The graph without ``removed`` nodes and their edges; also returns old -> new index map (-1: gone)."""
    n = graph.num_nodes
    keep = torch.ones(n, dtype=torch.bool)
    keep[torch.as_tensor(removed, dtype=torch.long)] = False
    new_index = torch.full((n,), -1, dtype=torch.long)
    new_index[keep] = torch.arange(int(keep.sum()))
    i, j = graph.edge_index
    edge_keep = keep[i] & keep[j]
    out = Data(
        pos=graph.pos[keep],
        species=graph.species[keep],
        edge_index=new_index[graph.edge_index[:, edge_keep]],
        shifts=graph.shifts[edge_keep],
        cell=graph.cell,
        pbc=graph.pbc,
        num_nodes=int(keep.sum()),
    )
    return out, new_index


def masked_graph(graph: Data, frame: MaskedFrame) -> Data:
    """Graph with the masked atoms removed, plus ``target_vectors (N,3)`` and ``target_mask (N,)``."""
    out, new_index = remove_atoms(graph, frame.removed)
    targets = torch.zeros((out.num_nodes, 3), dtype=graph.pos.dtype)
    mask = torch.zeros(out.num_nodes, dtype=torch.bool)
    rows = new_index[torch.as_tensor(frame.target_atoms, dtype=torch.long)]
    targets[rows] = torch.as_tensor(frame.targets, dtype=graph.pos.dtype)
    mask[rows] = True
    out.target_vectors = targets
    out.target_mask = mask
    return out


def cosine_loss(predicted: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """``1 - mean cos(predicted_i, target_i)`` over the atoms where ``mask`` is True."""
    if int(mask.sum()) == 0:
        return predicted.sum() * 0.0
    p, t = predicted[mask], target[mask]
    cos = (p * t).sum(-1) / (p.norm(dim=-1) * t.norm(dim=-1)).clamp_min(1e-9)
    return 1.0 - cos.mean()


def distance_loss(predicted: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Optional extra term: squared error of the predicted vector length against the true distance (Å)."""
    if int(mask.sum()) == 0:
        return predicted.sum() * 0.0
    return ((predicted[mask].norm(dim=-1) - target[mask].norm(dim=-1)) ** 2).mean()


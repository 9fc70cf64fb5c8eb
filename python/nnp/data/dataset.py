"""Datasets for training: structures -> graphs, fixed-seed splits, per-species reference energies."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from ase import Atoms
from ase.data import atomic_numbers
from torch_geometric.data import Data
from tqdm.auto import tqdm

from .graph import atoms_to_graph
from .readers import LabelKeys, bundled_dataset, read_structures


def load_structures(path: str, format: str | None = None, max_frames: int | None = None,
                    require_labels: bool = True, keys: LabelKeys | None = None) -> list[Atoms]:
    """Read a dataset; ``bundled:NAME`` names a dataset shipped inside the package; a pack directory
    (``nnp data pack``) is read frame by frame into memory."""
    from .pack import PackedDataset, is_pack

    if is_pack(path):
        pack = PackedDataset(path)
        return [pack.atoms(k) for k in range(min(len(pack), max_frames or len(pack)))]
    if path.startswith("bundled:"):
        path = str(bundled_dataset(path.split(":", 1)[1]))
    frames = read_structures(path, format=format, require_labels=require_labels, keys=keys)
    return frames[:max_frames] if max_frames else frames


def dataset_species(frames: Sequence[Atoms]) -> list[str]:
    """Elements present in ``frames``, ordered by atomic number."""
    symbols = {s for atoms in frames for s in atoms.get_chemical_symbols()}
    return sorted(symbols, key=lambda s: atomic_numbers[s])


def config_type(atoms: Atoms) -> str | None:
    """The frame's ``info["config_type"]`` (extxyz ``config_type=...``, as MACE and GAP datasets name it), as text."""
    value = atoms.info.get("config_type")
    return None if value is None else str(value)


def split_indices(n: int, val_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Random train/val/test split of ``n`` frames, reproducible for a given seed."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(test_fraction * n))
    n_val = int(round(val_fraction * n))
    if n - n_test - n_val < 1:
        raise ValueError(f"dataset of {n} frames is too small for the requested validation/test split")
    return {
        "test": np.sort(order[:n_test]),
        "val": np.sort(order[n_test : n_test + n_val]),
        "train": np.sort(order[n_test + n_val :]),
    }


def build_graphs(frames: Sequence[Atoms], species: Sequence[str], cutoff: float,
                 dtype: torch.dtype = torch.float32, progress: bool = True) -> list[Data]:
    """Neighbour lists for every frame (done once, kept in memory)."""
    return [
        atoms_to_graph(atoms, species, cutoff, dtype)
        for atoms in tqdm(frames, desc="neighbour lists", disable=not progress, leave=False)
    ]


def mean_num_neighbors(graphs: Sequence[Data]) -> float:
    edges = sum(g.edge_index.shape[1] for g in graphs)
    nodes = sum(g.num_nodes for g in graphs)
    return max(edges / max(nodes, 1), 1.0)

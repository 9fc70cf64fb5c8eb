"""Training data: frames (in memory or a pack on disk) -> splits of graphs, and the statistics of a run.

Two sources give identical graphs for the same frame:

* a small file read into memory (:func:`nnp.data.readers.read_structures`); its graphs are built once
  and kept;
* a packed dataset (``nnp data pack``, :mod:`nnp.data.pack`) that is never read whole: each graph is
  built from its frame when a batch asks for it, in the DataLoader's worker processes, so the memory of
  a run does not grow with the number of frames.

Statistics (per-species reference energies, force scale, average neighbour count) come from the
training split only, through one function for both sources (:func:`nnp.data.pack.subset_statistics`
over a per-frame summary table).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from ase import Atoms
from torch.utils.data import Dataset
from torch_geometric.data import Data
from tqdm.auto import tqdm

from ..config import RunConfig
from ..data.dataset import config_type, dataset_species, split_indices
from ..data.graph import atoms_to_graph
from ..data.molecules import molecule_labels
from ..data.pack import FrameSummary, PackedDataset, is_pack, subset_statistics, summary_table
from ..data.readers import LabelKeys, bundled_dataset, read_structures

DTYPES = {"float32": torch.float32, "float64": torch.float64}
NEIGHBOR_SAMPLE = 1000  # frames whose neighbour lists estimate the average neighbour count of a pack

# A per-frame random transform of a graph (augmentation, masking, noise), seeded per frame and epoch.
Transform = Callable[[Data, torch.Generator], Data]


class Frames(Protocol):
    """Random access to the structures of a dataset (a list of ``Atoms`` or a :class:`PackedDataset`)."""

    def __len__(self) -> int: ...

    def atoms(self, k: int) -> Atoms: ...


class InMemoryFrames:
    """The frames of a file that fits in memory."""

    def __init__(self, frames: Sequence[Atoms]):
        self.frames = list(frames)

    def __len__(self) -> int:
        return len(self.frames)

    def atoms(self, k: int) -> Atoms:
        return self.frames[k]


def open_frames(path: str, format: str | None = None, require_labels: bool = True,
                keys: LabelKeys | None = None) -> Frames:
    """A pack opens lazily (nothing is read); any other file is read and validated whole."""
    if path.startswith("bundled:"):
        path = str(bundled_dataset(path.split(":", 1)[1]))
    if is_pack(path):
        pack = PackedDataset(path)
        if require_labels and not pack.metadata["labelled"]:
            from ..data.errors import DatasetError

            raise DatasetError(f"{path}: the pack holds positions only (packed with --positions-only); "
                               "training needs energies and forces: pack a labelled dataset")
        return pack
    return InMemoryFrames(read_structures(path, format=format, require_labels=require_labels, keys=keys))


@dataclass
class GraphSpec:
    """How a frame becomes a graph."""

    species: list[str]
    cutoff: float
    dtype: torch.dtype
    bond_scale: float | None = None  # when set, graphs carry ``molecule`` (N,) ids (covalent connectivity)
    weights: dict[str, float] | None = None  # when set, graphs carry ``weight`` (1,): see frame_weight

    def graph(self, atoms: Atoms) -> Data:
        graph = atoms_to_graph(atoms, self.species, self.cutoff, self.dtype)
        if self.weights:
            graph.weight = torch.tensor([frame_weight(atoms, self.weights)], dtype=self.dtype)
        if self.bond_scale is not None:
            graph.molecule = torch.from_numpy(molecule_labels(atoms, self.bond_scale).astype(np.int64))
        return graph


def frame_weight(atoms: Atoms, weights: dict[str, float]) -> float:
    """The loss weight of a frame: ``weights`` of its config_type; 1 without one or for a type not named."""
    return float(weights.get(config_type(atoms), 1.0))


def check_weighted_types(frames: Frames, weights: dict[str, float], source: str) -> None:
    """Every type ``weights`` names occurs in ``frames`` (a misspelt name would weigh nothing)."""
    if not weights:
        return
    from ..data.errors import DatasetError

    hint = "fix the name or drop it"
    if isinstance(frames, InMemoryFrames):
        present = {config_type(atoms) for atoms in frames.frames} - {None}
    else:  # a pack counted them when it was packed
        present = set(frames.metadata["config_types"])
        hint += " (a pack made before nnp stored config types has none: pack the data again)"
    missing = sorted(set(weights) - present)
    if missing:
        raise DatasetError(f"train.config_type_weights names {', '.join(map(repr, missing))}, which no frame of "
                           f"{source} has as info['config_type'] (types present: "
                           f"{', '.join(sorted(present)) or 'none'}); {hint}")


class GraphDataset(Dataset):
    """The graphs of frames ``indices`` of ``frames``; item ``(k, seed)`` applies the transform with ``seed``.

    ``cache=True`` builds every graph once and keeps it (small in-memory files); otherwise a graph is
    built from its frame on every access (packs; runs in the DataLoader's workers).
    """

    def __init__(self, frames: Frames, indices: Sequence[int], spec: GraphSpec, cache: bool,
                 transform: Transform | None = None, progress: bool = False):
        self.frames = frames
        self.indices = np.asarray(indices, dtype=np.int64)
        self.spec = spec
        self.transform = transform
        self.cached: list[Data] | None = None
        if cache:
            self.cached = [spec.graph(frames.atoms(int(k)))
                           for k in tqdm(self.indices, desc="neighbour lists", disable=not progress, leave=False)]

    def __len__(self) -> int:
        return len(self.indices)

    def graph(self, position: int) -> Data:
        """The untransformed graph of the ``position``-th frame of this split."""
        if self.cached is not None:
            return self.cached[position]
        return self.spec.graph(self.frames.atoms(int(self.indices[position])))

    def __getitem__(self, item: int | tuple[int, int]) -> Data:
        position, seed = item if isinstance(item, tuple) else (item, None)
        graph = self.graph(position)
        if self.transform is not None and seed is not None:
            graph = self.transform(graph, torch.Generator().manual_seed(seed))
        return graph

    def with_transform(self, transform: Transform | None) -> GraphDataset:
        """The same frames and graphs (cache shared) with another transform."""
        other = GraphDataset.__new__(GraphDataset)
        other.__dict__.update(self.__dict__)
        other.transform = transform
        return other


@dataclass
class Statistics:
    """Normalisation constants of a model, from the training split."""

    reference_energies: np.ndarray | None  # eV per species, least squares; None for unlabelled data
    force_scale: float  # RMS force component (eV/Å); 1 for unlabelled data
    avg_num_neighbors: float  # edges per node at the model cutoff


@dataclass
class TrainingData:
    species: list[str]
    splits: dict[str, GraphDataset]
    statistics: Statistics


def prepare_data(config: RunConfig, progress: bool = True, labelled: bool = True,
                 species: list[str] | None = None, with_molecules: bool = False) -> TrainingData:
    """Open, split and (for in-memory files) graph the dataset of a run; statistics from the training split.

    ``species`` extends the dataset's elements (finetuning keeps the pretrained model's species);
    ``with_molecules`` gives every graph its covalent molecule ids (masked pretraining).
    """
    d = config.data
    frames = open_frames(d.path, d.format, require_labels=labelled, keys=d.label_keys)
    n = len(frames) if not d.max_frames else min(d.max_frames, len(frames))
    replay = replay_frames(config) if labelled else []
    if replay:  # after the dataset's own frames; only ever in the training split
        if not isinstance(frames, InMemoryFrames):
            from ..data.errors import DatasetError

            raise DatasetError(f"finetune.replay mixes frames into in-memory data; {d.path} is a pack: "
                               "pack the replay frames with your data instead")
        frames = InMemoryFrames(frames.frames[:n] + replay)
    in_memory = isinstance(frames, InMemoryFrames)
    present = dataset_species(frames.frames[:n + len(replay)]) if in_memory else frames.metadata["elements"]
    species = list(species or [])
    species += [s for s in present if s not in species]
    weights = {str(k): float(v) for k, v in config.train.config_type_weights.items()} if labelled else {}
    spec = GraphSpec(species, config.model.cutoff, DTYPES[config.train.dtype],
                     config.pretrain.bond_scale if with_molecules else None, weights or None)
    indices = split_indices(n, d.val_fraction, d.test_fraction, d.split_seed)
    indices["train"] = np.concatenate([indices["train"], np.arange(n, n + len(replay))])
    check_weighted_types(frames, weights, d.path)
    splits = {name: GraphDataset(frames, ids, spec, cache=in_memory, progress=progress and name == "train")
              for name, ids in indices.items()}
    return TrainingData(species, splits, training_statistics(frames, splits["train"], species, labelled))


def replay_frames(config: RunConfig) -> list[Atoms]:
    """``finetune.replay_frames`` frames, evenly spaced, of ``finetune.replay`` (none when it is unset)."""
    f = config.finetune
    if not f.replay:
        return []
    pool = open_frames(f.replay)
    picks = np.linspace(0, len(pool) - 1, min(f.replay_frames, len(pool))).round().astype(int)
    return [pool.atoms(int(k)) for k in np.unique(picks)]


def training_statistics(frames: Frames, train: GraphDataset, species: list[str], labelled: bool) -> Statistics:
    """Reference energies, force scale and mean neighbour count of the training split."""
    cutoff = train.spec.cutoff
    if isinstance(frames, PackedDataset):  # the pack's table, computed when it was packed
        summary, rows, counted_at = frames.summary(), train.indices, frames.metadata["cutoff"]
    else:  # the same table from the frames and graphs in memory
        table = [FrameSummary.of(frames.atoms(int(k)), train.graph(p).edge_index.shape[1])
                 for p, k in enumerate(train.indices)]
        summary, rows, counted_at = summary_table(table), np.arange(len(train)), cutoff
    stats = subset_statistics(summary, rows, species)
    neighbors = stats["avg_num_neighbors"]
    if abs(counted_at - cutoff) > 1e-9:  # the pack counted edges at another cutoff: count on a sample
        edges = nodes = 0
        for position in range(0, len(train), max(1, len(train) // NEIGHBOR_SAMPLE)):
            graph = train.graph(position)
            edges, nodes = edges + graph.edge_index.shape[1], nodes + graph.num_nodes
        neighbors = edges / max(nodes, 1)
    return Statistics(
        reference_energies=stats["reference_energies"] if labelled else None,
        force_scale=stats["force_rms"] if labelled else 1.0,
        avg_num_neighbors=max(float(neighbors), 1.0),
    )

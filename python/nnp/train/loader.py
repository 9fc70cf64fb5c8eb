"""Batches: the order of frames in an epoch, its split over processes, and the DataLoader.

The order of an epoch depends only on ``(seed, epoch)`` and every frame's random transform (rotation,
mask, noise) only on ``(seed, epoch, frame)``. A global batch is cut into equal contiguous shares, one per
process; so N processes see exactly the frames (and transforms) that one process sees with the same
global batch, and a resumed run sees what an uninterrupted one would.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from torch_geometric.data import Batch, Data

from .data import GraphDataset


def frame_seed(seed: int, epoch: int, frame: int) -> int:
    """Seed of one frame's random transform in one epoch."""
    return (seed * 1_000_003 + epoch) * 10_000_019 + frame


class GlobalBatchSampler(Sampler[list[tuple[int, int]]]):
    """This process's share of every global batch of an epoch, as ``(frame, transform seed)`` pairs.

    With several processes the last, incomplete global batch is dropped so that every process takes
    the same number of steps (and frames) per step.
    """

    def __init__(self, num_frames: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        if batch_size % world:
            raise ValueError(f"train.batch_size {batch_size} does not split evenly over {world} processes: "
                             "choose a multiple of the process count (it is the global batch)")
        self.num_frames, self.batch_size, self.seed = num_frames, batch_size, seed
        self.rank, self.world = rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.world > 1:
            return self.num_frames // self.batch_size
        return -(-self.num_frames // self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        generator = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        order = torch.randperm(self.num_frames, generator=generator).tolist()
        share = self.batch_size // self.world
        for step in range(len(self)):
            batch = order[step * self.batch_size : (step + 1) * self.batch_size]
            mine = batch if self.world == 1 else batch[self.rank * share : (self.rank + 1) * share]
            yield [(k, frame_seed(self.seed, self.epoch, k)) for k in mine]


def evenly_spaced(num_frames: int, max_frames: int | None) -> list[int]:
    """All frames, or ``max_frames`` of them evenly spread over the dataset."""
    if max_frames is None or num_frames <= max_frames:
        return list(range(num_frames))
    return sorted({int(k) for k in np.linspace(0, num_frames - 1, max_frames).round()})


class EvaluationSampler(Sampler[list[tuple[int, int]]]):
    """Consecutive batches of this process's share (``rank::world``) of ``frames``, fixed transform seeds."""

    def __init__(self, frames: list[int], batch_size: int, rank: int = 0, world: int = 1):
        self.frames = frames[rank::world]
        self.batch_size = batch_size

    def __len__(self) -> int:
        return -(-len(self.frames) // self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for start in range(0, len(self.frames), self.batch_size):
            yield [(k, frame_seed(0, 0, k)) for k in self.frames[start : start + self.batch_size]]


def collate(graphs: list[Data]) -> Batch:
    return Batch.from_data_list(graphs)


def _single_threaded_worker(_: int) -> None:
    torch.set_num_threads(1)  # workers build neighbour lists; the model's threads stay with the trainer


def default_workers(dataset: GraphDataset) -> int:
    """No workers for graphs kept in memory; for graphs built on the fly, up to 4 (one per spare core)."""
    if dataset.cached is not None:
        return 0
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def make_loader(dataset: GraphDataset, sampler: Sampler, num_workers: int | None, pin_memory: bool) -> DataLoader:
    workers = default_workers(dataset) if num_workers is None else num_workers
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=workers,
        pin_memory=pin_memory,
        worker_init_fn=_single_threaded_worker if workers else None,
        prefetch_factor=4 if workers else None,
        persistent_workers=workers > 0,  # safe: every item carries its own seed, workers hold no epoch state
    )

"""Packed datasets: every frame of any readable dataset file in one LMDB directory (``*.pack``).

A pack holds one binary record per frame (no pickle; see :mod:`nnp.data.records`), a per-frame
summary table (atoms, energy, composition, squared forces, edges at the pack's cutoff) stored in
chunks, and JSON metadata with the dataset statistics a model needs (per-species reference energies,
force RMS, average neighbour count), all computed in the one streaming pass that writes the frames.
Packing commits every ``commit_every`` frames together with its progress, so a killed run resumes
where it stopped. ``docs/dataset_format.md`` describes the format.

One job per module: ``layout`` (directory, keys, version), ``codec`` (frame <-> record),
``statistics`` (summary table, streaming accumulators, subset statistics), ``writer`` (packing,
resuming), ``reader`` (PackedDataset).
"""

from ..readers import iter_structures
from .layout import PACK_FORMAT_VERSION, PackError, frame_key, is_pack
from .reader import PackedDataset
from .statistics import FrameSummary, subset_statistics, summary_table
from .writer import pack_dataset

__all__ = ["PACK_FORMAT_VERSION", "FrameSummary", "PackError", "PackedDataset", "frame_key", "is_pack",
           "iter_structures", "pack_dataset", "subset_statistics", "summary_table"]

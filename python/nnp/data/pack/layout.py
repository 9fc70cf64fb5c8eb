"""A pack on disk: the directory layout, the LMDB keys, the format version (docs/dataset_format.md)."""

from __future__ import annotations

from pathlib import Path

from ..errors import DatasetError
from ..readers import MAX_ATOMIC_NUMBER


PACK_FORMAT_VERSION = 1
PACK_MAGIC = "nnp-pack"
MARKER_FILE = "NNP_PACK"  # a one-line text file that marks the directory as a pack
DATA_FILE = "data.mdb"
MAP_SIZE = 1 << 40  # address space reserved by LMDB (1 TiB); the file only grows as frames are written
STATE_KEY = b"state"
ACCUM_KEY = b"accumulators"
N_Z = MAX_ATOMIC_NUMBER + 1


class PackError(DatasetError):
    """A pack is missing, incomplete, corrupt or does not match the command that resumes it."""


def frame_key(k: int) -> bytes:
    return b"frame/%012d" % k


def summary_key(first: int) -> bytes:
    return b"summary/%012d" % first


def is_pack(path: str | Path) -> bool:
    """Whether ``path`` is a pack directory (complete or not, intact or not)."""
    path = Path(path)
    return path.is_dir() and ((path / MARKER_FILE).exists() or (path / DATA_FILE).exists())

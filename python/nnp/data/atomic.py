"""Atomic file writes: a reader (or a resumed run) sees the old file or the new one, never half of one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import ase.io
import numpy as np
from ase import Atoms


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` beside ``path``, then rename it onto ``path``."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def write_text(path: str | Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text))


def write_frames(path: str | Path, frames: Sequence[Atoms]) -> None:
    """``frames`` as extxyz (labels included)."""
    write_atomic(path, lambda tmp: ase.io.write(tmp, list(frames), format="extxyz"))


def write_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """``np.savez`` (uncompressed) of ``arrays``."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # a file object: np.savez would append .npz to a path
            np.savez(handle, **arrays)
    write_atomic(path, write)

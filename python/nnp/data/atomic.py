"""Atomic file writes: a reader (or a resumed run) sees the old file or the new one, never half of one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import ase.io
from ase import Atoms


def write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_frames(path: str | Path, frames: Sequence[Atoms]) -> None:
    """``frames`` as extxyz (labels included)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    ase.io.write(tmp, list(frames), format="extxyz")
    os.replace(tmp, path)

"""Checkpoints of long MD runs (``nnp stability``): a fingerprint of what a run's trajectories depend on, and
atomic writes, so that a run killed at any point continues from its last whole checkpoint and never from
another run's."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from ase import Atoms

from ..pretrained import resolve_file


def run_fingerprint(model: str | Path, params: dict, *frame_sets: Sequence[Atoms]) -> str:
    """SHA-256 of the model file's bytes, ``params`` (JSON) and the elements and positions of every frame set."""
    digest = hashlib.sha256(Path(resolve_file(model)).read_bytes())
    digest.update(json.dumps(params, sort_keys=True).encode())
    for frames in frame_sets:
        for atoms in frames:
            digest.update(np.ascontiguousarray(atoms.numbers, dtype=np.int64).tobytes())
            digest.update(np.ascontiguousarray(atoms.positions, dtype=np.float64).tobytes())
        digest.update(b"|")  # where one set ends
    return digest.hexdigest()


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` then rename onto ``path``: a reader sees the old file or the whole new one."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def check_fingerprint(folder: Path, found: str | None, fingerprint: str) -> None:
    """A checkpoint written by another run (another model file, start frames, seeds, reference or protocol)
    is an error that names the folder, never a silent mix of two runs."""
    if found != fingerprint:
        raise ValueError(f"{folder} holds the checkpoint of another stability run (its model file, start frames, "
                         "seeds, reference or protocol differ from this one's): remove that folder to start this "
                         "run afresh, or give this run another output folder")


def savez_atomic(path: Path, **arrays: np.ndarray) -> None:
    """``np.savez`` to ``path`` through :func:`write_atomic`."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    write_atomic(path, write)

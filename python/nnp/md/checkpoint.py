"""Checkpoints of long MD runs (``nnp stability``): a LAMMPS restart, what the run recorded since its last save as
one more chunk of arrays, and a JSON record naming them with a fingerprint of what the run depends on, so that a
run continues from its own checkpoint and never from another run's. Every file is written atomically and the
record last: a kill at any point leaves one whole checkpoint, and each recorded value is written once."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms

from ..data.atomic import write_atomic, write_npz, write_text
from ..pretrained import resolve_file

CHECKPOINT_PS = 1.0  # default MD time between two saved states of a running stability run


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


def check_fingerprint(folder: Path, found: str | None, fingerprint: str) -> None:
    """A checkpoint written by another run (another model file, start frames, seeds, reference or protocol)
    is an error that names the folder, never a silent mix of two runs."""
    if found != fingerprint:
        raise ValueError(f"{folder} holds the checkpoint of another stability run (its model file, start frames, "
                         "seeds, reference or protocol differ from this one's): remove that folder to start this "
                         "run afresh, or give this run another output folder")


def previous_state(path: Path) -> dict:
    """The record of the last save at ``path``; {} when there is none (or it predates chunks)."""
    state = json.loads(path.read_text()) if path.exists() else {}
    return state if "chunks" in state else {}


def save_state(lmp, path: Path, prefix: str, step: int, arrays: dict[str, np.ndarray], record: dict) -> None:
    """``<prefix>-<step>.restart`` (LAMMPS) and ``<prefix>-<step>.npz`` (``arrays``: what was recorded since the
    previous save) beside ``path``; then ``record`` at ``path``, with the restart and every chunk so far named;
    then the other ``<prefix>-*`` files (the previous restart) go."""
    folder, stem = path.parent, f"{prefix}-{step}"
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / f"{stem}.restart", lambda tmp: lmp.command(f"write_restart {tmp}"))
    write_npz(folder / f"{stem}.npz", **arrays)
    record = {**record, "restart": f"{stem}.restart",
              "chunks": [*previous_state(path).get("chunks", []), f"{stem}.npz"]}
    write_text(path, json.dumps(record))
    for old in folder.glob(f"{prefix}-*"):
        if old.name != record["restart"] and old.name not in record["chunks"]:
            old.unlink()


def load_state(path: Path, fingerprint: str) -> dict | None:
    """The record :func:`save_state` left at ``path`` (None when there is none), checked to be this run's."""
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    check_fingerprint(path.parent, state.get("fingerprint"), fingerprint)
    return state

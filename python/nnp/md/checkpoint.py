"""Checkpoints of long MD runs (``nnp stability``): a fingerprint of what a run's trajectories depend on, so that
a run continues from its own checkpoint and never from another run's (the files themselves are written with
:mod:`nnp.data.atomic`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms

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

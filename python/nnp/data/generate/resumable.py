"""Resumable trajectory files: frames are appended one at a time next to a small state file.

``<output>`` is an extxyz file; ``<output>.state.json`` records how many frames are complete and
everything needed to continue the run exactly (positions, velocities, RNG state, step) and the byte
length of the extxyz after that frame; it is written atomically after each frame. Resuming truncates
the extxyz to that length (a half-written frame) without parsing it, so it costs the same for 10 or
10^6 frames. ``<output>.card.json`` is the dataset card; it records the extxyz's SHA-256 when it is written, so
a copy regenerated or handed over later can be checked against it (``nnp data info``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import ase.io
from ase import Atoms

from ... import __version__
from ..atomic import write_text


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ResumableTrajectory:
    """Append-only extxyz output that can be continued after an interruption."""

    def __init__(self, output: str | Path, parameters: dict[str, Any]):
        self.path = Path(output)
        self.state_path = self.path.with_name(self.path.name + ".state.json")
        self.card_path = self.path.with_name(self.path.name + ".card.json")
        self.parameters = json.loads(json.dumps(parameters))  # as it will read back (tuples -> lists)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def resume_state(self) -> dict[str, Any] | None:
        """State of an earlier run with the same parameters, after trimming any half-written frame."""
        if not self.state_path.exists() or not self.path.exists():
            return None
        state = json.loads(self.state_path.read_text())
        if state.get("parameters") != self.parameters:
            raise ValueError(
                f"{self.path} was generated with different parameters {state.get('parameters')}; "
                "choose another output file or delete it to start over"
            )
        size = self.path.stat().st_size
        if "bytes" in state:  # fast path: the length the file had when the state was saved
            if size < state["bytes"]:
                raise ValueError(f"{self.path} is {size} bytes but its state says {state['bytes']} "
                                 f"({state['frames']} frames): the file was modified; delete it to start over")
            if size > state["bytes"]:  # killed between writing a frame and saving the state
                with open(self.path, "r+b") as handle:
                    handle.truncate(state["bytes"])
            return state
        frames = ase.io.read(self.path, index=":", format="extxyz") if size else []  # older state files
        if len(frames) < state["frames"]:
            raise ValueError(f"{self.path} holds {len(frames)} frames but its state says {state['frames']}: "
                             "the file was modified; delete it to start over")
        if len(frames) > state["frames"]:
            ase.io.write(self.path, frames[: state["frames"]], format="extxyz")
        return state

    def start(self) -> None:
        """Begin a fresh file (any old output is discarded)."""
        self.path.write_text("")
        self.state_path.unlink(missing_ok=True)

    def append(self, atoms: Atoms, state: dict[str, Any]) -> None:
        with open(self.path, "a") as handle:
            ase.io.write(handle, atoms, format="extxyz")
            handle.flush()
            os.fsync(handle.fileno())
            size = handle.tell()
        write_text(self.state_path, json.dumps({**state, "parameters": self.parameters, "bytes": size}))

    def update_card(self, extra: dict[str, Any]) -> Path:
        """Add entries to the existing card (e.g. statistics computed from the finished file)."""
        card = json.loads(self.card_path.read_text())
        write_text(self.card_path, json.dumps({**card, **extra}, indent=2, default=str, ensure_ascii=False))
        return self.card_path

    def write_card(self, card: dict[str, Any]) -> Path:
        full = {
            "generator_version": f"nnp {__version__}",
            "command": " ".join(sys.argv) if sys.argv and sys.argv[0].endswith("nnp") else None,
            "parameters": self.parameters,
            "units": {"energy": "eV", "length": "Å", "forces": "eV/Å"},
            **card,
            "file_sha256": file_sha256(self.path),  # of the frames written so far (all, once complete)
        }
        write_text(self.card_path, json.dumps(full, indent=2, default=str, ensure_ascii=False))
        return self.card_path

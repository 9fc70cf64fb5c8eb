"""Resumable trajectory files: frames are appended one at a time next to a small state file.

``<output>`` is an extxyz file; ``<output>.state.json`` records how many frames are complete and
everything needed to continue the run exactly (positions, velocities, RNG state, step); it is
written atomically after each frame. ``<output>.card.json`` is the dataset card.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import ase.io
from ase import Atoms

from ... import __version__


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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
        frames = ase.io.read(self.path, index=":", format="extxyz") if self.path.stat().st_size else []
        if len(frames) < state["frames"]:
            raise ValueError(f"{self.path} holds {len(frames)} frames but its state says {state['frames']}: "
                             "the file was modified; delete it to start over")
        if len(frames) > state["frames"]:  # killed between writing a frame and saving the state
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
        _atomic_write_text(self.state_path, json.dumps({**state, "parameters": self.parameters}))

    def write_card(self, card: dict[str, Any]) -> Path:
        full = {
            "generator_version": f"nnp {__version__}",
            "command": " ".join(sys.argv) if sys.argv and sys.argv[0].endswith("nnp") else None,
            "parameters": self.parameters,
            "units": {"energy": "eV", "length": "Å", "forces": "eV/Å"},
            **card,
        }
        _atomic_write_text(self.card_path, json.dumps(full, indent=2, default=str, ensure_ascii=False))
        return self.card_path

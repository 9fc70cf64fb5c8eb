"""Label selected frames with a reference method, resumably, without ever losing or corrupting a label.

Labels are appended to an extxyz file one frame at a time; a small state file beside it (written
atomically after every frame) says how many candidates were handled, how many failed, and the byte
length of the file after the last good frame. A run killed at any point resumes from the state: a
half-written frame is cut off, and no candidate is labelled twice. A frame whose calculation raises
(SCF not converged, any exception) or returns non-finite numbers is tried once more with a fresh
calculator, then skipped and counted.
"""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import ase.io
import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from ..data.atomic import write_text
from ..errors import UserError


def make_labeller(spec: str, kwargs: dict[str, Any] | None = None) -> Callable[[], Any]:
    """A factory of ASE calculators from ``module:Name`` (a Calculator class or a function returning one)."""
    module_name, _, attribute = spec.partition(":")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as err:
        raise UserError(f"labeller {spec!r} cannot be imported ({err}); give module:Name of an ASE calculator "
                        "class or of a function that returns one") from None
    return lambda: target(**(kwargs or {}))


def label_one(atoms: Atoms, calculator, with_stress: bool = False) -> Atoms | None:
    """``atoms`` with the reference energy and forces (and stress), or None when the calculation fails."""
    frame = Atoms(atoms.get_chemical_symbols(), positions=atoms.get_positions(), cell=atoms.get_cell(),
                  pbc=atoms.get_pbc())
    frame.calc = calculator
    try:
        energy = float(frame.get_potential_energy())
        forces = np.array(frame.get_forces(), dtype=float)
        stress = np.array(frame.get_stress(), dtype=float) if with_stress else None
    except Exception:  # noqa: BLE001 - any failure of the reference method skips the frame, by design
        return None
    if not (np.isfinite(energy) and np.all(np.isfinite(forces))) or (stress is not None and
                                                                     not np.all(np.isfinite(stress))):
        return None
    frame.calc = SinglePointCalculator(frame, energy=energy, forces=forces,
                                       **({"stress": stress} if stress is not None else {}))
    frame.info.update({k: v for k, v in atoms.info.items() if isinstance(v, (int, float, str))})
    return frame


def label_frames(frames: Sequence[Atoms], output: str | Path, make_calculator: Callable[[], Any],
                 progress: bool = False, with_stress: bool = False) -> dict[str, Any]:
    """Label ``frames`` into ``output`` (extxyz), resuming an interrupted run; returns the state.

    ``with_stress``: also the stress (periodic frames; the data set's other frames must have it too).
    A frame that fails is retried once with a fresh calculator before it counts as failed.
    State keys: ``done`` (candidates handled), ``labelled``, ``failed``, ``retried`` (frames tried twice),
    ``bytes``, ``cpu_seconds``, ``complete``.
    """
    output = Path(output)
    state_path = output.with_name(output.name + ".state.json")
    state = {"done": 0, "labelled": 0, "failed": 0, "retried": 0, "bytes": 0, "cpu_seconds": 0.0, "total": len(frames),
             "complete": False}
    if state_path.exists():
        state = json.loads(state_path.read_text())
        if state["total"] != len(frames):
            raise UserError(f"{state_path} was written for {state['total']} candidates, not {len(frames)}: "
                            "the candidates changed; delete the iteration's label files to label again")
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "ab"):
        pass
    if output.stat().st_size > state["bytes"]:  # killed between writing a frame and saving the state
        with open(output, "r+b") as handle:
            handle.truncate(state["bytes"])
    calculator = make_calculator() if state["done"] < len(frames) else None
    iterator = range(state["done"], len(frames))
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="labelling", unit="frame", initial=state["done"], total=len(frames))
    for k in iterator:
        started = time.process_time()
        labelled = label_one(frames[k], calculator, with_stress)
        if labelled is None:
            # A calculator keeps state between frames (tblite starts the SCF from the previous frame's
            # wavefunction): after a far-away frame it can fail where a fresh one converges. Retry once fresh.
            calculator = make_calculator()
            labelled = label_one(frames[k], calculator, with_stress)
            state["retried"] = state.get("retried", 0) + 1
        if labelled is None:
            state["failed"] += 1
        else:
            with open(output, "a") as handle:
                ase.io.write(handle, labelled, format="extxyz")
            state["labelled"] += 1
            state["bytes"] = output.stat().st_size
        state["done"] = k + 1
        state["cpu_seconds"] += time.process_time() - started
        write_text(state_path, json.dumps(state))
    state["complete"] = True
    write_text(state_path, json.dumps(state))
    return state


def read_labelled(output: str | Path) -> list[Atoms]:
    """The frames :func:`label_frames` wrote (none if the file is empty)."""
    output = Path(output)
    if not output.exists() or output.stat().st_size == 0:
        return []
    return ase.io.read(output, index=":", format="extxyz")

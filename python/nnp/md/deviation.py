"""Ensemble model deviation during LAMMPS MD (``pair_style nnp ensemble``, docs/pair_style.md).

Helpers for ``nnp stability --ensemble``: the pair_style arguments, the ``model_devi.out`` reader,
and when the deviation first crossed a trust level compared with when the trajectory collapsed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

COLUMNS = ("step", "max_devi_f", "min_devi_f", "avg_devi_f", "devi_e")


def ensemble_arguments(members: Sequence[str | Path], out_freq: int, out_file: str | Path) -> str:
    """What follows ``pair_style nnp`` to measure the deviation of ``members`` beside the driver."""
    return f"ensemble {' '.join(str(m) for m in members)} out_freq {out_freq} out_file {out_file}"


def read_model_devi(path: str | Path) -> np.ndarray:
    """Rows of a ``model_devi.out`` file as an (n, 5) array in the order of :data:`COLUMNS`."""
    path = Path(path)
    if not path.exists():
        return np.zeros((0, len(COLUMNS)))
    rows = [line.split() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return np.array(rows, dtype=float).reshape(-1, len(COLUMNS))


def first_crossing(trace: np.ndarray, threshold: float, column: str = "max_devi_f") -> int | None:
    """The first step whose ``column`` exceeds ``threshold`` (None if it never does)."""
    values = trace[:, COLUMNS.index(column)]
    above = np.nonzero(values > threshold)[0]
    return int(trace[above[0], 0]) if len(above) else None


def crossing_summary(trace: np.ndarray, threshold: float, timestep_fs: float, collapsed: bool,
                     collapse_step: int) -> dict:
    """When max_devi_f first exceeded ``threshold`` and how many steps that was before the collapse."""
    crossing = first_crossing(trace, threshold)
    summary = {"deviation_threshold": threshold, "deviation_samples": int(len(trace)),
               "max_devi_f_peak": float(trace[:, 1].max()) if len(trace) else None,
               "first_exceeds_step": crossing,
               "first_exceeds_ps": None if crossing is None else crossing * timestep_fs / 1000.0,
               "warning_steps_before_collapse": None}
    if collapsed and crossing is not None:
        summary["warning_steps_before_collapse"] = int(collapse_step - crossing)
    return summary


def check_members(driver: str | Path, members: Sequence[str | Path]) -> None:
    """Raise nnp.export.ModelFileError naming a member that cannot run beside ``driver``."""
    from ..evaluator import load_evaluator
    from ..export import ModelFileError

    try:
        from .._evaluator import ModelError, check_ensemble_member
    except ImportError:
        return  # without the C++ extension, LAMMPS (which needs it) reports it at pair_coeff
    lead = load_evaluator(driver)
    for member in members:
        try:
            check_ensemble_member(lead, str(driver), load_evaluator(member), str(member))
        except ModelError as err:
            raise ModelFileError(str(err)) from None

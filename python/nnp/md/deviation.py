"""Ensemble model deviation during LAMMPS MD (``pair_style nnp ensemble``, docs/pair_style.md).

Helpers for ``nnp stability --ensemble``: the pair_style arguments, the ``model_devi.out`` reader,
and when the deviation first crossed a trust level compared with when the trajectory collapsed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

# DeePMD-kit's model_devi.out columns (pair_deepmd, then devi_e where `dp model-devi` writes it); with
# `atomic`, one eps_i per atom follows. DP-GEN reads max_devi_v (1) and max_devi_f (4) by position.
COLUMNS = ("step", "max_devi_v", "min_devi_v", "avg_devi_v", "max_devi_f", "min_devi_f", "avg_devi_f", "devi_e")


def ensemble_arguments(members: Sequence[str | Path], out_freq: int, out_file: str | Path, *,
                       relative: float | None = None, relative_v: float | None = None, atomic: bool = False) -> str:
    """What follows ``pair_style nnp`` to measure the deviation of ``members`` beside the driver."""
    words = [f"ensemble {' '.join(str(m) for m in members)} out_freq {out_freq} out_file {out_file}"]
    if relative is not None:
        words.append(f"relative {relative!r}")
    if relative_v is not None:
        words.append(f"relative_v {relative_v!r}")
    if atomic:
        words.append("atomic")
    return " ".join(words)


def read_model_devi(path: str | Path, atomic: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Rows of a ``model_devi.out`` file as an (n, 8) array in the order of :data:`COLUMNS`.

    With ``atomic=True`` also the per-atom force deviations (n, N) of a file written with ``atomic``
    (atom-ID order; an (n, 0) array when the file has none). A missing file gives no rows.
    """
    path = Path(path)
    rows = []
    if path.exists():
        rows = [line.split() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    table = np.array(rows, dtype=float) if rows else np.zeros((0, len(COLUMNS)))
    if table.ndim != 2 or table.shape[1] < len(COLUMNS):
        raise ValueError(f"{path}: not a model deviation file with the columns {' '.join(COLUMNS)} "
                         "(written by pair_style nnp ensemble)")
    if atomic:
        return table[:, :len(COLUMNS)], table[:, len(COLUMNS):]
    return table[:, :len(COLUMNS)]


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
               "max_devi_f_peak": float(trace[:, COLUMNS.index("max_devi_f")].max()) if len(trace) else None,
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

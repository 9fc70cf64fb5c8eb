"""Does the ensemble's force deviation track the driving model's real error? The assumption behind trust levels.

DP-GEN-style selection trusts a frame whose ``max_devi_f`` (DeePMD's definition: the largest, over atoms, of
the members' root-mean-square force spread) is below ``lo``. That is only safe when the deviation is about as
large as the error of the model that drives the MD (member 0). Members finetuned from one pretrained model
share its errors, and their spread can be far smaller than the error: measured here on labelled frames.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms


def max_devi_f(forces: np.ndarray) -> float:
    """DeePMD's ``max_devi_f`` of one frame from the members' forces ``(members, atoms, 3)``:
    max over atoms of sqrt(mean over members |F_m - <F>|^2)."""
    spread = forces - forces.mean(axis=0, keepdims=True)
    return float(np.sqrt((spread**2).sum(axis=-1).mean(axis=0)).max())


def max_atomic_error(forces: np.ndarray, reference: np.ndarray) -> float:
    """The largest atomic force error |F - F_ref| (eV/Å) of one frame."""
    return float(np.linalg.norm(forces - reference, axis=1).max())


def _forces(calc, atoms: Atoms) -> np.ndarray:
    probe = atoms.copy()
    probe.calc = calc
    return probe.get_forces()


def deviation_scale(driver: str, frames: Sequence[Atoms]) -> dict:
    """The factor that turns the recorded deviation into the driving model's error: median over labelled
    explored frames (each with ``info['max_devi_f']``) of member 0's max force error / max_devi_f."""
    from ..calculator import NNPCalculator

    calc = NNPCalculator(driver)
    devi = np.array([float(a.info["max_devi_f"]) for a in frames])
    error = np.array([max_atomic_error(_forces(calc, a), a.get_forces()) for a in frames])
    return {"frames": len(frames), "scale": float(np.median(error / np.maximum(devi, 1e-12))),
            "median_max_devi_f_eV_A": float(np.median(devi)), "median_max_error_eV_A": float(np.median(error))}


def deviation_calibration(members: Sequence[str], frames: Sequence[Atoms], lo: float) -> dict:
    """Per labelled frame: the ensemble's ``max_devi_f`` and member 0's largest atomic force error |F - F_ref|
    (eV/Å); summarised as their medians, the median ratio error / deviation, Spearman's rank correlation,
    and how many frames the deviation calls accurate (< ``lo``) while the error is not."""
    from scipy.stats import spearmanr

    from ..calculator import NNPCalculator

    calcs = [NNPCalculator(m) for m in members]
    devi, error = [], []
    for atoms in frames:
        forces = np.stack([_forces(calc, atoms) for calc in calcs])
        devi.append(max_devi_f(forces))
        error.append(max_atomic_error(forces[0], atoms.get_forces()))
    devi, error = np.array(devi), np.array(error)
    accurate = devi < lo
    return {
        "frames": len(frames),
        "members": len(members),
        "median_max_devi_f_eV_A": float(np.median(devi)),
        "median_max_error_eV_A": float(np.median(error)),
        "median_error_over_deviation": float(np.median(error / np.maximum(devi, 1e-12))),
        "spearman": (float(spearmanr(devi, error).statistic)  # undefined for fewer than 3 or constant values
                     if len(frames) > 2 and np.ptp(devi) > 0 and np.ptp(error) > 0 else None),
        "accurate_fraction": float(accurate.mean()),
        "accurate_but_error_above_lo_fraction": float((accurate & (error >= lo)).mean()),
    }

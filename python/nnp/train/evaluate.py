"""Errors of an exported model file on labelled structures (the same evaluator LAMMPS runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms
from tqdm.auto import tqdm


def evaluate_model_file(model_path: str | Path, frames: Sequence[Atoms], progress: bool = False) -> dict[str, float]:
    """Energy/atom and force-component MAE and RMSE of a model file (or bundled model name) on ``frames``;
    ``forces_mae_by_element``: force-component MAE of each element's atoms; ``energy_per_atom_mae_centered``:
    the energy MAE once the mean error (a constant offset, e.g. another molecule's reference) is removed.

    When every frame is periodic and carries a stress label (ASE's convention: eV/Å³, Voigt xx yy zz yz xz xy,
    the virial stress without the kinetic part), also ``stress_mae``/``stress_rmse`` over the six components and
    ``pressure_mae`` (pressure = -trace/3): what NPT runs depend on, and what energies and forces do not fix."""
    from ..calculator import NNPCalculator

    from ..data.graph import species_indices

    calc = NNPCalculator(model_path)
    species_indices({s for atoms in frames for s in atoms.get_chemical_symbols()}, calc.species)  # before any work
    with_stress = all(a.pbc.all() and a.calc is not None and "stress" in a.calc.results for a in frames)
    e_err, f_err, s_err, symbols = [], [], [], []
    for atoms in tqdm(frames, desc="evaluate", disable=not progress, leave=False):
        ref_e, ref_f = atoms.get_potential_energy(), atoms.get_forces()
        probe = atoms.copy()
        probe.calc = calc
        e_err.append((probe.get_potential_energy() - ref_e) / len(atoms))
        f_err.append(probe.get_forces() - ref_f)
        if with_stress:
            s_err.append(probe.get_stress(voigt=True) - atoms.get_stress(voigt=True))
        symbols += atoms.get_chemical_symbols()
    e, per_atom = np.array(e_err), np.concatenate(f_err)
    f, symbols = per_atom.ravel(), np.array(symbols)
    stress = {}
    if with_stress:
        s = np.array(s_err)  # (frames, 6)
        stress = {"stress_mae": float(np.abs(s).mean()), "stress_rmse": float(np.sqrt((s**2).mean())),
                  "pressure_mae": float(np.abs(s[:, :3].mean(axis=1)).mean())}
    return {
        "energy_per_atom_mae": float(np.abs(e).mean()),
        "energy_per_atom_rmse": float(np.sqrt((e**2).mean())),
        "energy_per_atom_mae_centered": float(np.abs(e - e.mean()).mean()),  # a constant offset removed
        "forces_mae": float(np.abs(f).mean()),
        "forces_rmse": float(np.sqrt((f**2).mean())),
        "forces_mae_by_element": {str(el): float(np.abs(per_atom[symbols == el]).mean())
                                  for el in sorted(set(symbols))},
        **stress,
    }

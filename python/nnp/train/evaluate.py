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
    the energy MAE once the mean error (a constant offset, e.g. another molecule's reference) is removed."""
    from ..calculator import NNPCalculator

    from ..data.graph import species_indices

    calc = NNPCalculator(model_path)
    species_indices({s for atoms in frames for s in atoms.get_chemical_symbols()}, calc.species)  # before any work
    e_err, f_err, symbols = [], [], []
    for atoms in tqdm(frames, desc="evaluate", disable=not progress, leave=False):
        ref_e, ref_f = atoms.get_potential_energy(), atoms.get_forces()
        probe = atoms.copy()
        probe.calc = calc
        e_err.append((probe.get_potential_energy() - ref_e) / len(atoms))
        f_err.append(probe.get_forces() - ref_f)
        symbols += atoms.get_chemical_symbols()
    e, per_atom = np.array(e_err), np.concatenate(f_err)
    f, symbols = per_atom.ravel(), np.array(symbols)
    return {
        "energy_per_atom_mae": float(np.abs(e).mean()),
        "energy_per_atom_rmse": float(np.sqrt((e**2).mean())),
        "energy_per_atom_mae_centered": float(np.abs(e - e.mean()).mean()),  # a constant offset removed
        "forces_mae": float(np.abs(f).mean()),
        "forces_rmse": float(np.sqrt((f**2).mean())),
        "forces_mae_by_element": {str(el): float(np.abs(per_atom[symbols == el]).mean())
                                  for el in sorted(set(symbols))},
    }

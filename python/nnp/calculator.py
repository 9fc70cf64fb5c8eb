"""ASE calculator over an exported model file (the same C++ evaluator that LAMMPS uses)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from .data.graph import species_indices
from .data.neighbors import neighbor_list


class NNPCalculator(Calculator):
    """Energy, forces, stress, per-atom energies and per-atom virials from a model file (``.nnp.pt`` or ``.nnp.pt2``).

    Periodic images are mapped back to their owners (``num_local = N``), so the result is exact for
    message-passing models with any number of layers.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress", "stresses"]

    def __init__(self, model_path: str | Path, device: str = "cpu", **kwargs):
        super().__init__(**kwargs)
        from .evaluator import load_evaluator

        self.evaluator = load_evaluator(model_path, device)
        self.species = self.evaluator.species
        self.cutoff = self.evaluator.cutoff

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        positions = atoms.get_positions()
        if not np.all(np.isfinite(positions)):
            raise ValueError("NNPCalculator: atoms have NaN or infinite positions")
        cell = np.asarray(atoms.get_cell())
        i, j, shifts = neighbor_list(positions, cell, atoms.get_pbc(), self.cutoff)
        vectors = positions[j] - positions[i] + shifts @ cell
        species = species_indices(atoms.get_chemical_symbols(), self.species)
        out = self.evaluator.evaluate(species, np.stack([i, j]), vectors, len(atoms))
        self.results["energy"] = self.results["free_energy"] = float(out["energy"])
        self.results["energies"] = np.asarray(out["atom_energy"])
        self.results["forces"] = np.asarray(out["forces"])
        if atoms.cell.rank == 3 and atoms.pbc.any():
            volume = atoms.get_volume()
            stress = -np.asarray(out["virial"]) / volume
            self.results["stress"] = stress.flat[[0, 4, 8, 5, 2, 1]]
            self.results["stresses"] = -np.asarray(out["atom_virial"]).reshape(-1, 3, 3) / volume

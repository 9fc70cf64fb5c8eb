"""ASE calculator over an exported model file (the same C++ evaluator that LAMMPS uses)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from .data.graph import species_indices
from .data.neighbors import neighbor_list


DEVIATION_KEYS = ("max_devi_f", "min_devi_f", "avg_devi_f", "devi_e")  # compute nnp/deviation [1]-[4]
VIRIAL_DEVIATION_KEYS = ("max_devi_v", "min_devi_v", "avg_devi_v")     # compute nnp/deviation [5]-[7]


class NNPCalculator(Calculator):
    """Energy, forces, stress, per-atom energies and per-atom virials from a model file (``.nnp.pt`` or ``.nnp.pt2``).

    Periodic images are mapped back to their owners (``num_local = N``), so the result is exact for
    message-passing models with any number of layers.

    ``ensemble=[m2, m3, ...]``: extra model files evaluated on the same graph. ``model_path`` still
    gives energy and forces; ``results`` also holds the model deviation over all members (the driver
    included), with the definitions and numbers of ``pair_style nnp ensemble`` (docs/pair_style.md):
    ``model_deviation`` = ``[max_devi_f, min_devi_f, avg_devi_f, devi_e]`` (eV/Å, eV/atom), each also
    under its own key, ``max_devi_v``/``min_devi_v``/``avg_devi_v`` (virial per atom, eV) and ``devi_f``
    (eps_i per atom, eV/Å). ``relative`` / ``relative_v`` (>= 0): DeePMD's relative deviations, eps_i /
    (|<F_i>| + relative) and eps_ab / (|<virial_ab>|/N + relative_v), as the pair style's keywords.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress", "stresses"]

    def __init__(self, model_path: str | Path, device: str = "cpu", ensemble: list[str | Path] | None = None,
                 relative: float | None = None, relative_v: float | None = None, **kwargs):
        super().__init__(**kwargs)
        for name, level in (("relative", relative), ("relative_v", relative_v)):
            if level is not None and not level >= 0:
                raise ValueError(f"NNPCalculator: {name} must be a level >= 0 (or None for the absolute deviation)")
        self.relative = -1.0 if relative is None else float(relative)
        self.relative_v = -1.0 if relative_v is None else float(relative_v)
        from .evaluator import load_evaluator

        self.evaluator = load_evaluator(model_path, device)
        self.species = self.evaluator.species
        self.cutoff = self.evaluator.cutoff
        self.members = [load_evaluator(path, device) for path in ensemble or []]
        if self.members:
            from ._evaluator import check_ensemble_member

            for path, member in zip(ensemble, self.members):
                check_ensemble_member(self.evaluator, str(model_path), member, str(path))
            self.implemented_properties = type(self).implemented_properties + [
                "model_deviation", "devi_f", *DEVIATION_KEYS, *VIRIAL_DEVIATION_KEYS]

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
        if self.members:
            self._deviation(out, species, np.stack([i, j]), vectors, len(atoms))
        if atoms.cell.rank == 3 and atoms.pbc.any():
            volume = atoms.get_volume()
            stress = -np.asarray(out["virial"]) / volume
            self.results["stress"] = stress.flat[[0, 4, 8, 5, 2, 1]]
            self.results["stresses"] = -np.asarray(out["atom_virial"]).reshape(-1, 3, 3) / volume

    def _deviation(self, out: dict, species: np.ndarray, edge_index: np.ndarray, vectors: np.ndarray,
                   n: int) -> None:
        """The ensemble's deviation on the graph the driving model just used (C++ deviation.cpp)."""
        from ._evaluator import model_deviation, virial_deviation

        outputs = [out] + [member.evaluate(species, edge_index, vectors, n) for member in self.members]
        eps, devi_e = model_deviation([o["forces"] for o in outputs], [float(o["energy"]) for o in outputs], n,
                                      self.relative)
        _, *devi_v = virial_deviation([np.asarray(o["virial"]) for o in outputs], n, self.relative_v)
        eps = np.where(np.isfinite(eps), eps, np.inf)
        devi_e = devi_e if np.isfinite(devi_e) else np.inf
        values = [eps.max(initial=0.0), eps.min() if n else 0.0, eps.mean() if n else 0.0, devi_e]
        self.results["devi_f"] = eps
        self.results["model_deviation"] = np.array(values)
        self.results.update(dict(zip(DEVIATION_KEYS, map(float, values))))
        self.results.update({k: float(v) if np.isfinite(v) else np.inf for k, v in zip(VIRIAL_DEVIATION_KEYS, devi_v)})

"""LAMMPS data files of structures (atom style atomic, metal units, one type per element)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import ase.io
from ase import Atoms


def write_lammps_data(atoms: Atoms, path: Path, species: Sequence[str]) -> None:
    """Atomic-style LAMMPS data file with one type per element of ``species`` (in that order)."""
    ase.io.write(path, atoms, format="lammps-data", specorder=list(species), atom_style="atomic", masses=True,
                 units="metal")

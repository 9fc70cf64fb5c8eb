"""Units, written once. Models work in eV, Å and eV/Å (LAMMPS ``metal``); MD17 files and LAMMPS ``real``
use kcal/mol. ``pair_nnp/contract.h`` mirrors the constant (``tests/test_contract.py`` checks it)."""

from __future__ import annotations

from ase import units

EV_PER_KCAL_PER_MOL = units.kcal / units.mol  # 1 kcal/mol in eV (ASE's CODATA value)
KCAL_PER_MOL_PER_EV = 1.0 / EV_PER_KCAL_PER_MOL

# the LAMMPS unit styles pair_style nnp accepts: their energy unit in eV (lengths are Å in both)
LAMMPS_ENERGY_IN_EV = {"metal": 1.0, "real": EV_PER_KCAL_PER_MOL}

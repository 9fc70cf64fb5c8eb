"""Element data and the bond criteria, written once.

Covalent radii are ASE's (Cordero et al. 2008). Two bond rules exist on purpose:

* nnp's, ``d < BOND_SCALE * (r_i + r_j)``: molecules in data and analyses, and ``compute
  bond/deviation`` in LAMMPS (pair_nnp/compute_bond_deviation.cpp keeps a copy of the radii and the
  default scale; tests/test_contract.py checks that both agree);
* MDsim's, ``d < r_i + r_j + 2 * MDSIM_SKIN``: what ``ase.neighborlist.NeighborList(natural_cutoffs)``
  with its default skin finds, as MDsim's stability protocol does (nnp.md.replicas reproduces it).

And one rule for atoms that have run into each other, ``d < CONTACT_SCALE * (r_i + r_j)``: no bond is that
short (O-H 0.97 Å against its limit 0.49 Å), so a structure with such a pair has collapsed, whatever a
model's energy or an ensemble's deviation says about it (nnp.md.criteria.close_contact).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase.data import atomic_numbers, covalent_radii

BOND_SCALE = 1.2
MDSIM_SKIN = 0.3  # Å, ase.neighborlist.NeighborList's default skin, added to each atom's natural cutoff
CONTACT_SCALE = 0.5


def radii(numbers: Sequence[int] | np.ndarray) -> np.ndarray:
    """Covalent radius (Å) of each atomic number."""
    return covalent_radii[np.asarray(numbers, dtype=int)]


def covalent_radius(symbol: str) -> float:
    return float(covalent_radii[atomic_numbers[symbol]])


def bond_length_limit(r_i: np.ndarray, r_j: np.ndarray, scale: float = BOND_SCALE) -> np.ndarray:
    """nnp's rule: atoms closer than this are bonded."""
    return scale * (np.asarray(r_i) + np.asarray(r_j))


def mdsim_bond_length_limit(r_i: np.ndarray, r_j: np.ndarray) -> np.ndarray:
    """MDsim's rule: atoms closer than this are bonded."""
    return np.asarray(r_i) + np.asarray(r_j) + 2 * MDSIM_SKIN


def contact_limit(r_i: np.ndarray, r_j: np.ndarray) -> np.ndarray:
    """Atoms closer than this have run into each other (a collapsed structure)."""
    return CONTACT_SCALE * (np.asarray(r_i) + np.asarray(r_j))

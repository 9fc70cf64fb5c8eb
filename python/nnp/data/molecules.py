"""Molecules from covalent-radius connectivity (works for water, organics, periodic boxes)."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..chemistry import BOND_SCALE, bond_length_limit, radii
from .neighbors import neighbor_list


def bonds(atoms: Atoms, scale: float = BOND_SCALE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bonded pairs ``(i, j, shift)`` by nnp's rule (nnp.chemistry), each pair both ways."""
    r = radii(atoms.numbers)
    cutoff = float(bond_length_limit(r.max(), r.max(), scale))
    i, j, shifts = neighbor_list(atoms.positions, np.asarray(atoms.cell), atoms.pbc, cutoff)
    vectors = atoms.positions[j] - atoms.positions[i] + shifts @ np.asarray(atoms.cell)
    bonded = np.linalg.norm(vectors, axis=1) < bond_length_limit(r[i], r[j], scale)
    return i[bonded], j[bonded], shifts[bonded]


def molecule_labels(atoms: Atoms, scale: float = BOND_SCALE) -> np.ndarray:
    """Molecule index of every atom: its connected component of the bond graph."""
    i, j, _ = bonds(atoms, scale)
    n = len(atoms)
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def find_molecules(atoms: Atoms, scale: float = BOND_SCALE) -> list[np.ndarray]:
    """Connected components of the bond graph, as sorted arrays of atom indices."""
    labels = molecule_labels(atoms, scale)
    return [np.flatnonzero(labels == k) for k in range(labels.max() + 1 if len(labels) else 0)]


def reference_bonds(atoms: Atoms, scale: float = BOND_SCALE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bonds (i < j) of a structure and their lengths there (minimum image when periodic)."""
    i, j, shifts = bonds(atoms, scale)
    keep = i < j
    i, j, shifts = i[keep], j[keep], shifts[keep]
    vectors = atoms.positions[j] - atoms.positions[i] + shifts @ np.asarray(atoms.cell)
    return i, j, np.linalg.norm(vectors, axis=1)

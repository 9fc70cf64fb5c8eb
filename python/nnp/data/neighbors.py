"""Periodic neighbour lists (vesin) with integer cell shifts."""

from __future__ import annotations

import numpy as np
from vesin import NeighborList


def neighbor_list(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray | list[bool], cutoff: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full neighbour list: returns (i, j, S) with ``r_ij = x_j - x_i + S @ cell`` for |r_ij| < cutoff.

    Every pair appears in both directions; periodic images of an atom (including itself) are
    separate edges. Directions with ``pbc`` False have no images (their cell vector is ignored).
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    pbc = np.asarray(pbc, dtype=bool).reshape(3)
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    if not pbc.any():
        cell = np.zeros((3, 3))
    elif not pbc.all():
        # vesin needs a full-rank box; give non-periodic directions a harmless vector
        cell = cell.copy()
        for axis in np.flatnonzero(~pbc):
            if np.linalg.norm(cell[axis]) < 1e-12:
                cell[axis] = np.eye(3)[axis] * (np.ptp(positions[:, axis]) + 2 * cutoff + 1.0)
    if np.any(pbc):
        lengths = _perpendicular_widths(cell)
        if np.any(lengths[pbc] <= 0):
            raise ValueError("periodic cell has zero volume: check the cell of the structure")
    nl = NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, shifts = nl.compute(points=positions, box=cell, periodic=pbc.tolist(), quantities="ijS")
    order = np.lexsort((j, i))
    return i[order].astype(np.int64), j[order].astype(np.int64), shifts[order].astype(np.int64)


def pair_distances(atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, d) of an ASE ``Atoms``: every pair closer than ``cutoff`` (both directions, periodic images
    included, as :func:`neighbor_list`) and its distance."""
    positions, cell = atoms.get_positions(), np.asarray(atoms.get_cell())
    i, j, shifts = neighbor_list(positions, cell, atoms.get_pbc(), cutoff)
    return i, j, np.linalg.norm(positions[j] - positions[i] + shifts @ cell, axis=1)


def _perpendicular_widths(cell: np.ndarray) -> np.ndarray:
    volume = abs(np.linalg.det(cell))
    return np.array(
        [volume / max(np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3])), 1e-300) for k in range(3)]
    )

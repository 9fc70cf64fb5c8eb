"""The state of a running LAMMPS (one rank) as Python objects: per-atom arrays in atom-id order, the box as a
cell, the system as :class:`ase.Atoms`.

LAMMPS keeps a triclinic box in its restricted form (a along x, b in the xy plane), so a structure whose cell
is not lower-triangular was rotated on the way in (``write_lammps_data``); positions read back are in LAMMPS's
frame and go with LAMMPS's box, never with the structure's original cell.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms


def by_id(lmp, name: str) -> np.ndarray:
    """Per-atom array ``name`` (``"x"``, ``"f"``, ``"type"``, ``"image"``, ...) sorted by atom id (a copy)."""
    n = lmp.extract_global("nlocal")
    if n != lmp.get_natoms():
        raise RuntimeError(f"this rank holds {n} of {lmp.get_natoms()} atoms: reading the whole system from Python "
                           "needs one MPI rank (gather with a dump file on several)")
    order = np.argsort(lmp.numpy.extract_atom("id")[:n])
    return np.array(lmp.numpy.extract_atom(name)[:n][order])


def box_cell(lmp) -> np.ndarray:
    """The box as cell vectors (rows, Å): a = (lx, 0, 0), b = (xy, ly, 0), c = (xz, yz, lz); the current box,
    so it follows ``fix npt`` and ``fix deform``."""
    boxlo, boxhi, xy, yz, xz, _, _ = lmp.extract_box()
    lx, ly, lz = np.subtract(boxhi, boxlo)
    return np.array([[lx, 0.0, 0.0], [xy, ly, 0.0], [xz, yz, lz]])


def current_atoms(lmp, type_symbols: Sequence[str], pbc: bool | Sequence[bool] = True) -> Atoms:
    """The system now: atom ``i`` of id ``i + 1`` is element ``type_symbols[type - 1]`` at its LAMMPS position (Å in
    ``metal`` and ``real`` units), in the current box (:func:`box_cell`)."""
    types = by_id(lmp, "type")
    return Atoms([type_symbols[t - 1] for t in types], positions=by_id(lmp, "x").astype(float), cell=box_cell(lmp),
                 pbc=pbc)


def unwrapped_positions(lmp, atoms: Atoms) -> np.ndarray:
    """``atoms``' positions (as :func:`current_atoms` read them) moved out of the box by LAMMPS's image flags."""
    image = by_id(lmp, "image").astype(np.int64)  # LAMMPS's packing of three 10-bit counters, 512 = image 0
    flags = np.stack([(image & 1023) - 512, ((image >> 10) & 1023) - 512, (image >> 20) - 512], axis=1)
    return atoms.positions + flags @ np.asarray(atoms.cell)

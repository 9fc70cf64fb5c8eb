"""LAMMPS data files of structures: written atomic style, metal units, one type per element; read in any style."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import ase.io
import numpy as np
from ase import Atoms


def write_lammps_data(atoms: Atoms, path: Path, species: Sequence[str]) -> None:
    """Atomic-style LAMMPS data file with one type per element of ``species`` (in that order)."""
    ase.io.write(path, atoms, format="lammps-data", specorder=list(species), atom_style="atomic", masses=True,
                 units="metal")


def load_atoms(lmp, atoms: Atoms, species: Sequence[str], **system: str) -> None:
    """Make ``atoms`` the system of a fresh LAMMPS instance ``lmp``: written as a data file (one type per element of
    ``species``, in that order) in a temporary folder and read with :func:`nnp.lammps.system_lines`, whose keywords
    ``system`` passes on (the boundary defaults to the structure's periodicity)."""
    import tempfile

    from .deck import boundary, system_lines

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "start.data"
        write_lammps_data(atoms, data, species)
        lmp.commands_list(system_lines(data, **{"boundary": boundary(atoms), **system}))


def read_lammps_data(path: str | Path, type_symbols: Sequence[str] | None = None) -> Atoms:
    """The structure of a LAMMPS data file (any atom style ASE knows; positions in Å, as in metal and real units).

    ``type_symbols``: the element of each atom type in type order, as in ``pair_coeff * * O H``. Without it the
    elements come from the file's Masses section, each mass within 0.1 u of its element's standard atomic
    weight; a file without Masses, or with masses that name no element (deuterium, coarse grains), is an error
    that asks for ``type_symbols``, never a guess (ASE's reader would silently make type 1 H and type 2 He).
    """
    from ase.data import atomic_masses, atomic_numbers, chemical_symbols

    from ..errors import UserError

    path = Path(path)
    try:
        atoms = ase.io.read(path, format="lammps-data", units="metal")
    except Exception as err:  # noqa: BLE001 - any parse failure gets one message naming the file
        raise UserError(f"{path}: cannot be read as a LAMMPS data file ({type(err).__name__}: {err}); "
                        "write it with write_data, or give a structure format ASE reads (extxyz, ...)") from err
    type_of_atom = atoms.arrays["type"]
    present = sorted(set(int(t) for t in type_of_atom))
    named = {}  # type -> (its mass, the element of the nearest standard atomic weight, that weight)
    if atoms.has("masses"):
        for t in present:
            k = int(np.flatnonzero(type_of_atom == t)[0])
            mass, z = float(atoms.get_masses()[k]), int(atoms.numbers[k])  # ASE's guess from the mass
            named[t] = (mass, chemical_symbols[z], float(atomic_masses[z]))
    if type_symbols is not None:
        unknown = [t for t in type_symbols if t not in atomic_numbers]
        if unknown or len(type_symbols) < present[-1]:
            raise UserError(f"{path}: type_symbols {list(type_symbols)} must name an element for each of the atom "
                            f"types 1-{present[-1]} in the file, in type order (as in pair_coeff * * O H)")
        for t, (mass, element, weight) in named.items():  # a swapped order is a silent disaster
            if abs(mass - weight) <= 0.1 and element != type_symbols[t - 1]:
                raise UserError(f"{path}: atom type {t} has the mass of {element} ({mass:g} u) but "
                                f"type_symbols names it {type_symbols[t - 1]}; give the elements in type order")
        atoms.numbers = [atomic_numbers[type_symbols[t - 1]] for t in type_of_atom]
    elif not named:
        raise UserError(f"{path}: has no Masses section, so its atom types name no element; give the elements "
                        f"in type order (type_symbols: [...], as in pair_coeff * * ...) for types {present}")
    else:
        for t, (mass, element, weight) in named.items():
            if abs(mass - weight) > 0.1:
                raise UserError(f"{path}: atom type {t} has mass {mass:g} u, which is no element's standard "
                                f"atomic weight (nearest: {element}, {weight:.3f}); "
                                "give the elements in type order (type_symbols: [...], as in pair_coeff * * ...)")
    for name in ("type", "masses", "id", "mmcharges", "initial_charges", "mol-id", "travel"):
        if name in atoms.arrays:
            del atoms.arrays[name]
    return atoms

"""Re-use LAMMPS trajectories as data: dump files with forces plus the potential energies of the log."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from ..units import LAMMPS_ENERGY_IN_EV
from .errors import DatasetError


def read_log_energies(log_path: str | Path, column: str = "PotEng") -> dict[int, float]:
    """``{step: potential energy}`` from every thermo block of a LAMMPS log that prints ``column``."""
    energies: dict[int, float] = {}
    header: list[str] | None = None
    for line in Path(log_path).read_text().splitlines():
        words = line.split()
        if words[:1] == ["Step"]:
            header = words if column in words else None
            continue
        if header is None:
            continue
        if len(words) != len(header) or not re.fullmatch(r"-?\d+", words[0]):
            header = None if words[:1] == ["Loop"] else header
            continue
        energies[int(words[0])] = float(words[header.index(column)])
    return energies


def read_lammps_dump(dump_path: str | Path, type_symbols: Sequence[str], log_path: str | Path | None = None,
                     units: str = "metal", energy_column: str = "PotEng") -> list[Atoms]:
    """Frames of a text dump with ``id type x y z fx fy fz`` columns (any order, ``xu``/``xs`` too).

    ``type_symbols[k]`` is the element of LAMMPS type k+1. Energies come from the log's thermo output at
    the same steps (``thermo`` must print every dumped step); forces and energies are converted to eV, Å.
    """
    import ase.io

    dump_path = Path(dump_path)
    if units not in LAMMPS_ENERGY_IN_EV:
        raise DatasetError(f"{dump_path}: units {units!r} not supported; use metal or real")
    if not dump_path.exists():
        raise DatasetError(f"{dump_path}: file does not exist")
    steps = [int(lines.split()[0]) for lines in re.findall(r"ITEM: TIMESTEP\s*\n\s*(\d+)", dump_path.read_text())]
    try:
        frames = ase.io.read(dump_path, index=":", format="lammps-dump-text")
    except Exception as err:
        raise DatasetError(f"{dump_path}: not a readable LAMMPS text dump ({err})") from None
    energies = read_log_energies(log_path, energy_column) if log_path else {}
    scale = LAMMPS_ENERGY_IN_EV[units]
    out = []
    for k, (atoms, step) in enumerate(zip(frames, steps)):
        types = atoms.numbers  # ASE stores the LAMMPS type as the atomic number
        if types.max() > len(type_symbols):
            raise DatasetError(f"{dump_path}: frame {k} has atom type {types.max()} but only "
                               f"{len(type_symbols)} element names were given")
        if atoms.calc is None or "forces" not in atoms.calc.results:
            raise DatasetError(f"{dump_path}: frame {k} has no fx fy fz columns; dump them to use the file as data")
        forces = np.asarray(atoms.calc.results["forces"]) * scale
        result = Atoms([type_symbols[t - 1] for t in types], positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        labels = {"forces": forces}
        if log_path:
            if step not in energies:
                raise DatasetError(f"{dump_path}: frame {k} (step {step}) has no {energy_column} in {log_path}; "
                                   "print thermo at every dumped step")
            labels["energy"] = energies[step] * scale
        result.info["step"] = step
        result.calc = SinglePointCalculator(result, **labels)
        out.append(result)
    return out

"""Dataset readers: extxyz and anything ASE reads, ASE databases, MD17 and revised MD17 ``.npz``.

Every reader returns ``ase.Atoms`` whose labels (energy in eV, forces in eV/Å, stress in eV/Å^3) sit
in a ``SinglePointCalculator``; units are converted here, at the edge.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import chemical_symbols

from .errors import DatasetError

KCAL_PER_MOL = units.kcal / units.mol  # eV
MD17_KEYS = ("R", "z", "E", "F")
RMD17_KEYS = ("coords", "nuclear_charges", "energies", "forces")
BUNDLED = Path(__file__).resolve().parent / "bundled"


def bundled_dataset(name: str = "water_tip3p_small") -> Path:
    """Path of a dataset shipped inside the package (``python/nnp/data/bundled``)."""
    path = BUNDLED / f"{name}.extxyz"
    if not path.exists():
        known = ", ".join(sorted(p.name.removesuffix(".extxyz") for p in BUNDLED.glob("*.extxyz")))
        raise DatasetError(f"no bundled dataset {name!r}; bundled datasets: {known or 'none'}")
    return path


def read_structures(path: str | Path, index: str | int | slice = ":", format: str | None = None,
                    require_labels: bool = True) -> list[Atoms]:
    """Read every frame of a dataset file, validated, with labels in eV and Å."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: file does not exist")
    if path.stat().st_size == 0:
        raise DatasetError(f"{path}: file is empty")
    if format is None and path.suffix == ".npz":
        frames = _read_npz(path)
    elif format == "db" or (format is None and path.suffix == ".db"):
        frames = _read_ase_db(path)
    else:
        frames = _read_ase(path, format)
    if isinstance(index, str) and index != ":":
        from ase.io.formats import string2index

        index = string2index(index)
    selected = frames[index] if not isinstance(index, str) else frames
    selected = selected if isinstance(selected, list) else [selected]
    if not selected:
        raise DatasetError(f"{path}: no frames")
    for k, atoms in enumerate(selected):
        validate_frame(atoms, path, k, require_labels)
    return selected


def validate_frame(atoms: Atoms, path: Path, frame: int, require_labels: bool) -> None:
    """Finite positions, known elements, labels of the right shape (and present when required)."""
    where = f"{path}: frame {frame}"
    if len(atoms) == 0:
        raise DatasetError(f"{where}: has no atoms")
    if np.any(atoms.numbers <= 0) or np.any(atoms.numbers >= len(chemical_symbols)):
        raise DatasetError(f"{where}: unknown element (atomic numbers {sorted(set(atoms.numbers.tolist()))})")
    if not np.all(np.isfinite(atoms.positions)):
        raise DatasetError(f"{where}: positions contain NaN or infinity")
    results = atoms.calc.results if atoms.calc is not None else {}
    if require_labels:
        missing = [key for key in ("energy", "forces") if key not in results]
        if missing:
            raise DatasetError(f"{where}: no {' or '.join(missing)} label; training needs both "
                               "(use require_labels=False for positions-only pretraining data)")
    if "energy" in results and not np.isfinite(results["energy"]):
        raise DatasetError(f"{where}: energy is NaN or infinite")
    if "forces" in results:
        forces = np.asarray(results["forces"])
        if forces.shape != (len(atoms), 3):
            raise DatasetError(f"{where}: forces have shape {forces.shape}, expected ({len(atoms)}, 3)")
        if not np.all(np.isfinite(forces)):
            raise DatasetError(f"{where}: forces contain NaN or infinity")


def _labelled(atoms: Atoms, **labels) -> Atoms:
    atoms.calc = SinglePointCalculator(atoms, **{k: v for k, v in labels.items() if v is not None})
    return atoms


def _read_ase(path: Path, format: str | None) -> list[Atoms]:
    import ase.io

    try:
        frames = ase.io.read(path, index=":", format=format)
    except Exception as err:  # ASE raises many types for malformed files
        raise DatasetError(f"{path}: cannot be read{f' as {format}' if format else ''}: {err}") from None
    frames = frames if isinstance(frames, list) else [frames]
    out = []
    for atoms in frames:  # keep only the labels, as a plain single-point calculator
        results = dict(atoms.calc.results) if atoms.calc is not None else {}
        clean = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc, info=atoms.info)
        out.append(_labelled(clean, energy=results.get("energy"), forces=results.get("forces"),
                             stress=results.get("stress")))
    return out


def _read_ase_db(path: Path) -> list[Atoms]:
    import ase.db

    try:
        rows = list(ase.db.connect(path).select())
    except Exception as err:
        raise DatasetError(f"{path}: not a readable ASE database: {err}") from None
    out = []
    for row in rows:
        atoms = row.toatoms()
        results = atoms.calc.results if atoms.calc is not None else {}
        atoms.calc = None
        out.append(_labelled(atoms, energy=results.get("energy"), forces=results.get("forces"),
                             stress=results.get("stress")))
    return out


def _read_npz(path: Path) -> list[Atoms]:
    try:
        data = np.load(path, allow_pickle=False)
        keys = set(data.files)
    except Exception as err:
        raise DatasetError(f"{path}: not a readable .npz file: {err}") from None
    if set(MD17_KEYS) <= keys:
        positions, numbers, energies, forces = (data[k] for k in MD17_KEYS)
    elif set(RMD17_KEYS) <= keys:
        positions, numbers, energies, forces = (data[k] for k in RMD17_KEYS)
    else:
        raise DatasetError(
            f"{path}: keys {sorted(keys)} match no supported .npz format; MD17 needs {', '.join(MD17_KEYS)}, "
            f"revised MD17 needs {', '.join(RMD17_KEYS)}"
        )
    numbers = np.asarray(numbers).astype(np.int64).ravel()
    positions, forces = np.asarray(positions, dtype=np.float64), np.asarray(forces, dtype=np.float64)
    energies = np.asarray(energies, dtype=np.float64).reshape(-1)  # MD17 stores E as (n, 1)
    n = len(energies)
    if positions.shape != (n, len(numbers), 3):
        raise DatasetError(f"{path}: positions have shape {positions.shape}, expected ({n}, {len(numbers)}, 3) "
                           f"for {n} energies and {len(numbers)} atoms")
    if forces.shape != positions.shape:
        raise DatasetError(f"{path}: forces have shape {forces.shape}, positions {positions.shape}")
    if np.any(numbers <= 0) or np.any(numbers >= len(chemical_symbols)):
        raise DatasetError(f"{path}: unknown element (atomic numbers {sorted(set(numbers.tolist()))})")
    return [
        _labelled(Atoms(numbers, positions=positions[k]), energy=energies[k] * KCAL_PER_MOL,
                  forces=forces[k] * KCAL_PER_MOL)
        for k in range(n)
    ]


def write_extxyz(path: str | Path, frames: list[Atoms]) -> Path:
    """Write frames with their energy/forces labels so that :func:`read_structures` reads them back."""
    import ase.io

    path = Path(path)
    ase.io.write(path, frames, format="extxyz")
    return path

"""Dataset readers: extxyz and anything ASE reads, ASE databases, MD17 and revised MD17 ``.npz``.

Every reader returns ``ase.Atoms`` whose labels (energy in eV, forces in eV/Å, stress in eV/Å^3,
ASE convention) sit in a ``SinglePointCalculator``; units are converted here, at the edge. Every
frame is validated; problems raise :class:`~nnp.data.errors.DatasetError` naming the file, the frame,
the problem and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator

from .errors import DatasetError

KCAL_PER_MOL = units.kcal / units.mol  # eV; MD17 and revised MD17 store kcal/mol and kcal/mol/Å
MAX_ATOMIC_NUMBER = 118
MD17_KEYS = ("R", "z", "E", "F")  # positions, atomic numbers, energies, forces (sGDML MD17 files)
RMD17_KEYS = ("coords", "nuclear_charges", "energies", "forces")  # revised MD17 (Christensen & von Lilienfeld)
NPZ_FORMATS = {"md17": MD17_KEYS, "rmd17": RMD17_KEYS}
BUNDLED = Path(__file__).resolve().parent / "bundled"

Index = str | int | slice | Sequence[int]


def bundled_dataset(name: str = "water_tip3p_small") -> Path:
    """Path of a dataset shipped inside the package (``python/nnp/data/bundled/<name>.extxyz``)."""
    path = BUNDLED / f"{name}.extxyz"
    if not path.exists():
        known = ", ".join(sorted(p.name.removesuffix(".extxyz") for p in BUNDLED.glob("*.extxyz")))
        raise DatasetError(f"{path}: no bundled dataset {name!r}; choose one of: {known or 'none'}")
    return path


def read_structures(path: str | Path, index: Index = ":", format: str | None = None,
                    require_labels: bool = True) -> list[Atoms]:
    """Read and validate the frames ``index`` of a dataset file; labels in eV, eV/Å, eV/Å^3.

    ``format`` None picks the reader from the suffix: ``.npz`` MD17 (keys ``R, z, E, F``) or revised
    MD17 (keys ``coords, nuclear_charges, energies, forces``), ``.db`` ASE database, anything else
    ``ase.io.read`` (extxyz, ...). ``format`` may also be ``"npz"``, ``"md17"``, ``"rmd17"``, ``"db"``
    or any ASE format name. With ``require_labels`` every frame must carry energy and forces;
    ``require_labels=False`` accepts unlabelled frames (positions only, e.g. for pretraining).
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: file does not exist; check the path (relative paths are taken from "
                           f"{Path.cwd()}) or generate the dataset first")
    if path.is_dir():
        raise DatasetError(f"{path}: is a directory, not a dataset file; give the path of the file inside it")
    if path.stat().st_size == 0:
        raise DatasetError(f"{path}: file is empty (0 bytes); the run that wrote it probably failed: "
                           "write or download it again")
    kind = (format or "").lower()
    if kind in ("npz", *NPZ_FORMATS) or (format is None and path.suffix.lower() == ".npz"):
        indices, frames = _read_npz(path, index)
    else:
        if kind in ("db", "ase-db") or (format is None and path.suffix.lower() == ".db"):
            every = _read_ase_db(path)
        else:
            every = _read_ase(path, format)
        indices = _selection(path, index, len(every))
        frames = [every[k] for k in indices]
    for k, atoms in zip(indices, frames):
        validate_frame(atoms, path, k, require_labels)
    return frames


def validate_frame(atoms: Atoms, path: str | Path, frame: int, require_labels: bool = True) -> None:
    """Raise :class:`DatasetError` unless the frame has atoms, known elements, finite positions and
    labels of the right shape (energy and forces present when ``require_labels``)."""
    where = f"{path}: frame {frame}"
    if len(atoms) == 0:
        raise DatasetError(f"{where}: has no atoms; remove the frame")
    numbers = atoms.numbers
    if np.any(numbers <= 0) or np.any(numbers > MAX_ATOMIC_NUMBER):
        bad = sorted({int(z) for z in numbers if z <= 0 or z > MAX_ATOMIC_NUMBER})
        raise DatasetError(f"{where}: unknown element (atomic numbers {bad}); atomic numbers must be 1..118, "
                           "fix the species of these atoms")
    if not np.all(np.isfinite(atoms.positions)):
        atom = int(np.argwhere(~np.isfinite(atoms.positions))[0, 0])
        raise DatasetError(f"{where}: positions contain NaN or infinity (atom {atom}); remove the frame")
    if atoms.cell.rank == 3 and not np.all(np.isfinite(atoms.cell.array)):
        raise DatasetError(f"{where}: cell contains NaN or infinity; fix the lattice or remove the frame")
    results = atoms.calc.results if atoms.calc is not None else {}
    if require_labels:
        missing = [key for key in ("energy", "forces") if results.get(key) is None]
        if missing:
            raise DatasetError(
                f"{where}: no {' or '.join(missing)} label; training needs both (extxyz: energy=... in the "
                "comment line and a forces column). Pass require_labels=False for positions-only "
                "(pretraining) data"
            )
    if results.get("energy") is not None:
        energy = np.asarray(results["energy"], dtype=float)
        if energy.size != 1:
            raise DatasetError(f"{where}: energy has shape {energy.shape}, expected one number (total energy)")
        if not np.isfinite(energy).all():
            raise DatasetError(f"{where}: energy is NaN or infinite; remove the frame (failed calculation?)")
    if results.get("forces") is not None:
        forces = np.asarray(results["forces"], dtype=float)
        if forces.shape != (len(atoms), 3):
            raise DatasetError(f"{where}: forces have shape {forces.shape}, expected ({len(atoms)}, 3) "
                               f"for {len(atoms)} atoms; one force vector per atom is needed")
        if not np.all(np.isfinite(forces)):
            atom = int(np.argwhere(~np.isfinite(forces))[0, 0])
            raise DatasetError(f"{where}: forces contain NaN or infinity (atom {atom}); remove the frame")
    if results.get("stress") is not None:
        stress = np.asarray(results["stress"], dtype=float)
        if stress.shape not in ((6,), (3, 3)):
            raise DatasetError(f"{where}: stress has shape {stress.shape}, expected (6,) Voigt or (3, 3)")
        if not np.all(np.isfinite(stress)):
            raise DatasetError(f"{where}: stress contains NaN or infinity; remove the frame or its stress")


def write_extxyz(path: str | Path, atoms_list: Atoms | Sequence[Atoms]) -> Path:
    """Write frames with their energy/forces/stress labels so that :func:`read_structures` reads them back."""
    import ase.io

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [atoms_list] if isinstance(atoms_list, Atoms) else list(atoms_list)
    ase.io.write(path, frames, format="extxyz")
    return path


def _labelled(atoms: Atoms, energy=None, forces=None, stress=None) -> Atoms:
    labels = {"energy": energy, "forces": forces, "stress": stress}
    atoms.calc = SinglePointCalculator(atoms, **{k: v for k, v in labels.items() if v is not None})
    return atoms


def _selection(path: Path, index: Index, n: int) -> list[int]:
    """Frame numbers (in the file) that ``index`` selects out of ``n`` frames."""
    if n == 0:
        raise DatasetError(f"{path}: holds no frames; write or download the file again")
    if isinstance(index, str):
        from ase.io.formats import string2index

        try:
            index = string2index(index)
        except ValueError:
            raise DatasetError(f"{path}: index {index!r} is not an integer or a slice like ':' or '10:20'") from None
    frames = range(n)
    try:
        if isinstance(index, (int, np.integer)):
            selected = [frames[int(index)]]
        elif isinstance(index, slice):
            selected = list(frames[index])
        else:
            selected = [frames[int(k)] for k in index]
    except IndexError:
        raise DatasetError(f"{path}: index {index!r} is out of range; the file holds {n} frames") from None
    if not selected:
        raise DatasetError(f"{path}: index {index!r} selects no frames; the file holds {n} frames")
    return selected


def _read_ase(path: Path, format: str | None) -> list[Atoms]:
    import ase.io

    try:
        frames = ase.io.read(path, index=":", format=format)
    except KeyError as err:  # ASE's symbol lookup
        raise DatasetError(f"{path}: unknown element symbol {err}; use standard chemical symbols "
                           "(H, He, ..., Og)") from None
    except Exception as err:  # ASE raises many types for malformed files
        raise DatasetError(
            f"{path}: cannot be read{f' as {format}' if format else ''} ({type(err).__name__}: {err}); the file "
            "may be truncated or in another format: write it again or pass format=... (an ASE format name)"
        ) from None
    frames = frames if isinstance(frames, list) else [frames]
    out = []
    for atoms in frames:  # keep only the labels, as a plain single-point calculator
        results = dict(atoms.calc.results) if atoms.calc is not None else {}
        clean = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc,
                      info=dict(atoms.info))
        out.append(_labelled(clean, results.get("energy"), results.get("forces"), results.get("stress")))
    return out


def _read_ase_db(path: Path) -> list[Atoms]:
    import ase.db

    try:
        rows = list(ase.db.connect(path, type="db").select())
    except Exception as err:
        raise DatasetError(f"{path}: not a readable ASE database ({type(err).__name__}: {err}); the file may be "
                           "truncated or not an ASE SQLite database: write it again with ase.db") from None
    out = []
    for row in rows:
        try:
            atoms = row.toatoms()
        except KeyError as err:
            raise DatasetError(f"{path}: frame {row.id - 1}: unknown element {err}") from None
        results = atoms.calc.results if atoms.calc is not None else {}
        atoms.calc = None
        atoms.info.update(row.key_value_pairs)
        out.append(_labelled(atoms, results.get("energy"), results.get("forces"), results.get("stress")))
    return out


def _read_npz(path: Path, index: Index) -> tuple[list[int], list[Atoms]]:
    """MD17 / revised MD17 ``.npz``: kcal/mol and kcal/mol/Å converted to eV and eV/Å."""
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = sorted(data.files)
            names = next((k for k in NPZ_FORMATS.values() if set(k) <= set(keys)), None)
            if names is None:
                raise DatasetError(
                    f"{path}: keys {keys} match no supported .npz format; supported: MD17 with keys "
                    f"{', '.join(MD17_KEYS)} and revised MD17 with keys {', '.join(RMD17_KEYS)} (kcal/mol, Å). "
                    "Rename the arrays, or convert the data to extxyz with nnp.data.readers.write_extxyz"
                )
            arrays = [np.asarray(data[k]) for k in names]
    except DatasetError:
        raise
    except Exception as err:
        raise DatasetError(f"{path}: not a readable .npz file ({type(err).__name__}: {err}); the file may be "
                           "truncated or corrupt: download or write it again") from None
    r, z, e, f = names
    positions, numbers, energies, forces = arrays
    if numbers.ndim != 1 and numbers.squeeze().ndim == 1:
        numbers = numbers.squeeze()
    if numbers.ndim != 1 or numbers.size == 0:
        raise DatasetError(f"{path}: {z} has shape {numbers.shape}, expected (n_atoms,) atomic numbers")
    if not np.issubdtype(numbers.dtype, np.number) or np.any(numbers != np.round(numbers)):
        raise DatasetError(f"{path}: {z} must hold integer atomic numbers, found dtype {numbers.dtype}")
    numbers = numbers.astype(np.int64)
    if np.any(numbers <= 0) or np.any(numbers > MAX_ATOMIC_NUMBER):
        bad = sorted({int(x) for x in numbers if x <= 0 or x > MAX_ATOMIC_NUMBER})
        raise DatasetError(f"{path}: unknown element (atomic numbers {bad} in {z}); atomic numbers must be 1..118")
    n_atoms = len(numbers)
    if positions.ndim != 3 or positions.shape[2] != 3:
        raise DatasetError(f"{path}: {r} has shape {positions.shape}, expected (n_frames, {n_atoms}, 3)")
    if positions.shape[1] != n_atoms:
        raise DatasetError(f"{path}: positions {r} have shape {positions.shape} ({positions.shape[1]} atoms per frame) "
                           f"but {z} lists {n_atoms} atoms; the number of atoms must agree between arrays")
    n = positions.shape[0]
    if energies.shape not in ((n,), (n, 1)):  # MD17 stores E as (n, 1)
        raise DatasetError(f"{path}: {e} has shape {energies.shape}, expected ({n},) or ({n}, 1): one energy "
                           f"per frame of {r} ({n} frames)")
    energies = energies.reshape(n)
    if forces.shape != positions.shape:
        raise DatasetError(f"{path}: forces {f} have shape {forces.shape}, expected {positions.shape} like "
                           f"positions {r}: one force vector per atom and frame")
    indices = _selection(path, index, n)
    frames = [
        _labelled(Atoms(numbers, positions=np.asarray(positions[k], dtype=np.float64)),
                  energy=float(energies[k]) * KCAL_PER_MOL,
                  forces=np.asarray(forces[k], dtype=np.float64) * KCAL_PER_MOL)
        for k in indices
    ]
    return indices, frames

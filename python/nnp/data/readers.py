"""Dataset readers: extxyz and anything ASE reads, ASE databases, MD17 and revised MD17 ``.npz``, ANI-1x and
SPICE HDF5.

Every reader returns ``ase.Atoms`` whose labels (energy in eV, forces in eV/Å, stress in eV/Å^3,
ASE convention) sit in a ``SinglePointCalculator``; units are converted here, at the edge. Every
frame is validated; problems raise :class:`~nnp.data.errors.DatasetError` naming the file, the frame,
the problem and the fix.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from ..units import EV_PER_KCAL_PER_MOL
from .errors import DatasetError

MAX_ATOMIC_NUMBER = 118
MD17_KEYS = ("R", "z", "E", "F")  # positions, atomic numbers, energies, forces (sGDML MD17 files)
RMD17_KEYS = ("coords", "nuclear_charges", "energies", "forces")  # revised MD17 (Christensen & von Lilienfeld)
NPZ_FORMATS = {"md17": MD17_KEYS, "rmd17": RMD17_KEYS}
BUNDLED = Path(__file__).resolve().parent / "bundled"

Index = str | int | slice | Sequence[int]


@dataclass(frozen=True)
class LabelKeys:
    """Where a file keeps its labels, for files whose keys are not ASE's (MACE's ``REF_energy``, ``REF_forces``,
    ``REF_stress``; ``dft_energy``, ...): the energy and stress under these ``info`` keys (the extxyz comment
    line), the forces under this per-atom ``arrays`` key (an extxyz column). The defaults are ASE's own names,
    which ASE already turns into labels. For ANI-1x/SPICE HDF5 files they name label datasets
    (``ccsd(t)_cbs.energy``); the defaults there mean the layout's own (:mod:`nnp.data.hdf5`)."""
    energy: str = "energy"
    forces: str = "forces"
    stress: str = "stress"

    @property
    def default(self) -> bool:
        return self == LabelKeys()

    def relabel(self, atoms: Atoms, results: dict) -> dict:
        """``results`` with every label whose key is not ASE's taken from ``atoms.info`` / ``atoms.arrays``."""
        results = dict(results)
        for label, key in (("energy", self.energy), ("stress", self.stress)):
            if key != label:
                results[label] = atoms.info.get(key)
        if self.forces != "forces":
            results["forces"] = atoms.arrays.get(self.forces)
        if results.get("stress") is not None and np.size(results["stress"]) == 9:  # a 9-number extxyz value
            results["stress"] = np.reshape(results["stress"], (3, 3))
        return results


def bundled_dataset(name: str = "water_tip3p_small") -> Path:
    """Path of a dataset shipped inside the package (``python/nnp/data/bundled/<name>.extxyz``)."""
    path = BUNDLED / f"{name}.extxyz"
    if not path.exists():
        known = ", ".join(sorted(p.name.removesuffix(".extxyz") for p in BUNDLED.glob("*.extxyz")))
        raise DatasetError(f"{path}: no bundled dataset {name!r}; choose one of: {known or 'none'}")
    return path


def read_structures(path: str | Path, index: Index = ":", format: str | None = None,
                    require_labels: bool = True, keys: LabelKeys | None = None) -> list[Atoms]:
    """Read and validate the frames ``index`` of a dataset file; labels in eV, eV/Å, eV/Å^3.

    ``format`` None picks the reader from the suffix: ``.npz`` MD17 (keys ``R, z, E, F``) or revised
    MD17 (keys ``coords, nuclear_charges, energies, forces``), ``.db`` ASE database, ``.data`` a LAMMPS
    data file (one unlabelled structure, elements from its Masses), ``.h5``/``.hdf5`` ANI-1x or SPICE
    conformations (:mod:`nnp.data.hdf5`), anything else ``ase.io.read`` (extxyz, ...). ``format`` may also
    be ``"npz"``, ``"md17"``, ``"rmd17"``, ``"db"``, ``"lammps-data"``, ``"hdf5"`` or any ASE format name.
    With ``require_labels`` every frame must carry energy and forces; ``require_labels=False`` accepts
    unlabelled frames (positions only, e.g. for pretraining). ``keys``: where the file keeps its labels when
    not under ASE's names (:class:`LabelKeys`; for HDF5, the names of the label datasets).
    """
    path = _check_file(path)
    kind = _kind(path, format)
    keys = _check_keys(path, kind, keys)
    if kind == "npz":
        with NpzFrames(path) as source:
            indices = _selection(path, index, len(source))
            frames = [source.frame(k) for k in indices]
    else:
        every = [atoms for _, atoms in _iter_frames(path, kind, format, keys)]
        indices = _selection(path, index, len(every))
        frames = [every[k] for k in indices]
    for k, atoms in zip(indices, frames):
        validate_frame(atoms, path, k, require_labels, keys)
    return frames


def iter_structures(path: str | Path, format: str | None = None, require_labels: bool = True,
                    start: int = 0, keys: LabelKeys | None = None) -> Iterator[tuple[int, Atoms]]:
    """Stream ``(frame number, Atoms)`` for every frame of a dataset file, validated like
    :func:`read_structures`; memory does not grow with the file. ``start`` skips the first frames
    (they are still parsed for text formats, not validated)."""
    path = _check_file(path)
    kind = _kind(path, format)
    keys = _check_keys(path, kind, keys)
    if kind == "npz":
        with NpzFrames(path) as source:
            if len(source) == 0:
                raise _no_frames(path)
            for k in range(start, len(source)):
                atoms = source.frame(k)
                validate_frame(atoms, path, k, require_labels)
                yield k, atoms
        return
    for k, atoms in _iter_frames(path, kind, format, keys):
        if k >= start:
            validate_frame(atoms, path, k, require_labels, keys)
            yield k, atoms


def _check_file(path: str | Path) -> Path:
    """``path`` as a Path, or a :class:`DatasetError` when it is missing, a directory or empty."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: file does not exist; check the path (relative paths are taken from "
                           f"{Path.cwd()}) or generate the dataset first")
    if path.is_dir():
        raise DatasetError(f"{path}: is a directory, not a dataset file; give the path of the file inside it")
    if path.stat().st_size == 0:
        raise DatasetError(f"{path}: file is empty (0 bytes); the run that wrote it probably failed: "
                           "write or download it again")
    return path


def _kind(path: Path, format: str | None) -> str:
    """Which reader: ``"npz"`` (MD17/rMD17), ``"db"`` (ASE database), ``"lammps-data"`` or ``"ase"`` (ase.io)."""
    kind = (format or "").lower()
    suffix = path.suffix.lower() if format is None else ""
    if kind in ("npz", *NPZ_FORMATS) or suffix == ".npz":
        return "npz"
    if kind in ("db", "ase-db") or suffix == ".db":
        return "db"
    if kind == "lammps-data" or suffix == ".data":
        return "lammps-data"
    if kind in ("hdf5", "ani1x", "spice") or suffix in (".h5", ".hdf5"):
        return "hdf5"
    return "ase"


def _check_keys(path: Path, kind: str, keys: LabelKeys | None) -> LabelKeys:
    """``keys`` (ASE's names when None); other names only for the formats that have named labels."""
    keys = keys or LabelKeys()
    if not keys.default and kind in ("npz", "lammps-data"):
        raise DatasetError(f"{path}: label keys ({keys}) apply to extxyz and other ASE formats, ASE databases and "
                           "HDF5 files; MD17 files have fixed keys and a LAMMPS data file has no labels: drop the key "
                           "options")
    return keys


def _iter_frames(path: Path, kind: str, format: str | None, keys: LabelKeys) -> Iterator[tuple[int, Atoms]]:
    """``(frame number, Atoms)`` of the ASE-side readers: database, LAMMPS data file (one structure, elements
    from its Masses: nnp.lammps.read_lammps_data), anything ``ase.io`` reads."""
    if kind == "db":
        return _iter_ase_db(path, keys)
    if kind == "hdf5":  # ANI-1x / SPICE layouts; keys name the label datasets
        from .hdf5 import iter_hdf5

        return iter_hdf5(path, None if keys.energy == "energy" else keys.energy,
                         None if keys.forces == "forces" else keys.forces)
    if kind == "lammps-data":
        from ..lammps.data_file import read_lammps_data

        return iter([(0, read_lammps_data(path))])
    return _iter_ase(path, format, keys)


def _no_frames(path: Path) -> DatasetError:
    return DatasetError(f"{path}: holds no frames; write or download the file again")


def validate_frame(atoms: Atoms, path: str | Path, frame: int, require_labels: bool = True,
                   keys: LabelKeys | None = None) -> None:
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
                f"(pretraining) data{_key_hint(atoms, keys or LabelKeys())}"
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


def _key_hint(atoms: Atoms, keys: LabelKeys) -> str:
    """Advice when the frame holds what looks like its labels under other names (MACE's REF_energy, ...)."""
    energy = [k for k in atoms.info if "energy" in k.lower() and np.size(atoms.info[k]) == 1]
    forces = [k for k in atoms.arrays if "force" in k.lower()]
    if not energy and not forces:
        return ""
    found = ", ".join(f"info {k!r}" for k in energy) + (", " if energy and forces else "") + ", ".join(
        f"per-atom {k!r}" for k in forces)
    return (f". The frame holds {found}, read with keys {keys}: name them with --energy-key/--forces-key/"
            "--stress-key (nnp data pack, nnp evaluate) or data.energy_key/forces_key/stress_key in a config")


def write_extxyz(path: str | Path, atoms_list: Atoms | Sequence[Atoms]) -> Path:
    """Write frames with their energy/forces/stress labels so that :func:`read_structures` reads them back."""
    import ase.io

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [atoms_list] if isinstance(atoms_list, Atoms) else list(atoms_list)
    ase.io.write(path, frames, format="extxyz")
    return path


def write_md17_npz(path: str | Path, atoms_list: Sequence[Atoms], name: str = "") -> Path:
    """Write labelled frames of one molecule as an MD17 ``.npz`` (keys ``R, z, E, F``; kcal/mol, kcal/mol/Å).

    The sGDML layout: ``E`` is (n, 1), ``z`` uint8, ``name`` a string; :func:`read_structures` reads it back.
    Every frame must hold the same atoms in the same order (MD17 stores one ``z``).
    """
    frames = list(atoms_list)
    if not frames:
        raise DatasetError(f"{path}: no frames to write")
    z = frames[0].numbers
    for k, atoms in enumerate(frames):
        if not np.array_equal(atoms.numbers, z):
            raise DatasetError(f"{path}: frame {k} has other atoms than frame 0; MD17 holds one molecule per file")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, R=np.stack([a.positions for a in frames]), z=z.astype(np.uint8),
             E=np.array([[a.get_potential_energy() / EV_PER_KCAL_PER_MOL] for a in frames]),
             F=np.stack([a.get_forces() / EV_PER_KCAL_PER_MOL for a in frames]), name=np.array(name))
    return path


def _labelled(atoms: Atoms, energy=None, forces=None, stress=None) -> Atoms:
    labels = {"energy": energy, "forces": forces, "stress": stress}
    atoms.calc = SinglePointCalculator(atoms, **{k: v for k, v in labels.items() if v is not None})
    return atoms


def _selection(path: Path, index: Index, n: int) -> list[int]:
    """Frame numbers (in the file) that ``index`` selects out of ``n`` frames."""
    if n == 0:
        raise _no_frames(path)
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


def _iter_ase(path: Path, format: str | None, keys: LabelKeys) -> Iterator[tuple[int, Atoms]]:
    """Frames of anything ``ase.io`` reads, one at a time (``ase.io.iread``), labels kept."""
    import ase.io

    frames = ase.io.iread(path, index=":", format=format)
    k = 0
    while True:
        try:
            atoms = next(frames)
        except StopIteration:
            break
        except KeyError as err:  # ASE's symbol lookup
            raise DatasetError(f"{path}: frame {k}: unknown element symbol {err}; use standard chemical symbols "
                               "(H, He, ..., Og)") from None
        except Exception as err:  # ASE raises many types for malformed files
            raise DatasetError(
                f"{path}: frame {k}: cannot be read{f' as {format}' if format else ''} ({type(err).__name__}: "
                f"{err}); the file may be truncated or in another format: write it again or pass format=... "
                "(an ASE format name)"
            ) from None
        yield k, _plain_copy(atoms, keys)
        k += 1
    if k == 0:
        raise _no_frames(path)


def _plain_copy(atoms: Atoms, keys: LabelKeys) -> Atoms:
    """The structure with only its labels (found under ``keys``), as a plain single-point calculator. Per-atom
    arrays named like forces that were not used stay with it (the advice of :func:`validate_frame` names them)."""
    results = keys.relabel(atoms, atoms.calc.results if atoms.calc is not None else {})
    clean = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc, info=dict(atoms.info))
    for name, values in atoms.arrays.items():
        if name not in ("numbers", "positions", keys.forces) and "force" in name.lower():
            clean.arrays[name] = values
    return _labelled(clean, results.get("energy"), results.get("forces"), results.get("stress"))


def _iter_ase_db(path: Path, keys: LabelKeys) -> Iterator[tuple[int, Atoms]]:
    """Rows of an ASE SQLite database, one at a time, as labelled structures."""
    import ase.db

    try:
        rows = ase.db.connect(path, type="db").select()
        row = next(rows, None)
    except Exception as err:
        raise DatasetError(f"{path}: not a readable ASE database ({type(err).__name__}: {err}); the file may be "
                           "truncated or not an ASE SQLite database: write it again with ase.db") from None
    if row is None:
        raise _no_frames(path)
    k = 0
    while row is not None:
        try:
            atoms = row.toatoms()
        except KeyError as err:
            raise DatasetError(f"{path}: frame {k}: unknown element {err}") from None
        results = atoms.calc.results if atoms.calc is not None else {}
        atoms.calc = None
        atoms.info.update(row.key_value_pairs)
        for name, values in row.get("data", {}).items():  # per-atom arrays stored with the row (forces)
            if np.shape(values)[:1] == (len(atoms),):
                atoms.arrays[name] = np.asarray(values)
        results = keys.relabel(atoms, results)
        yield k, _labelled(atoms, results.get("energy"), results.get("forces"), results.get("stress"))
        k += 1
        try:
            row = next(rows, None)
        except Exception as err:
            raise DatasetError(f"{path}: frame {k}: cannot be read ({type(err).__name__}: {err}); the database "
                               "may be corrupt: write it again with ase.db") from None


class NpyRows:
    """One ``.npy`` array inside an ``.npz`` archive, read row by row (``array[k]``) without loading it.

    ``np.load(..., mmap_mode="r")`` does not map the members of an ``.npz`` archive (numpy ignores
    ``mmap_mode`` there), so the member is read as a stream: header first, then one row at a time.
    """

    def __init__(self, archive: zipfile.ZipFile, member: str):
        self._file = archive.open(member)
        version = np.lib.format.read_magic(self._file)
        header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = header(self._file)
        if dtype.hasobject:
            raise ValueError(f"{member} holds Python objects (pickled), not numbers")
        self.shape, self.dtype = tuple(shape), dtype
        self._start = self._file.tell()
        self._row_shape = self.shape[1:]
        self._row_bytes = int(np.prod(self._row_shape, dtype=np.int64)) * dtype.itemsize
        self._whole = np.lib.format.read_array(self._file, allow_pickle=False) if fortran_order else None

    def __getitem__(self, k: int) -> np.ndarray:
        if self._whole is not None:  # Fortran order: rows are not contiguous, the array is in memory
            return self._whole[k]
        self._file.seek(self._start + k * self._row_bytes)
        data = self._file.read(self._row_bytes)
        if len(data) != self._row_bytes:
            raise EOFError(f"row {k}: {len(data)} of {self._row_bytes} bytes; the archive ends early")
        return np.frombuffer(data, dtype=self.dtype).reshape(self._row_shape)

    def all(self) -> np.ndarray:
        """The whole array (for small arrays such as the atomic numbers)."""
        return np.stack([self[k] for k in range(self.shape[0])]) if self.shape else self[()]


class NpzFrames:
    """MD17 / revised MD17 ``.npz``, frame by frame; kcal/mol and kcal/mol/Å converted to eV and eV/Å.

    Shapes and atomic numbers are checked on opening; ``frame(k)`` reads one frame from the archive.
    """

    def __init__(self, path: Path):
        self.path = path
        try:
            self._zip = zipfile.ZipFile(path)
            keys = sorted(name.removesuffix(".npy") for name in self._zip.namelist())
            self.names = next((k for k in NPZ_FORMATS.values() if set(k) <= set(keys)), None)
            if self.names is None:
                raise DatasetError(
                    f"{path}: keys {keys} match no supported .npz format; supported: MD17 with keys "
                    f"{', '.join(MD17_KEYS)} and revised MD17 with keys {', '.join(RMD17_KEYS)} (kcal/mol, Å). "
                    "Rename the arrays, or convert the data to extxyz with nnp.data.readers.write_extxyz"
                )
            positions, numbers, energies, forces = (NpyRows(self._zip, k + ".npy") for k in self.names)
            numbers = numbers.all()
        except DatasetError:
            raise
        except Exception as err:
            raise DatasetError(f"{path}: not a readable .npz file ({type(err).__name__}: {err}); the file may be "
                               "truncated or corrupt: download or write it again") from None
        self.numbers = self._check_numbers(numbers)
        self._positions, self._energies, self._forces = positions, energies, forces
        self._check_shapes()

    def __len__(self) -> int:
        return self._positions.shape[0]

    def __enter__(self) -> "NpzFrames":
        return self

    def __exit__(self, *exc) -> None:
        self._zip.close()

    def frame(self, k: int) -> Atoms:
        """Frame ``k`` as labelled Atoms in eV and eV/Å."""
        try:
            positions = np.array(self._positions[k], dtype=np.float64)
            energy = float(np.asarray(self._energies[k]).reshape(-1)[0]) * EV_PER_KCAL_PER_MOL
            forces = np.array(self._forces[k], dtype=np.float64) * EV_PER_KCAL_PER_MOL
        except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as err:
            raise DatasetError(f"{self.path}: frame {k}: cannot be read ({type(err).__name__}: {err}); the file "
                               "may be truncated or corrupt: download or write it again") from None
        return _labelled(Atoms(self.numbers, positions=positions), energy=energy, forces=forces)

    def _check_numbers(self, numbers: np.ndarray) -> np.ndarray:
        path, z = self.path, self.names[1]
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
        return numbers

    def _check_shapes(self) -> None:
        path, (r, z, e, f) = self.path, self.names
        positions, energies, forces = self._positions.shape, self._energies.shape, self._forces.shape
        n_atoms = len(self.numbers)
        if len(positions) != 3 or positions[2] != 3:
            raise DatasetError(f"{path}: {r} has shape {positions}, expected (n_frames, {n_atoms}, 3)")
        if positions[1] != n_atoms:
            raise DatasetError(f"{path}: positions {r} have shape {positions} ({positions[1]} atoms per frame) "
                               f"but {z} lists {n_atoms} atoms; the number of atoms must agree between arrays")
        n = positions[0]
        if energies not in ((n,), (n, 1)):  # MD17 stores E as (n, 1)
            raise DatasetError(f"{path}: {e} has shape {energies}, expected ({n},) or ({n}, 1): one energy "
                               f"per frame of {r} ({n} frames)")
        if forces != positions:
            raise DatasetError(f"{path}: forces {f} have shape {forces}, expected {positions} like "
                               f"positions {r}: one force vector per atom and frame")

"""Packed datasets: every frame of any readable dataset file in one LMDB directory (``*.pack``).

A pack holds one binary record per frame (no pickle; see :mod:`nnp.data.records`), a per-frame
summary table (atoms, energy, composition, squared forces, edges at the pack's cutoff) stored in
chunks, and JSON metadata with the dataset statistics a model needs (per-species reference energies,
force RMS, average neighbour count), all computed in the one streaming pass that writes the frames.
Packing commits every ``commit_every`` frames together with its progress, so a killed run resumes
where it stopped. ``docs/dataset_format.md`` describes the format.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import lmdb
import numpy as np
from ase import Atoms
from ase.data import chemical_symbols
from tqdm.auto import tqdm

from .errors import DatasetError
from .neighbors import neighbor_list
from .readers import MAX_ATOMIC_NUMBER, _check_file, _labelled, iter_structures
from .records import RecordError, decode_arrays, encode_arrays

PACK_FORMAT_VERSION = 1
PACK_MAGIC = "nnp-pack"
MARKER_FILE = "NNP_PACK"  # a one-line text file that marks the directory as a pack
DATA_FILE = "data.mdb"
MAP_SIZE = 1 << 40  # address space reserved by LMDB (1 TiB); the file only grows as frames are written
STATE_KEY = b"state"
ACCUM_KEY = b"accumulators"
N_Z = MAX_ATOMIC_NUMBER + 1
__all__ = ["PACK_FORMAT_VERSION", "PackError", "PackedDataset", "is_pack", "iter_structures", "pack_dataset",
           "subset_statistics"]


class PackError(DatasetError):
    """A pack is missing, incomplete, corrupt or does not match the command that resumes it."""


def frame_key(k: int) -> bytes:
    return b"frame/%012d" % k


def summary_key(first: int) -> bytes:
    return b"summary/%012d" % first


def is_pack(path: str | Path) -> bool:
    """Whether ``path`` is a pack directory (complete or not, intact or not)."""
    path = Path(path)
    return path.is_dir() and ((path / MARKER_FILE).exists() or (path / DATA_FILE).exists())


# ----------------------------------------------------------------------------------------------- frames

def encode_frame(atoms: Atoms) -> bytes:
    """Record of one structure: numbers, positions, cell, pbc and whichever labels it has."""
    arrays = {"numbers": atoms.numbers.astype(np.uint8), "positions": atoms.positions,
              "cell": atoms.cell.array, "pbc": atoms.pbc}
    results = atoms.calc.results if atoms.calc is not None else {}
    for key in ("energy", "forces", "stress"):
        if results.get(key) is not None:
            arrays[key] = np.asarray(results[key], dtype=np.float64)
    return encode_arrays(arrays)


def decode_frame(data: bytes) -> Atoms:
    """Atoms (float64, labels in a single-point calculator) of a frame record; ``RecordError`` if damaged."""
    arrays = decode_arrays(data)
    missing = {"numbers", "positions", "cell", "pbc"} - set(arrays)
    if missing:
        raise RecordError(f"frame record lacks {', '.join(sorted(missing))}")
    n = len(arrays["numbers"])
    expected = {"numbers": {(n,)}, "positions": {(n, 3)}, "cell": {(3, 3)}, "pbc": {(3,)}, "energy": {()},
                "forces": {(n, 3)}, "stress": {(6,), (3, 3)}}
    for name, array in arrays.items():
        if array.shape not in expected.get(name, {array.shape}):
            raise RecordError(f"frame record has {name} of shape {array.shape} for {n} atoms")
    atoms = Atoms(arrays["numbers"].astype(np.int64), positions=arrays["positions"], cell=arrays["cell"],
                  pbc=arrays["pbc"].copy())
    energy = float(arrays["energy"]) if "energy" in arrays else None
    forces = arrays["forces"].copy() if "forces" in arrays else None
    stress = arrays["stress"].copy() if "stress" in arrays else None
    return _labelled(atoms, energy, forces, stress)


# ------------------------------------------------------------------------------------------- statistics

@dataclass
class FrameSummary:
    """One row of the summary table."""

    n_atoms: int
    energy: float  # NaN when unlabelled
    numbers: np.ndarray
    force_sq_sum: float  # NaN without forces
    n_edges: int


    @classmethod
    def of(cls, atoms: Atoms, n_edges: int) -> "FrameSummary":
        """The row of a labelled (or unlabelled) structure whose graph has ``n_edges`` edges."""
        results = atoms.calc.results if atoms.calc is not None else {}
        energy = float(results["energy"]) if results.get("energy") is not None else np.nan
        forces = results.get("forces")
        force_sq_sum = float(np.sum(np.asarray(forces, dtype=np.float64) ** 2)) if forces is not None else np.nan
        return cls(len(atoms), energy, atoms.numbers, force_sq_sum, int(n_edges))


def summarize_frame(atoms: Atoms, cutoff: float) -> FrameSummary:
    """Summary row of a structure; edges counted like :func:`nnp.data.graph.atoms_to_graph`."""
    i, _, _ = neighbor_list(atoms.get_positions(), np.asarray(atoms.get_cell()), atoms.get_pbc(), cutoff)
    return FrameSummary.of(atoms, len(i))


def summary_table(rows: Sequence[FrameSummary]) -> dict[str, np.ndarray]:
    """Rows -> the table :func:`subset_statistics` reads (same layout as :meth:`PackedDataset.summary`)."""
    present = sorted({int(z) for row in rows for z in row.numbers})
    column = {z: k for k, z in enumerate(present)}
    composition = np.zeros((len(rows), len(present)), dtype=np.int64)
    for k, row in enumerate(rows):
        np.add.at(composition[k], [column[int(z)] for z in row.numbers], 1)
    return {
        "n_atoms": np.array([row.n_atoms for row in rows], dtype=np.int64),
        "energy": np.array([row.energy for row in rows], dtype=np.float64),
        "composition": composition,
        "force_sq_sum": np.array([row.force_sq_sum for row in rows], dtype=np.float64),
        "n_edges": np.array([row.n_edges for row in rows], dtype=np.int64),
        "elements": [chemical_symbols[z] for z in present],
    }


@dataclass
class Accumulators:
    """Running sums over all frames, indexed by atomic number (saved with every commit)."""

    element_counts: np.ndarray = field(default_factory=lambda: np.zeros(N_Z, dtype=np.int64))
    ata: np.ndarray = field(default_factory=lambda: np.zeros((N_Z, N_Z)))  # sum of n n^T over labelled frames
    atb: np.ndarray = field(default_factory=lambda: np.zeros(N_Z))  # sum of n E
    totals: np.ndarray = field(default_factory=lambda: np.zeros(8))  # see TOTALS

    TOTALS = ("n_frames", "n_atoms", "n_edges", "n_energies", "n_labelled", "force_sq_sum", "n_force_components",
              "energy_per_atom_sum")

    def add(self, row: FrameSummary) -> None:
        counts = np.bincount(row.numbers, minlength=N_Z)
        self.element_counts += counts
        has_energy, has_forces = np.isfinite(row.energy), np.isfinite(row.force_sq_sum)
        if has_energy:
            self.ata += np.outer(counts, counts)
            self.atb += counts * row.energy
        self.totals += [1, row.n_atoms, row.n_edges, has_energy, has_energy and has_forces,
                        row.force_sq_sum if has_forces else 0.0, 3 * row.n_atoms if has_forces else 0,
                        row.energy / row.n_atoms if has_energy else 0.0]

    def total(self, name: str) -> float:
        return float(self.totals[self.TOTALS.index(name)])

    def to_bytes(self) -> bytes:
        return encode_arrays({"element_counts": self.element_counts, "ata": self.ata, "atb": self.atb,
                              "totals": self.totals})

    @classmethod
    def from_bytes(cls, data: bytes) -> "Accumulators":
        arrays = decode_arrays(data)
        return cls(*(np.array(arrays[name]) for name in ("element_counts", "ata", "atb", "totals")))


def _solve_normal_equations(ata: np.ndarray, atb: np.ndarray) -> np.ndarray:
    """Minimum-norm least-squares solution from ``A^T A`` and ``A^T b`` (as ``lstsq(A, b)`` gives)."""
    if not np.any(ata):
        return np.zeros(len(atb))
    # the normal equations square the condition number: a fixed composition (one molecule, pure water) is
    # exactly singular, and rcond must treat its round-off singular value as zero
    solution, *_ = np.linalg.lstsq(ata, atb, rcond=1e-10)
    return solution


def _pack_statistics(acc: Accumulators, summary_sq_dev: float) -> dict:
    """The statistics part of a finished pack's metadata."""
    present = np.flatnonzero(acc.element_counts)
    elements = [chemical_symbols[z] for z in present]
    reference = _solve_normal_equations(acc.ata[np.ix_(present, present)], acc.atb[present])
    n_energies, n_components = acc.total("n_energies"), acc.total("n_force_components")
    mean = acc.total("energy_per_atom_sum") / n_energies if n_energies else None
    return {
        "n_frames": int(acc.total("n_frames")),
        "n_atoms": int(acc.total("n_atoms")),
        "elements": elements,
        "element_counts": {s: int(acc.element_counts[z]) for s, z in zip(elements, present)},
        "labelled": acc.total("n_labelled") == acc.total("n_frames"),
        "reference_energies": {s: float(e) for s, e in zip(elements, reference)},
        "force_rms": float(np.sqrt(acc.total("force_sq_sum") / n_components)) if n_components else 1.0,
        "avg_num_neighbors": max(acc.total("n_edges") / max(acc.total("n_atoms"), 1.0), 1.0),
        "energy_per_atom": ({"mean": mean, "std": float(np.sqrt(summary_sq_dev / n_energies))}
                            if n_energies else None),
    }


def subset_statistics(summary: dict[str, np.ndarray], indices: Sequence[int] | np.ndarray,
                      species: Sequence[str]) -> dict:
    """Reference energies (in ``species`` order), force RMS and mean neighbours of the frames ``indices``.

    ``summary`` is :meth:`PackedDataset.summary`; its composition columns follow ``summary["elements"]``
    (the pack's elements), which must all be in ``species`` for the frames used. The reference energies
    are the minimum-norm least-squares fit over the subset's labelled frames (as
    ``numpy.linalg.lstsq`` on the composition matrix gives); the neighbour count is at the pack's cutoff.
    """
    idx = np.asarray(indices, dtype=np.int64)
    composition = _composition_in(summary, idx, species)
    energy = summary["energy"][idx]
    labelled = np.isfinite(energy)
    counts = composition[labelled]
    reference = _solve_normal_equations(counts.T @ counts, counts.T @ energy[labelled])
    n_atoms = summary["n_atoms"][idx]
    force_sq = summary["force_sq_sum"][idx]
    with_forces = np.isfinite(force_sq)
    n_components = 3 * int(n_atoms[with_forces].sum())
    return {
        "reference_energies": reference,
        "force_rms": float(np.sqrt(force_sq[with_forces].sum() / n_components)) if n_components else 1.0,
        "avg_num_neighbors": max(float(summary["n_edges"][idx].sum()) / max(int(n_atoms.sum()), 1), 1.0),
        "n_frames": len(idx),
    }


def _composition_in(summary: dict[str, np.ndarray], idx: np.ndarray, species: Sequence[str]) -> np.ndarray:
    """Element counts of the frames ``idx`` with columns in ``species`` order (float64)."""
    columns = summary["composition"][idx].astype(np.float64)
    elements = [str(s) for s in summary.get("elements", species)]
    if len(elements) != columns.shape[1]:
        raise ValueError(f"summary has {columns.shape[1]} composition columns but {len(elements)} elements")
    unknown = [s for s, col in zip(elements, columns.T) if s not in species and col.any()]
    if unknown:
        raise ValueError(f"frames contain element(s) {', '.join(unknown)} not in species {list(species)}")
    out = np.zeros((len(idx), len(species)))
    for s, col in zip(elements, columns.T):
        if s in species:
            out[:, list(species).index(s)] = col
    return out


# ---------------------------------------------------------------------------------------------- packing

@dataclass
class _Batch:
    """Frames of the transaction being built: their records and summary rows."""

    first: int
    records: list[bytes] = field(default_factory=list)
    rows: list[FrameSummary] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def summary_record(self) -> bytes:
        zs = np.unique(np.concatenate([row.numbers for row in self.rows]))
        counts = np.stack([np.bincount(np.searchsorted(zs, row.numbers), minlength=len(zs)) for row in self.rows])
        return encode_arrays({
            "n_atoms": np.array([row.n_atoms for row in self.rows], dtype=np.int64),
            "energy": np.array([row.energy for row in self.rows]),
            "force_sq_sum": np.array([row.force_sq_sum for row in self.rows]),
            "n_edges": np.array([row.n_edges for row in self.rows], dtype=np.int64),
            "numbers": zs.astype(np.int64),
            "counts": counts.astype(np.int64),
        })


def pack_dataset(inputs: Sequence[str | Path], output: str | Path, *, format: str | None = None,
                 require_labels: bool = True, cutoff: float = 5.0, progress: bool = True,
                 commit_every: int = 1000) -> Path:
    """Stream every frame of ``inputs`` into the pack ``output`` (a directory); returns its path.

    Resumable: re-running with the same inputs and options after an interruption continues after
    the last committed frame; a finished pack is left as it is. Every frame is validated
    (:func:`nnp.data.readers.validate_frame`); a bad frame raises a DatasetError naming file and frame.
    """
    output = Path(output)
    if not inputs:
        raise PackError(f"{output}: no input files given; name one or more dataset files to pack")
    if commit_every < 1:
        raise ValueError(f"commit_every must be at least 1, got {commit_every}")
    given = [Path(p) for p in inputs]
    sources = [_source_entry(_check_file(p)) for p in given]
    options = {"format": format, "require_labels": bool(require_labels), "cutoff": float(cutoff)}
    if output.exists() and not is_pack(output):
        raise PackError(f"{output}: exists and is not an nnp pack; choose another --output or remove it")
    output.mkdir(parents=True, exist_ok=True)
    (output / MARKER_FILE).write_text(f"nnp packed dataset, format {PACK_FORMAT_VERSION}; read it with "
                                      "nnp.data.pack.PackedDataset (docs/dataset_format.md)\n")
    if (output / DATA_FILE).exists():
        _check_data_file(output)
    _forget_reader(output)
    try:
        env = lmdb.open(str(output), map_size=MAP_SIZE, subdir=True, readahead=False, meminit=False)
    except lmdb.Error as err:
        raise PackError(f"{output}: cannot be opened for writing ({type(err).__name__}: {err}); delete it and "
                        "pack again") from None
    try:
        state, acc = _start_or_resume(env, output, sources, options)
        if not state["complete"]:
            _stream_frames(env, output, given, state, acc, progress, commit_every)
            _finish(env, state, acc)
    finally:
        env.close()
    return output


def _source_entry(path: Path) -> dict:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "frames": 0,
            "done": False}


def _start_or_resume(env: lmdb.Environment, output: Path, sources: list[dict],
                     options: dict) -> tuple[dict, Accumulators]:
    """The pack's state: new (written now) or the committed one, checked against this command."""
    with env.begin() as txn:
        raw_state, raw_acc = txn.get(STATE_KEY), txn.get(ACCUM_KEY)
    if raw_state is None:
        state = {"magic": PACK_MAGIC, "format_version": PACK_FORMAT_VERSION, "complete": False,
                 "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "options": options,
                 "sources": sources, "n_frames": 0}
        acc = Accumulators()
        with env.begin(write=True) as txn:
            txn.put(STATE_KEY, json.dumps(state).encode())
            txn.put(ACCUM_KEY, acc.to_bytes())
        return state, acc
    state = _parse_state(output, raw_state)
    _check_resume(output, state, sources, options)
    try:
        acc = Accumulators.from_bytes(raw_acc)
    except (RecordError, KeyError, TypeError) as err:
        raise PackError(f"{output}: statistics record is damaged ({err}); delete the pack and pack again") from None
    return state, acc


def _check_resume(output: Path, state: dict, sources: list[dict], options: dict) -> None:
    """Raise unless this command is the one that started the pack and its sources are unchanged."""
    fix = f"re-run the command that started it, or delete {output} to pack these inputs"
    old_paths = [s["path"] for s in state["sources"]]
    new_paths = [s["path"] for s in sources]
    if old_paths != new_paths:
        raise PackError(f"{output}: was packed from {old_paths}, not {new_paths}; {fix}")
    if state["options"] != options:
        raise PackError(f"{output}: was packed with options {state['options']}, not {options}; {fix}")
    for old, new in zip(state["sources"], sources):
        if (old["size"], old["mtime_ns"]) != (new["size"], new["mtime_ns"]):
            raise PackError(f"{output}: source {new['path']} changed since it was packed (size {old['size']} -> "
                            f"{new['size']} bytes or a new modification time); delete {output} and pack again")


def _stream_frames(env: lmdb.Environment, output: Path, given: list[Path], state: dict, acc: Accumulators,
                   progress: bool, commit_every: int) -> None:
    """Read, validate, summarise and store every frame not yet committed, committing in batches."""
    options = state["options"]
    batch = _Batch(state["n_frames"])
    bar = tqdm(initial=state["n_frames"], unit="frame", desc=f"packing {output.name}",
               disable=None if progress else True)
    with bar:
        for path, source in zip(given, state["sources"]):
            if source["done"]:
                continue
            frames = iter_structures(path, options["format"], options["require_labels"], start=source["frames"])
            for k, atoms in frames:
                row = _summarize(path, k, atoms, options["cutoff"])
                batch.records.append(encode_frame(atoms))
                batch.rows.append(row)
                acc.add(row)
                source["frames"] = k + 1
                state["n_frames"] += 1
                if len(batch) >= commit_every:
                    _commit(env, state, acc, batch)
                    batch = _Batch(state["n_frames"])
                bar.update()
            source["done"] = True
        _commit(env, state, acc, batch)


def _summarize(path: Path, k: int, atoms: Atoms, cutoff: float) -> FrameSummary:
    try:
        return summarize_frame(atoms, cutoff)
    except ValueError as err:  # e.g. a periodic cell of zero volume
        raise DatasetError(f"{path}: frame {k}: no neighbour list ({err}); fix the cell or remove the frame") from None


def _commit(env: lmdb.Environment, state: dict, acc: Accumulators, batch: _Batch) -> None:
    """Write the batch's frames and summary chunk with the progress and sums in one transaction."""
    with env.begin(write=True) as txn:
        for offset, record in enumerate(batch.records):
            txn.put(frame_key(batch.first + offset), record)
        if len(batch):
            txn.put(summary_key(batch.first), batch.summary_record())
        txn.put(ACCUM_KEY, acc.to_bytes())
        txn.put(STATE_KEY, json.dumps(state).encode())


def _finish(env: lmdb.Environment, state: dict, acc: Accumulators) -> None:
    """Compute the statistics and mark the pack complete."""
    energy_mean = acc.total("energy_per_atom_sum") / max(acc.total("n_energies"), 1.0)
    sq_dev = 0.0  # second pass over the (small) summary chunks for a numerically stable std
    with env.begin() as txn:
        for chunk in _summary_chunks(txn, Path(env.path())):
            e = chunk["energy"] / chunk["n_atoms"]
            sq_dev += float(np.sum((e[np.isfinite(e)] - energy_mean) ** 2))
    state["statistics"] = _pack_statistics(acc, sq_dev)
    state["complete"] = True
    with env.begin(write=True) as txn:
        txn.put(STATE_KEY, json.dumps(state).encode())


# ---------------------------------------------------------------------------------------------- reading

class PackedDataset:
    """Read-only view of a pack: ``len``, ``atoms(k)`` (also ``ds[k]``), ``metadata``, ``summary()``.

    Cheap to construct; holds no open handle itself: LMDB is opened once per process and pack
    (read-only, without the lock file, see :func:`_reader`), so the object can be handed to forked or
    spawned ``torch.utils.data.DataLoader`` workers.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        raw = self._lookup(STATE_KEY)
        if raw is None:
            raise PackError(f"{self.path}: holds no nnp pack metadata (packing was killed before its first "
                            "commit, or this is another program's LMDB); re-run the `nnp data pack` command")
        state = _parse_state(self.path, raw)
        if not state["complete"]:
            raise PackError(f"{self.path}: packing did not finish ({state['n_frames']} frames so far); re-run the "
                            "same `nnp data pack` command to complete it")
        self._state = state

    def __len__(self) -> int:
        return self._state["n_frames"]

    def __getitem__(self, k: int) -> Atoms:
        return self.atoms(k)

    def atoms(self, k: int) -> Atoms:
        """Frame ``k`` as Atoms with positions, numbers, cell, pbc and labels as they were read."""
        n = len(self)
        if not -n <= k < n:
            raise IndexError(f"{self.path}: frame {k} is out of range; the pack holds {n} frames")
        k = int(k) % n
        data = self._get(frame_key(k), f"frame {k}")
        try:
            return decode_frame(data)
        except RecordError as err:
            raise PackError(f"{self.path}: frame {k}: {err}; the pack is damaged: delete it and pack the data "
                            "again") from None

    @property
    def metadata(self) -> dict:
        """Counts, elements (by atomic number), statistics, cutoff, sources and creation time (JSON-able)."""
        state = self._state
        return {"format_version": state["format_version"], **state["statistics"],
                "cutoff": state["options"]["cutoff"],
                "sources": [{"path": s["path"], "frames": s["frames"]} for s in state["sources"]],
                "created": state["created"]}

    def summary(self) -> dict[str, np.ndarray]:
        """Per-frame table: ``n_atoms``, ``energy`` (NaN unlabelled), ``composition`` (columns in
        ``metadata["elements"]`` order, also given as ``summary["elements"]``), ``force_sq_sum``, ``n_edges``."""
        elements = self.metadata["elements"]
        column = {chemical_symbols.index(s): i for i, s in enumerate(elements)}
        parts: dict[str, list[np.ndarray]] = {"n_atoms": [], "energy": [], "force_sq_sum": [], "n_edges": [],
                                              "composition": []}
        try:
            with _reader(self.path).begin() as txn:
                for chunk in _summary_chunks(txn, self.path):
                    for name in ("n_atoms", "energy", "force_sq_sum", "n_edges"):
                        parts[name].append(chunk[name])
                    composition = np.zeros((len(chunk["n_atoms"]), len(elements)), dtype=np.int64)
                    composition[:, [column[int(z)] for z in chunk["numbers"]]] = chunk["counts"]
                    parts["composition"].append(composition)
        except (lmdb.Error, KeyError) as err:
            raise _damaged(self.path, err) from None
        table = {name: np.concatenate(arrays) if arrays else np.zeros(0) for name, arrays in parts.items()}
        if len(table["n_atoms"]) != len(self):
            raise PackError(f"{self.path}: summary table has {len(table['n_atoms'])} rows for {len(self)} frames; "
                            "the pack is damaged: delete it and pack the data again")
        return {**table, "elements": np.array(elements)}

    def _lookup(self, key: bytes) -> bytes | None:
        try:
            with _reader(self.path).begin() as txn:
                return txn.get(key)
        except lmdb.Error as err:
            raise _damaged(self.path, err) from None

    def _get(self, key: bytes, what: str) -> bytes:
        data = self._lookup(key)
        if data is None:
            raise PackError(f"{self.path}: {what} is missing from the pack; the pack is damaged: delete it and "
                            "pack the data again")
        return data


_READERS: dict[str, tuple[int, int, lmdb.Environment]] = {}  # resolved path -> (pid, data.mdb inode, env)


def _reader(path: Path) -> lmdb.Environment:
    """This process's read-only LMDB environment of a pack, shared by every PackedDataset of it.

    py-lmdb refuses to open one environment twice in a process, and a handle must not be used after
    ``fork``; so a handle inherited from the parent (another pid), or one of a pack replaced since
    (another inode), is closed here -- with ``lock=False`` that only unmaps it in this process -- and
    the pack opened again.
    """
    _check_data_file(path)
    key, inode = str(path.resolve()), (path / DATA_FILE).stat().st_ino
    cached = _READERS.pop(key, None)
    if cached is not None:
        pid, cached_inode, env = cached
        if (pid, cached_inode) == (os.getpid(), inode):
            _READERS[key] = cached
            return env
        env.close()
    env = _open_for_reading(path)
    _READERS[key] = (os.getpid(), inode, env)
    return env


def _forget_reader(path: Path) -> None:
    """Close this process's reader of ``path`` (before the pack is written to)."""
    cached = _READERS.pop(str(path.resolve()), None)
    if cached is not None:
        cached[2].close()


def _summary_chunks(txn: lmdb.Transaction, path: Path):
    """Decoded summary chunks in frame order, checked to be contiguous."""
    expected = 0
    cursor = txn.cursor()
    if not cursor.set_range(b"summary/"):
        return
    for key, value in cursor:
        if not key.startswith(b"summary/"):
            break
        try:
            chunk = decode_arrays(value)
        except RecordError as err:
            raise PackError(f"{path}: summary chunk {key.decode()}: {err}; the pack is damaged: delete it and "
                            "pack the data again") from None
        if key != summary_key(expected) or len({len(chunk[n]) for n in ("n_atoms", "energy", "counts")}) != 1:
            raise PackError(f"{path}: summary chunk {key.decode()} is out of place; the pack is damaged: delete it "
                            "and pack the data again")
        expected += len(chunk["n_atoms"])
        yield chunk


def _parse_state(path: Path, raw: bytes) -> dict:
    try:
        state = json.loads(bytes(raw).decode())
        magic, version = state["magic"], state["format_version"]
    except (ValueError, KeyError, TypeError) as err:
        raise PackError(f"{path}: pack metadata is unreadable ({type(err).__name__}); the pack is damaged: delete "
                        "it and pack the data again") from None
    if magic != PACK_MAGIC:
        raise PackError(f"{path}: is an LMDB directory but not an nnp pack")
    if version != PACK_FORMAT_VERSION:
        raise PackError(f"{path}: pack format version {version}; this nnp reads version {PACK_FORMAT_VERSION}: "
                        "pack the data again with this version")
    return state


def _open_for_reading(path: Path) -> lmdb.Environment:
    """Read-only LMDB environment of a pack whose data file has been checked to be whole."""
    try:
        return lmdb.open(str(path), readonly=True, lock=False, subdir=True, readahead=False, max_readers=1024)
    except lmdb.Error as err:
        raise _damaged(path, err) from None


def _check_data_file(path: Path) -> None:
    """Raise a :class:`PackError` unless ``path/data.mdb`` exists and is as long as its LMDB header says.

    LMDB maps the file into memory; reading a page past the end of a truncated file would kill the
    process (SIGBUS), so the length is checked first, from the two meta pages.
    """
    if not path.exists():
        raise PackError(f"{path}: does not exist; check the path or create the pack with `nnp data pack`")
    if not path.is_dir():
        raise PackError(f"{path}: is not a pack directory (a pack is a directory made by `nnp data pack`)")
    data = path / DATA_FILE
    if not data.exists():
        raise PackError(f"{path}: has no {DATA_FILE}; the pack is incomplete or damaged: delete it and pack the "
                        "data again")
    size = data.stat().st_size
    with open(data, "rb") as f:
        head = f.read(16 + 4 + 4 + 8 + 8 + 4)
        metas = []
        if len(head) == 44 and struct.unpack_from("<I", head, 16)[0] == 0xBEEFC0DE:
            page = struct.unpack_from("<I", head, 40)[0]  # LMDB keeps the page size in the free-list DB record
            offsets = (0, page) if page >= 512 and page & (page - 1) == 0 else ()
            for offset in offsets:
                f.seek(offset)
                meta = f.read(152)
                if len(meta) == 152 and struct.unpack_from("<I", meta, 16)[0] == 0xBEEFC0DE:
                    metas.append(struct.unpack_from("<QQ", meta, 136))  # last page, transaction id
    if not metas:
        raise PackError(f"{path}: {DATA_FILE} is not an LMDB file ({size} bytes; truncated or overwritten); "
                        "delete the pack and pack the data again")
    last_page = max(metas, key=lambda m: m[1])[0]
    if size < (last_page + 1) * page:
        raise PackError(f"{path}: {DATA_FILE} is truncated ({size} bytes, its header needs "
                        f"{(last_page + 1) * page}); copy the pack again or delete it and pack the data again")


def _damaged(path: Path, err: Exception) -> PackError:
    return PackError(f"{path}: LMDB reports the pack is damaged ({type(err).__name__}: {err}); delete it and "
                     "pack the data again")

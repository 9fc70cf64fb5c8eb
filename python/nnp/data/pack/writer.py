"""Packing: stream frames into LMDB in committed batches, with the progress needed to resume."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import lmdb
import numpy as np
from ase import Atoms
from tqdm.auto import tqdm

from ..dataset import config_type
from ..errors import DatasetError
from ..readers import LabelKeys, _check_file, iter_structures
from ..records import RecordError, encode_arrays
from .codec import encode_frame
from .layout import (ACCUM_KEY, DATA_FILE, MAP_SIZE, MARKER_FILE, PACK_FORMAT_VERSION, PACK_MAGIC, STATE_KEY, PackError,
                     frame_key, is_pack, summary_key)
from .reader import _check_data_file, _forget_reader, _parse_state, _summary_chunks
from .statistics import Accumulators, FrameSummary, _pack_statistics, summarize_frame


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
                 commit_every: int = 1000, keys: LabelKeys | None = None) -> Path:
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
    if keys is not None and not keys.default:  # recorded only when given, so packs of ASE's names keep their options
        options["label_keys"] = dataclasses.asdict(keys)
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
            keys = LabelKeys(**options.get("label_keys", {}))
            frames = iter_structures(path, options["format"], options["require_labels"], start=source["frames"],
                                     keys=keys)
            for k, atoms in frames:
                row = _summarize(path, k, atoms, options["cutoff"])
                batch.records.append(encode_frame(atoms))
                batch.rows.append(row)
                kind = config_type(atoms)
                if kind is not None:  # committed with the frames: what train.config_type_weights may name
                    types = state.setdefault("config_types", {})
                    types[kind] = types.get(kind, 0) + 1
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

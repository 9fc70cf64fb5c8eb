"""Reading a pack: one LMDB environment per process, the metadata, the summary table, frames."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import lmdb
import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from ..records import RecordError, decode_arrays
from .codec import decode_frame
from .layout import DATA_FILE, PACK_FORMAT_VERSION, PACK_MAGIC, PackError, STATE_KEY, frame_key, summary_key


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
        """Counts, elements (by atomic number), statistics, cutoff, sources, creation time and the frames of each
        config_type (none recorded by packs made before nnp stored them) (JSON-able)."""
        state = self._state
        return {"format_version": state["format_version"], **state["statistics"],
                "cutoff": state["options"]["cutoff"], "config_types": dict(state.get("config_types", {})),
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

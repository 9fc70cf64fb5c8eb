"""One frame <-> one binary record (no pickle; nnp.data.records does the array encoding)."""

from __future__ import annotations

import numpy as np
from ase import Atoms

from ..dataset import config_type
from ..readers import _labelled
from ..records import RecordError, decode_arrays, encode_arrays


def encode_frame(atoms: Atoms) -> bytes:
    """Record of one structure: numbers, positions, cell, pbc, whichever labels it has and its config_type (UTF-8)."""
    arrays = {"numbers": atoms.numbers.astype(np.uint8), "positions": atoms.positions,
              "cell": atoms.cell.array, "pbc": atoms.pbc}
    kind = config_type(atoms)
    if kind is not None:
        arrays["config_type"] = np.frombuffer(kind.encode("utf-8"), dtype=np.uint8)
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
    if "config_type" in arrays:
        atoms.info["config_type"] = arrays["config_type"].tobytes().decode("utf-8")
    return _labelled(atoms, energy, forces, stress)

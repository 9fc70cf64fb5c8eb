"""Which explored frames to label: DeePMD-kit's trust window, then diverse candidates.

Every frame has the ensemble's ``max_devi_f``. Below ``lo`` the ensemble agrees (accurate, nothing to
learn); at or above ``hi`` the members disagree so much that the structure is likely unphysical
(failed: a collapsed trajectory, not worth a label); so is a frame whose atoms have run into each other
(``info['close_contact']``, set by the exploration), whatever its deviation; in between are the
candidates. Candidates from one trajectory are strongly correlated, so the labelled ones are picked by
farthest-point sampling on a structural fingerprint (pair-distance histograms per element pair),
starting from the candidate with the largest deviation -- not the first N.
"""

from __future__ import annotations

from itertools import combinations_with_replacement
from typing import Sequence

import numpy as np
from ase import Atoms

from ..data.neighbors import pair_distances

ACCURATE, CANDIDATE, FAILED = "accurate", "candidate", "failed"


def classify(max_devi_f: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Per frame: accurate (< lo), candidate (lo <= d < hi) or failed (>= hi, or not finite)."""
    d = np.asarray(max_devi_f, dtype=float)
    kinds = np.full(d.shape, CANDIDATE, dtype=object)
    kinds[d < lo] = ACCURATE
    kinds[~(d < hi)] = FAILED  # NaN counts as failed
    return kinds


def classify_frames(frames: Sequence[Atoms], lo: float, hi: float) -> np.ndarray:
    """``classify`` on each frame's ``info['max_devi_f']``; a frame with ``info['close_contact']`` is failed."""
    kinds = classify(np.array([f.info["max_devi_f"] for f in frames], dtype=float), lo, hi)
    kinds[np.array([bool(f.info.get("close_contact", False)) for f in frames], dtype=bool)] = FAILED
    return kinds


def fingerprint(atoms: Atoms, elements: Sequence[str], cutoff: float, bins: int) -> np.ndarray:
    """Histograms of pair distances (< cutoff) per element pair, per atom: (pairs * bins,)."""
    pairs = list(combinations_with_replacement(sorted(elements), 2))
    i, j, distances = pair_distances(atoms, cutoff)
    symbols = np.array(atoms.get_chemical_symbols())
    out = np.zeros((len(pairs), bins))
    edges = np.linspace(0.0, cutoff, bins + 1)
    for k, (a, b) in enumerate(pairs):
        mask = ((symbols[i] == a) & (symbols[j] == b)) | ((symbols[i] == b) & (symbols[j] == a))
        out[k] = np.histogram(distances[mask], bins=edges)[0]
    return out.ravel() / max(len(atoms), 1)


def farthest_point_sampling(features: np.ndarray, count: int, first: int) -> list[int]:
    """Indices of ``count`` rows of ``features``: ``first``, then each time the row farthest from those chosen."""
    n = len(features)
    if n == 0 or count <= 0:
        return []
    chosen = [first]
    nearest = np.linalg.norm(features - features[first], axis=1)
    while len(chosen) < min(count, n):
        k = int(np.argmax(nearest))
        if nearest[k] <= 0.0:  # the rest are duplicates of chosen frames
            break
        chosen.append(k)
        nearest = np.minimum(nearest, np.linalg.norm(features - features[k], axis=1))
    return chosen


def select_candidates(frames: Sequence[Atoms], max_devi_f: np.ndarray, count: int, cutoff: float,
                      bins: int = 32) -> list[int]:
    """Up to ``count`` diverse frames (indices into ``frames``), the largest deviation first."""
    if not len(frames) or count <= 0:
        return []
    elements = sorted({s for atoms in frames for s in atoms.get_chemical_symbols()})
    features = np.stack([fingerprint(atoms, elements, cutoff, bins) for atoms in frames])
    return farthest_point_sampling(features, count, int(np.argmax(max_devi_f)))

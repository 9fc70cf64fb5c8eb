"""Structural and dynamical observables of trajectories (MDsim benchmark definitions, Fu et al. 2023)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms

from ..data.neighbors import pair_distances


def rdf_bin_centres(r_max: float = 6.0, bins: int = 500) -> np.ndarray:
    """Centres of the RDF bins (those of :func:`rdf` and of LAMMPS's ``compute rdf``)."""
    edges = np.linspace(0.0, r_max, bins + 1)
    return 0.5 * (edges[1:] + edges[:-1])


def rdf(frames: Sequence[Atoms], pair: tuple[str, str], r_max: float = 6.0, bins: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Radial distribution function g_AB(r) averaged over periodic ``frames``; returns (r centres, g)."""
    edges = np.linspace(0.0, r_max, bins + 1)
    counts = np.zeros(bins)
    norm = 0.0
    a, b = pair
    for atoms in frames:
        symbols = np.array(atoms.get_chemical_symbols())
        i, j, d = pair_distances(atoms, r_max)
        counts += np.histogram(d[(symbols[i] == a) & (symbols[j] == b)], bins=edges)[0]
        n_a, n_b = (symbols == a).sum(), (symbols == b).sum()
        norm += n_a * (n_b - (a == b)) / atoms.get_volume()
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    return rdf_bin_centres(r_max, bins), counts / (shell * max(norm, 1e-300))


def rdf_mae(g: np.ndarray, g_ref: np.ndarray, r_max: float = 6.0) -> float:
    """MDsim's RDF error: mean |g - g_ref| over the bins times the range (= integral of |dg| dr, Å)."""
    return float(np.abs(np.asarray(g) - np.asarray(g_ref)).mean() * r_max)


def distance_histogram(frames: Sequence[Atoms], r_max: float = 10.0, bins: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """h(r): normalised distribution of all interatomic distances of a (non-periodic) molecule."""
    edges = np.linspace(0.0, r_max, bins + 1)
    counts = np.zeros(bins)
    for atoms in frames:
        d = atoms.get_all_distances()[np.triu_indices(len(atoms), 1)]
        counts += np.histogram(d, bins=edges)[0]
    density = counts / max(counts.sum(), 1) / (edges[1] - edges[0])
    return 0.5 * (edges[1:] + edges[:-1]), density


def h_r_mae(h: np.ndarray, h_ref: np.ndarray, r_max: float = 10.0) -> float:
    """MDsim's h(r) error: mean |h - h_ref| over bins times the range."""
    return float(np.abs(np.asarray(h) - np.asarray(h_ref)).mean() * r_max)


def closest_distances(frames: Sequence[Atoms], r_max: float = 4.0) -> dict[str, float]:
    """The smallest distance (Å) of each element pair over ``frames``, periodic images included, heavier element
    first (water: ``{"O-O": 2.4, "O-H": 0.9, "H-H": 1.4}``); pairs never closer than ``r_max`` are left out.
    Where a collapse comes from: hydrogens run into each other show as H-H far under water's 1.5 Å."""
    from ase.data import chemical_symbols

    closest: dict[str, float] = {}
    for atoms in frames:
        i, j, d = pair_distances(atoms, r_max)
        z = atoms.numbers
        heavier = (z[i] > z[j]) | ((z[i] == z[j]) & (i < j))  # each pair once (a self-image never: i == j)
        pairs, d = np.stack([z[i][heavier], z[j][heavier]], axis=1), d[heavier]
        for (a, b), r in zip(*_min_per_row(pairs, d)):
            key = f"{chemical_symbols[a]}-{chemical_symbols[b]}"
            closest[key] = min(r, closest.get(key, r))
    return closest


def _min_per_row(keys: np.ndarray, values: np.ndarray) -> tuple[list, list]:
    """The distinct rows of ``keys`` and the smallest of ``values`` for each."""
    if not len(values):
        return [], []
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    smallest = np.full(len(unique), np.inf)
    np.minimum.at(smallest, inverse.ravel(), values)
    return unique.tolist(), smallest.tolist()


def max_bond_deviation(atoms: Atoms, bonds: tuple[np.ndarray, np.ndarray, np.ndarray]) -> float:
    """max_bonds |d - d_ref| (Å), minimum-image distances when periodic."""
    i, j, lengths = bonds
    if len(i) == 0:
        return 0.0
    return float(np.abs(_pair_distances(atoms, i, j) - lengths).max())


def _pair_distances(atoms: Atoms, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    vectors = atoms.positions[j] - atoms.positions[i]
    if atoms.pbc.any():
        from ase.geometry import find_mic

        vectors, _ = find_mic(vectors, atoms.cell, atoms.pbc)
    return np.linalg.norm(vectors, axis=1)


def diffusivity(unwrapped_positions: np.ndarray, dt_ps: float, skip_fraction: float = 0.2) -> float:
    """Self-diffusion coefficient (Å^2/ps) from the Einstein relation MSD = 6 D t, fitted after a skip.

    ``unwrapped_positions`` has shape (frames, atoms, 3); the MSD is averaged over atoms and time origins.
    """
    x = np.asarray(unwrapped_positions)
    n = len(x)
    lags = np.arange(1, n // 2)
    msd = np.array([((x[lag:] - x[:-lag]) ** 2).sum(-1).mean() for lag in lags])
    start = int(skip_fraction * len(lags))
    slope = np.polyfit(lags[start:] * dt_ps, msd[start:], 1)[0]
    return float(slope / 6.0)

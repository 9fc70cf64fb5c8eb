"""The per-frame summary table and the statistics a model needs, from one streaming pass.

Reference energies are a least-squares fit accumulated through its normal equations, so packing never
holds more than one batch; ``subset_statistics`` gives the same numbers for any subset of the table
(a training split), for packed and in-memory data alike."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from ..neighbors import neighbor_list
from ..records import decode_arrays, encode_arrays
from .layout import N_Z


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

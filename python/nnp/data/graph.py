"""One graph representation of an atomic structure, built on torch-geometric ``Data``.

Fields of a graph (``N`` atoms, ``E`` edges, one structure):
``pos (N,3)``, ``species (N,)`` indices into the model's species list, ``edge_index (2,E)`` (centre,
neighbour), ``shifts (E,3)`` Cartesian periodic shift so that ``r_ij = pos[j] - pos[i] + shifts``,
``cell (1,3,3)``, ``pbc (1,3)``, and when labelled ``energy (1,)`` eV, ``forces (N,3)`` eV/Å,
``stress (1,3,3)`` eV/Å^3 (ASE sign). Batching with ``torch_geometric.loader.DataLoader`` offsets
``edge_index`` and stacks ``cell``/``energy``/``stress`` per structure.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from ase import Atoms
from torch import Tensor
from torch_geometric.data import Data

from ..errors import UserError
from .neighbors import neighbor_list


class SpeciesError(UserError):
    """An element is not known to the model."""


def species_indices(symbols: Sequence[str], species: Sequence[str]) -> np.ndarray:
    """Map chemical symbols to indices in ``species``, with a clear error for unknown elements."""
    lookup = {s: k for k, s in enumerate(species)}
    unknown = sorted(set(symbols) - set(lookup))
    if unknown:
        raise SpeciesError(
            f"element(s) {', '.join(unknown)} not known to the model, which knows {' '.join(species)}: use "
            "structures of those elements only, or a model trained on data that include them"
        )
    return np.array([lookup[s] for s in symbols], dtype=np.int64)


def atoms_to_graph(
    atoms: Atoms,
    species: Sequence[str],
    cutoff: float,
    dtype: torch.dtype = torch.get_default_dtype(),
    with_labels: bool = True,
) -> Data:
    """Convert an ASE ``Atoms`` (labels from its calculator, if any) into a graph."""
    positions = atoms.get_positions()
    if not np.all(np.isfinite(positions)):
        raise ValueError("structure has NaN or infinite positions")
    cell = np.asarray(atoms.get_cell(), dtype=np.float64)
    pbc = np.asarray(atoms.get_pbc(), dtype=bool)
    i, j, shift_int = neighbor_list(positions, cell, pbc, cutoff)
    shifts = shift_int.astype(np.float64) @ cell
    data = Data(
        pos=torch.tensor(positions, dtype=dtype),
        species=torch.from_numpy(species_indices(atoms.get_chemical_symbols(), species)),
        edge_index=torch.from_numpy(np.stack([i, j])),
        shifts=torch.tensor(shifts, dtype=dtype),
        cell=torch.tensor(cell, dtype=dtype).unsqueeze(0),
        pbc=torch.from_numpy(pbc).unsqueeze(0),
        num_nodes=len(atoms),
    )
    if with_labels and atoms.calc is not None:
        results = atoms.calc.results
        if "energy" in results:
            data.energy = torch.tensor([float(results["energy"])], dtype=dtype)
        if "forces" in results:
            data.forces = torch.tensor(np.asarray(results["forces"]), dtype=dtype)
        if "stress" in results:
            from ase.stress import voigt_6_to_full_3x3_stress

            stress = np.asarray(results["stress"])
            full = voigt_6_to_full_3x3_stress(stress) if stress.shape == (6,) else stress.reshape(3, 3)
            data.stress = torch.tensor(full, dtype=dtype).unsqueeze(0)
    return data


def edge_vectors(graph: Data) -> Tensor:
    """``r_ij = x_j - x_i + shift`` for every edge of a graph or batch."""
    i, j = graph.edge_index
    return graph.pos[j] - graph.pos[i] + graph.shifts

"""HDF5 datasets of molecular conformations in the two layouts organic ML potentials are trained on.

* **ANI-1x** (Smith et al. 2020, ``ani1x-release.h5``) and files written like it (Transition1x keeps one more
  level of groups): a group per formula with ``atomic_numbers`` (N,), ``coordinates`` (M, N, 3) in Å, and per
  level of theory ``<level>.energy`` (M,) in Hartree and ``<level>.forces`` (M, N, 3) in Hartree/Å;
  ``wb97x_dz`` by default.
* **SPICE** (Eastman et al. 2023): a group per molecule with ``atomic_numbers`` (N,), ``conformations``
  (M, N, 3) in bohr, ``dft_total_energy`` (M,) in Hartree and ``dft_total_gradient`` (M, N, 3) in
  Hartree/bohr (forces are its negative), ``smiles`` and ``subset``.

Frames come out in eV, Å and eV/Å with ``info`` naming their group (``group``) and, for SPICE, the molecule's
total charge from its SMILES (``charge``): nnp's models have no charge input, so a charged molecule trains as if
it were neutral; select ``info["charge"] == 0`` frames if that matters. Other label datasets are chosen with
:class:`~nnp.data.readers.LabelKeys` (``energy="ccsd(t)_cbs.energy"``, ...).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from ase import Atoms, units

from .errors import DatasetError
from .readers import _labelled

HARTREE = units.Hartree  # eV
BOHR = units.Bohr        # Å
ANI_LEVEL = "wb97x_dz"


def iter_hdf5(path: Path, energy_key: str | None = None, forces_key: str | None = None) -> Iterator[tuple[int, Atoms]]:
    """``(frame number, Atoms)`` for every conformation of every group, in file order; ``energy_key`` /
    ``forces_key``: the datasets to read (the layout's defaults when None)."""
    try:
        import h5py
    except ImportError:
        raise DatasetError(f"{path}: reading HDF5 needs h5py: pip install h5py") from None
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise DatasetError(f"{path}: not a readable HDF5 file ({err}); the file may be truncated: download or "
                           "write it again") from None
    k = 0
    with handle:
        for name, group in _molecule_groups(handle):
            for atoms in _group_frames(path, name, group, energy_key, forces_key):
                yield k, atoms
                k += 1
    if k == 0:
        raise DatasetError(f"{path}: holds no conformations (no group with atomic_numbers and coordinates or "
                           "conformations); is it an ANI-1x or SPICE style file?")


def _molecule_groups(node, prefix: str = ""):
    """Every group holding ``atomic_numbers``, depth first in stored order (Transition1x nests them)."""
    for name in node:
        item = node[name]
        if not hasattr(item, "keys"):
            continue
        if "atomic_numbers" in item:
            yield prefix + name, item
        else:
            yield from _molecule_groups(item, prefix + name + "/")


def _group_frames(path: Path, name: str, group, energy_key: str | None, forces_key: str | None) -> list[Atoms]:
    where = f"{path}: group {name}"
    numbers = np.asarray(group["atomic_numbers"][()], dtype=int)
    if "conformations" in group:  # SPICE: bohr, Hartree, Hartree/bohr gradient
        positions = np.asarray(group["conformations"][()], dtype=float) * BOHR
        energy_key, forces_key = energy_key or "dft_total_energy", forces_key or "dft_total_gradient"
        force_factor = -HARTREE / BOHR if "gradient" in forces_key else HARTREE / BOHR
        info = {"group": name, "charge": _smiles_charge(group)}
    elif "coordinates" in group:  # ANI-1x: Å, Hartree, Hartree/Å forces
        positions = np.asarray(group["coordinates"][()], dtype=float)
        energy_key, forces_key = energy_key or f"{ANI_LEVEL}.energy", forces_key or f"{ANI_LEVEL}.forces"
        force_factor = HARTREE
        info = {"group": name}
    else:
        raise DatasetError(f"{where}: has atomic_numbers but neither coordinates (ANI-1x) nor conformations (SPICE)")
    if positions.ndim != 3 or positions.shape[1:] != (len(numbers), 3):
        raise DatasetError(f"{where}: positions have shape {positions.shape}, expected (conformations, "
                           f"{len(numbers)}, 3)")
    energies = _labels(group, energy_key, where, (len(positions),), HARTREE)
    forces = _labels(group, forces_key, where, positions.shape, force_factor)
    return [_labelled(Atoms(numbers, positions=positions[m], info=dict(info, conformation=m)),
                      None if energies is None else float(energies[m]), None if forces is None else forces[m])
            for m in range(len(positions))]


def _labels(group, key: str, where: str, shape: tuple, factor: float) -> np.ndarray | None:
    """The dataset ``key`` of the group as floats of ``shape`` times ``factor`` (to eV, eV/Å); None when the
    group has no such dataset (the frames are then unlabelled, which validation reports where labels are needed)."""
    if key not in group:
        return None
    values = np.asarray(group[key][()], dtype=float)
    if values.shape != shape:
        raise DatasetError(f"{where}: {key} has shape {values.shape}, expected {shape}")
    return values * factor


def _smiles_charge(group) -> int | None:
    """Total formal charge of the group's SMILES (SPICE stores one per molecule); None without it or RDKit."""
    if "smiles" not in group:
        return None
    smiles = group["smiles"][()]
    smiles = smiles[0] if np.ndim(smiles) else smiles
    smiles = smiles.decode() if isinstance(smiles, bytes) else str(smiles)
    try:
        from rdkit import Chem
    except ImportError:
        return None
    molecule = Chem.MolFromSmiles(smiles, sanitize=False)
    return None if molecule is None else sum(atom.GetFormalCharge() for atom in molecule.GetAtoms())

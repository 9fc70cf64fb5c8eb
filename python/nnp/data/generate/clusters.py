"""Non-bonded clusters of two or three molecules at contact distances (intermolecular frames of diverse-xtb).

A cluster is built deterministically from a seed: each member is an RDKit conformer (water is the
member with the SMILES ``O``), turned by a random rotation and moved along a random direction until
its closest contact with the members already placed sits at a drawn fraction of the van der Waals
contact distance. Fractions from 0.65 to 0.9 span hydrogen bonds (H...O 1.8-2.4 Å) and short
repulsive contacts (C...C 2.2-3.1 Å), so a model trained on them sees intermolecular forces.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, vdw_radii
from scipy.spatial.transform import Rotation

CONTACT_FRACTION = (0.65, 0.9)  # min over pairs of d_ij / (r_vdw_i + r_vdw_j) of the new member


def _vdw(atoms: Atoms) -> np.ndarray:
    return np.array([vdw_radii[atomic_numbers[s]] for s in atoms.get_chemical_symbols()])


def contact_fraction(a: Atoms, b: Atoms) -> float:
    """min over atom pairs (i in a, j in b) of d_ij / (r_vdw_i + r_vdw_j)."""
    d = np.linalg.norm(a.positions[:, None] - b.positions[None], axis=-1)
    return float((d / (_vdw(a)[:, None] + _vdw(b)[None])).min())


def place_in_contact(cluster: Atoms, member: Atoms, fraction: float, rng: np.random.Generator) -> Atoms:
    """``member`` rotated at random and moved along a random direction to the contact ``fraction``."""
    member = member.copy()
    member.positions = Rotation.random(random_state=int(rng.integers(2**31))).apply(
        member.positions - member.positions.mean(axis=0))
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    centre = cluster.positions.mean(axis=0)
    reach = np.ptp(cluster.positions, axis=0).max() + np.ptp(member.positions, axis=0).max() + 10.0
    lo, hi = 0.0, reach  # bisection on the distance along the direction (contact grows with distance)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        probe = member.copy()
        probe.positions += centre + mid * direction
        if contact_fraction(cluster, probe) < fraction:
            lo = mid
        else:
            hi = mid
    member.positions += centre + hi * direction
    return member


def build_cluster(members: Sequence[Callable[[], Atoms]], seed: int) -> Atoms:
    """A cluster of the members (each a function building one molecule), deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    cluster = members[0]()
    cluster.positions -= cluster.positions.mean(axis=0)
    for build in members[1:]:
        fraction = float(rng.uniform(*CONTACT_FRACTION))
        cluster = cluster + place_in_contact(cluster, build(), fraction, rng)
    return cluster


def draw_cluster_members(smiles: Sequence[str], heavy_atoms: Sequence[int], rng: np.random.Generator,
                         max_heavy_atoms: int = 6, water_share: float = 0.3) -> list[str]:
    """Two or three members: water with probability ``water_share`` each, else a small molecule of the list."""
    small = [s for s, n in zip(smiles, heavy_atoms) if n <= max_heavy_atoms]
    if not small:
        raise ValueError(f"no molecule with at most {max_heavy_atoms} heavy atoms to build clusters from")
    count = int(rng.choice([2, 3], p=[0.6, 0.4]))
    return ["O" if rng.random() < water_share else str(small[int(rng.integers(len(small)))]) for _ in range(count)]

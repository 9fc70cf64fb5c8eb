"""Collapse criteria of the stability runs, in one place.

* an explosion: the LAMMPS errors an exploding system ends in (a run stopped by any other error is an
  error of the setup, never a collapse);
* the temperature leaving the protocol's range;
* molecules: MDsim's bond rule (nnp.chemistry) on the start frame and the largest deviation of those
  bonds from their mean length over the reference data (``compute bond/deviation`` does nnp's rule
  inside LAMMPS for ``nnp stability``, with the start frame's bonds from :func:`write_bond_reference`);
* water and other periodic boxes: the RDF error of a window against the reference (nnp.md.observables.rdf_mae),
  and nnp's closest-approach rule on the same window (:func:`window_contact`);
* any structure: two atoms closer than half their covalent radii (nnp.chemistry.contact_limit), which an
  ensemble's deviation need not see (members trained on the same few frames can agree on atoms run into
  each other: RESULTS §14.4); the exploration of ``nnp learn`` uses it. The stability protocols' closest-approach
  rule is relative to the reference instead (0.5 Å under its closest pairs: stricter, and what MD judged against a
  reference needs).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms

from ..chemistry import contact_limit, mdsim_bond_length_limit, radii
from ..data.molecules import reference_bonds
from ..data.neighbors import pair_distances
from .observables import closest_distances, rdf_bin_centres
from .protocol import Protocol

# LAMMPS errors that an exploding system ends in (the model's non-finite output, atoms flying out of the
# box or too close for the neighbour bins); any other error in a run is reported as an error
EXPLOSION_ERRORS = ("NaN or infinite", "Lost atoms", "Out of range atoms", "Non-numeric", "neighbor list overflow",
                    "Neighbor list overflow", "Too many neighbor bins", "Bond atom missing", "Atom count",
                    "tilted box too far in one step")  # fix npt: the box itself ran away


def is_explosion(error: BaseException) -> bool:
    """Whether a LAMMPS error is one an exploding system ends in (a collapse), not a failure of the run."""
    return any(pattern in str(error) for pattern in EXPLOSION_ERRORS)


def temperature_in_range(temperature: float, protocol: Protocol) -> bool:
    return math.isfinite(temperature) and protocol.t_min < temperature < protocol.t_max


def mdsim_bonds(atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
    """Bonded pairs (i < j) as MDsim finds them (nnp.chemistry's MDsim rule, ASE NeighborList)."""
    r = radii(atoms.numbers)
    d = atoms.get_all_distances()
    i, j = np.triu_indices(len(atoms), 1)
    bonded = d[i, j] < mdsim_bond_length_limit(r[i], r[j])
    return i[bonded], j[bonded]


def mean_bond_lengths(reference: Sequence[Atoms], symbols: Sequence[str], i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Mean length of each bond over the reference frames of the same molecule (same symbols, same order)."""
    same = [a.positions for a in reference if a.get_chemical_symbols() == list(symbols)]
    if not same:
        raise ValueError("no reference frame has the start frame's atoms in its order: cannot compute the "
                         "dataset's mean bond lengths (MDsim's d_ref)")
    x = np.asarray(same)
    return np.linalg.norm(x[:, j] - x[:, i], axis=-1).mean(axis=0)


def molecule_collapse(positions: np.ndarray, bonds: tuple[np.ndarray, np.ndarray], d_ref: np.ndarray,
                      temperature: float, protocol: Protocol) -> str | None:
    """Why a molecule (MDsim's protocol) has collapsed, or None: lost atoms, a bond, the temperature."""
    i, j = bonds
    if not np.all(np.isfinite(positions)):
        return "atoms left the box (exploded)"
    if len(i) and np.abs(np.linalg.norm(positions[j] - positions[i], axis=1) - d_ref).max() > protocol.bond_tolerance:
        return "bond deviation > %.2f Å" % protocol.bond_tolerance
    if not temperature_in_range(temperature, protocol):
        return f"temperature {temperature:.3g} K out of range"
    return None


def close_contact(atoms: Atoms) -> str | None:
    """Why ``atoms`` has collapsed onto itself (the closest pair under nnp.chemistry.contact_limit, periodic
    images included), or None."""
    r = radii(atoms.numbers)
    i, j, d = pair_distances(atoms, float(contact_limit(r.max(), r.max())))
    under = np.flatnonzero(d < contact_limit(r[i], r[j]))
    if not len(under):
        return None
    k = under[np.argmin(d[under])]
    symbols = atoms.get_chemical_symbols()
    return (f"atoms {i[k]} ({symbols[i[k]]}) and {j[k]} ({symbols[j[k]]}) {d[k]:.2f} Å apart, under half their "
            f"covalent radii ({float(contact_limit(r[i[k]], r[j[k]])):.2f} Å)")


def reference_closest(reference: Sequence[Atoms], protocol: Protocol) -> dict[tuple[str, str], float]:
    """The closest distance (Å) of each of the protocol's RDF pairs over the reference frames, periodic images
    included: what :func:`window_contact` compares with. Pairs never within the RDF range are left out (no rule for
    them), and so is every pair when the rule is off (``contact_tolerance`` None)."""
    if protocol.contact_tolerance is None:
        return {}
    closest = closest_distances(reference, protocol.rdf_r_max)  # keys "heavier-lighter"
    found = {(a, b): closest.get(f"{a}-{b}", closest.get(f"{b}-{a}")) for a, b in protocol.pairs}
    return {pair: d for pair, d in found.items() if d is not None}


def window_contact(window: dict, closest: dict[tuple[str, str], float], protocol: Protocol) -> str | None:
    """Why an RDF window has collapsed by the closest-approach rule, or None: pairs of elements met closer than
    ``protocol.contact_tolerance`` under their closest distance in the reference (``closest``,
    :func:`reference_closest`), each such element pair named with its closest approach. ``window`` is
    ``{pair: g(r)}`` averaged by LAMMPS over the window's samples (~100), so g(r) > 0 in a bin means some sample had
    a pair at that distance (to half a bin, 0.006 Å by default)."""
    found = []
    for pair, d_ref in closest.items():
        g = np.asarray(window[pair])
        r = rdf_bin_centres(protocol.rdf_r_max, len(g))
        under = np.flatnonzero((g > 0) & (r < d_ref - protocol.contact_tolerance))
        if len(under):
            found.append(f"{pair[0]}-{pair[1]} pair at {r[under[0]]:.2f} Å, more than {protocol.contact_tolerance:g} Å "
                         f"under its closest distance in the reference ({d_ref:.2f} Å)")
    return "; ".join(found) or None


def write_bond_reference(atoms: Atoms, path: Path) -> None:
    """The bonds of ``atoms`` (nnp's rule) and their lengths there, as ``compute bond/deviation ... reference
    path`` reads them (``tag_i tag_j d_ref``, atom IDs 1..N in the structure's order): a trajectory continued
    from a restart keeps the bonds of its start frame."""
    i, j, length = reference_bonds(atoms)
    lines = [f"{a + 1} {b + 1} {d!r}" for a, b, d in zip(i.tolist(), j.tolist(), length.tolist())]
    path.write_text("# tag_i tag_j d_ref (Å): bonds of the start frame, nnp's rule (nnp.chemistry)\n"
                    + "".join(line + "\n" for line in lines))

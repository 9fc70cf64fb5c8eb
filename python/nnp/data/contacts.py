"""Contact frames: two molecules pushed into each other, to teach a model the wall it never saw.

Liquid or thermal data rarely hold two atoms of different molecules much closer than their usual closest approach, so
a model trained on them has no short-range wall: in MD it lets molecules run into each other where the reference
method repels them with tens of eV (RESULTS §14.8). A contact frame takes a frame, an atom ``a`` and the nearest atom
``b`` of a given element on another molecule (minimum image), and moves ``b``'s whole molecule rigidly along the
``a``-``b`` line to a distance between the contact limit (``nnp.chemistry.contact_limit``, half the covalent radii:
no structure is ever closer) and the closest distance of that element pair in the frame, drawn with a density rising
linearly toward the latter (the wall's foot most often). Every other atom stays put, so the frame differs from
its source by one approach. The reference method then labels it; :func:`keep_below` drops those pushed so far that
they cost more than a given energy above their source (a wall a model needs to reach, not to extrapolate).

Frames carry their provenance in ``atoms.info``: ``contact_source`` (index of the input frame), ``contact_role``
(``source`` or ``contact``), and for contacts ``contact_pair`` ("O-H", the elements of ``a`` and ``b``), ``contact_a`` and ``contact_b``,
``contact_start_A`` and ``contact_distance_A``; contacts also ``config_type`` "contact", the key training's
``train.config_type_weights`` reads (docs/training.md).
"""

from __future__ import annotations

from itertools import combinations_with_replacement
from typing import Sequence

import numpy as np
from ase import Atoms

from ..chemistry import contact_limit, covalent_radius
from ..errors import UserError
from .molecules import molecule_labels

CONFIG_TYPE = "contact"  # info["config_type"] of a contact frame (what train.config_type_weights names)


def _plain(atoms: Atoms) -> Atoms:
    """Positions, elements and cell only (no labels, no calculator)."""
    return Atoms(atoms.get_chemical_symbols(), positions=atoms.get_positions(), cell=atoms.get_cell(),
                 pbc=atoms.get_pbc())


def has_two_molecules(atoms: Atoms) -> bool:
    """Whether a contact frame can be made from ``atoms`` (two or more molecules by nnp's bond rule)."""
    return len(atoms) > 0 and molecule_labels(atoms).max() > 0


def _foreign_pairs(symbols: np.ndarray, molecule: np.ndarray) -> list[tuple[str, str]]:
    """Element pairs with one atom each on two different molecules."""
    pairs = []
    for first, second in combinations_with_replacement(sorted(set(symbols)), 2):
        a_mols, b_mols = set(molecule[symbols == first]), set(molecule[symbols == second])
        if len(a_mols | b_mols) > 1:  # both elements present: some A and some B sit on different molecules
            pairs.append((first, second))
    return pairs


def push_together(atoms: Atoms, a: int, b: int, distance: float, moving: np.ndarray) -> Atoms:
    """A copy with the atoms ``moving`` (``b``'s molecule) shifted along the a->b line so that |a - b| = ``distance``."""
    vector = atoms.get_distance(a, b, mic=True, vector=True)
    start = float(np.linalg.norm(vector))
    frame = _plain(atoms)
    frame.positions[moving] += (distance - start) * vector / start
    return frame


def contact_frame(atoms: Atoms, pair: tuple[str, str], rng: np.random.Generator,
                  molecule: np.ndarray | None = None) -> Atoms | None:
    """One contact frame for the element ``pair`` (``a`` of either element, at random), or None when the frame already
    has such a pair at its contact limit."""
    molecule = molecule_labels(atoms) if molecule is None else molecule
    symbols = np.array(atoms.get_chemical_symbols())
    first, second = pair if rng.random() < 0.5 else pair[::-1]
    starts = [i for i in np.flatnonzero(symbols == first) if np.any((symbols == second) & (molecule != molecule[i]))]
    nearest = {}  # each start atom's nearest foreign atom of the second element: (distance, atom)
    for i in starts:
        others = np.flatnonzero((symbols == second) & (molecule != molecule[i]))
        distances = atoms.get_distances(i, others, mic=True)
        nearest[i] = (float(distances.min()), int(others[np.argmin(distances)]))
    closest = min(d for d, _ in nearest.values())
    limit = float(contact_limit(covalent_radius(first), covalent_radius(second)))
    if closest <= limit:
        return None
    a = int(rng.choice(starts))
    start, b = nearest[a]
    # Closer than any such pair in the frame, with a density rising linearly toward that closest distance: the foot
    # of the wall is sampled most, its top (tens of eV, partly dropped by keep_below) least.
    distance = float(limit + (closest - limit) * np.sqrt(rng.random()))
    frame = push_together(atoms, a, b, distance, np.flatnonzero(molecule == molecule[b]))
    frame.info.update(config_type=CONFIG_TYPE, contact_role="contact", contact_pair=f"{first}-{second}", contact_a=a,
                      contact_b=b, contact_start_A=start, contact_distance_A=distance)
    return frame


def contact_candidates(frames: Sequence[Atoms], sources: int, per_source: int, seed: int = 0) -> list[Atoms]:
    """``sources`` frames drawn at random (of those with two or more molecules), each followed by ``per_source``
    contact frames made from it; the element pairs taken in turn from a random start, so every pair is pushed.

    The source frames come along (``contact_role`` "source") because :func:`keep_below` needs their energies.
    Deterministic in ``seed``: the same call gives the same frames (resumable labelling relies on it)."""
    if sources < 1 or per_source < 1:
        raise UserError(f"contact frames need sources >= 1 and per_source >= 1, not {sources} and {per_source}")
    rng = np.random.default_rng(seed)
    usable = {k: molecule_labels(atoms) for k, atoms in enumerate(frames)}
    usable = {k: labels for k, labels in usable.items() if labels.max() > 0}
    if not usable:
        raise UserError(f"none of the {len(frames)} frames has two molecules (by nnp's bond rule): a contact frame "
                        "pushes one molecule into another; give frames of a liquid, a cluster or a crystal")
    picked = sorted(rng.choice(sorted(usable), size=min(sources, len(usable)), replace=False).tolist())
    out = []
    for k in picked:
        atoms, molecule = frames[k], usable[k]
        source = _plain(atoms)
        source.info.update(contact_source=k, contact_role="source")
        out.append(source)
        pairs = _foreign_pairs(np.array(atoms.get_chemical_symbols()), molecule)
        offset = int(rng.integers(len(pairs)))
        for c in range(per_source):
            frame = contact_frame(atoms, pairs[(offset + c) % len(pairs)], rng, molecule)
            if frame is not None:
                frame.info["contact_source"] = k
                out.append(frame)
    return out


def keep_below(labelled: Sequence[Atoms], max_energy: float) -> tuple[list[Atoms], dict]:
    """The labelled contact frames at most ``max_energy`` eV above their labelled source frame, and counts.

    A contact whose source frame failed to label has no reference and is dropped (counted as ``no_source``)."""
    source_energy = {a.info["contact_source"]: a.get_potential_energy() for a in labelled
                     if a.info.get("contact_role") == "source"}
    kept, counts = [], {"contacts": 0, "kept": 0, "too_high": 0, "no_source": 0}
    for atoms in labelled:
        if atoms.info.get("contact_role") != "contact":
            continue
        counts["contacts"] += 1
        reference = source_energy.get(atoms.info["contact_source"])
        if reference is None:
            counts["no_source"] += 1
            continue
        rise = float(atoms.get_potential_energy() - reference)
        atoms.info["contact_energy_eV"] = rise
        if rise > max_energy:
            counts["too_high"] += 1
            continue
        kept.append(atoms)
        counts["kept"] += 1
    return kept, counts

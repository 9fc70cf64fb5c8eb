"""Labelled contact frames (``nnp data contacts``): molecules pushed together (nnp.data.contacts), labelled with the
reference method, resumably, and kept up to a wall height."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from ase import Atoms

from ..data.atomic import write_frames
from ..data.contacts import contact_candidates, keep_below
from .labelling import label_frames, read_labelled

DEFAULT_MAX_ENERGY = 20.0  # eV above the source frame: far over kT, under the hundreds of eV of fused nuclei


def label_contacts(frames: Sequence[Atoms], output: str | Path, make_calculator: Callable[[], Any], sources: int,
                   per_source: int = 3, max_energy: float = DEFAULT_MAX_ENERGY, seed: int = 0,
                   with_stress: bool = False, progress: bool = False) -> dict[str, Any]:
    """Contact frames of ``frames`` labelled into ``output`` (extxyz; those at most ``max_energy`` eV above their
    source frame); returns the counts.

    The source and contact frames are labelled into ``<output>.labelled.extxyz`` first (resumable: rerun the same
    call after an interruption), then filtered into ``output`` in one atomic write."""
    output = Path(output)
    candidates = contact_candidates(frames, sources, per_source, seed)
    raw = output.with_name(output.name.removesuffix(".extxyz") + ".labelled.extxyz")
    state = label_frames(candidates, raw, make_calculator, progress=progress, with_stress=with_stress)
    kept, counts = keep_below(read_labelled(raw), max_energy)
    write_frames(output, kept)
    return {**counts, "sources": sum(a.info["contact_role"] == "source" for a in candidates),
            "label_failures": state["failed"], "label_cpu_seconds": state["cpu_seconds"], "max_energy_eV": max_energy,
            "labelled": str(raw), "output": str(output)}

"""`nnp data info`: what is in a dataset file."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from .dataset import load_structures


def dataset_info(path: str) -> str:
    """Card (if any), frame/atom counts, species and energy/force statistics as text."""
    frames = load_structures(path, require_labels=False)
    lines = [f"file: {path}"]
    from .readers import bundled_dataset

    file = bundled_dataset(path.split(":", 1)[1]) if path.startswith("bundled:") else Path(path)
    card = file.with_name(file.name + ".card.json")
    if card.exists():
        lines.append("card: " + json.dumps(json.loads(card.read_text()), indent=2))
    species = Counter(s for atoms in frames for s in atoms.get_chemical_symbols())
    sizes = [len(a) for a in frames]
    lines.append(f"frames: {len(frames)}; atoms per frame: {min(sizes)}-{max(sizes)}")
    lines.append("species: " + ", ".join(f"{s} ({n})" for s, n in sorted(species.items())))
    labelled = [a for a in frames if a.calc is not None and "energy" in a.calc.results]
    if labelled:
        e = np.array([a.get_potential_energy() / len(a) for a in labelled])
        f = np.concatenate([a.get_forces().ravel() for a in labelled])
        lines.append(f"energy per atom (eV): mean {e.mean():.5f}, std {e.std():.5f}, min {e.min():.5f}, max {e.max():.5f}")
        lines.append(f"force components (eV/Å): rms {np.sqrt((f**2).mean()):.4f}, max |F| {np.abs(f).max():.4f}")
    else:
        lines.append("unlabelled (positions only)")
    return "\n".join(lines)

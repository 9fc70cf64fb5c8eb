"""`nnp data info`: what is in a dataset file."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from .dataset import config_type, load_structures


def dataset_info(path: str) -> str:
    """Card (if any), frame/atom counts, species and energy/force statistics as text."""
    from .pack import is_pack

    if is_pack(path):
        return pack_info(path)
    frames = load_structures(path, require_labels=False)
    lines = [f"file: {path}"]
    from .readers import bundled_dataset

    file = bundled_dataset(path.split(":", 1)[1]) if path.startswith("bundled:") else Path(path)
    card = file.with_name(file.name + ".card.json")
    if card.exists():
        content = json.loads(card.read_text())
        lines.append("card: " + json.dumps(content, indent=2))
        if "file_sha256" in content:
            lines.append(card_check(file, content["file_sha256"]))
    species = Counter(s for atoms in frames for s in atoms.get_chemical_symbols())
    sizes = [len(a) for a in frames]
    lines.append(f"frames: {len(frames)}; atoms per frame: {min(sizes)}-{max(sizes)}")
    lines.append("species: " + ", ".join(f"{s} ({n})" for s, n in sorted(species.items())))
    types = Counter(config_type(atoms) for atoms in frames)
    if set(types) != {None}:
        lines.append(types_line({t: n for t, n in types.items() if t is not None}, types[None]))
    labelled = [a for a in frames if a.calc is not None and "energy" in a.calc.results]
    if labelled:
        e = np.array([a.get_potential_energy() / len(a) for a in labelled])
        f = np.concatenate([a.get_forces().ravel() for a in labelled])
        lines.append(f"energy per atom (eV): mean {e.mean():.5f}, std {e.std():.5f}, min {e.min():.5f}, max {e.max():.5f}")
        lines.append(f"force components (eV/Å): rms {np.sqrt((f**2).mean()):.4f}, max |F| {np.abs(f).max():.4f}")
    else:
        lines.append("unlabelled (positions only)")
    return "\n".join(lines)


def types_line(types: dict[str, int], untyped: int) -> str:
    """Frames per config_type: the names train.config_type_weights can use."""
    parts = [f"{t} ({types[t]})" for t in sorted(types)] + ([f"untyped ({untyped})"] if untyped else [])
    return "config types: " + ", ".join(parts)


def card_check(file: Path, recorded: str) -> str:
    """One line: whether ``file`` still has the SHA-256 its card recorded."""
    from .generate.resumable import file_sha256

    actual = file_sha256(file)
    if actual == recorded:
        return f"file matches its card (SHA-256 {actual[:16]}...)"
    return (f"WARNING: the file's SHA-256 ({actual[:16]}...) is not the one its card recorded ({recorded[:16]}...): "
            "the frames were changed after the card was written, or the card belongs to another file")


def pack_info(path: str) -> str:
    """The same card for a pack, from its metadata and summary table (no frame is read)."""
    from .pack import PackedDataset

    pack = PackedDataset(path)
    meta, sizes = pack.metadata, pack.summary()["n_atoms"]
    lines = [f"file: {path} (nnp pack, format {meta['format_version']}, created {meta['created']})",
             "sources: " + ", ".join(f"{s['path']} ({s['frames']} frames)" for s in meta["sources"]),
             f"frames: {meta['n_frames']}; atoms per frame: {sizes.min()}-{sizes.max()}",
             "species: " + ", ".join(f"{s} ({n})" for s, n in sorted(meta["element_counts"].items()))]
    if meta["config_types"]:
        typed = sum(meta["config_types"].values())
        lines.append(types_line(meta["config_types"], meta["n_frames"] - typed))
    if meta["energy_per_atom"] is not None:
        e = meta["energy_per_atom"]
        lines.append(f"energy per atom (eV): mean {e['mean']:.5f}, std {e['std']:.5f}")
        lines.append(f"force components (eV/Å): rms {meta['force_rms']:.4f}")
        lines.append("reference energies (eV): " + ", ".join(f"{s} {v:.5f}" for s, v in
                                                              meta["reference_energies"].items()))
    if not meta["labelled"]:
        lines.append("unlabelled (positions only)" if meta["energy_per_atom"] is None else "partly labelled")
    lines.append(f"neighbours per atom within {meta['cutoff']} Å: {meta['avg_num_neighbors']:.2f}")
    return "\n".join(lines)

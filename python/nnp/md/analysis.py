"""Force-field analyses beyond force error (Maheshwari et al. 2025), for comparing models.

* latent structure: per-atom embeddings on reference frames, 2-D projections (PCA, t-SNE) coloured by
  chemical environment, and the silhouette score of those environments in embedding space;
* local force smoothness: ``|dF| / |dx|`` for small random single-atom displacements, model against a
  reference calculator;
* force-difference consistency: error of the predicted force change between nearby frames against the
  reference force change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator


def environment_labels(atoms: Atoms) -> list[str]:
    """Chemical environment of each atom: its element and its bonded neighbours, e.g. ``C(CCO)``."""
    from ..data.molecules import bonds

    i, j, _ = bonds(atoms)
    symbols = atoms.get_chemical_symbols()
    neighbours: list[list[str]] = [[] for _ in symbols]
    for a, b in zip(i, j):
        neighbours[a].append(symbols[b])
    return [f"{s}({''.join(sorted(n))})" for s, n in zip(symbols, neighbours)]


def model_embeddings(model_path: str | Path, frames: Sequence[Atoms]) -> np.ndarray:
    """Per-atom features (the model file's ``node_features`` method) for every atom of ``frames``."""
    from ..data.graph import atoms_to_graph, edge_vectors
    from ..export import load_exported

    module, metadata = load_exported(model_path)
    species, cutoff = metadata["species"].split(), float(metadata["cutoff"])
    dtype = {"float32": torch.float32, "float64": torch.float64}[metadata["dtype"]]
    features = []
    with torch.no_grad():
        for atoms in frames:
            graph = atoms_to_graph(atoms, species, cutoff, dtype, with_labels=False)
            features.append(module.node_features(graph.species, graph.edge_index, edge_vectors(graph)).double().numpy())
    return np.concatenate(features)


def separation_score(embeddings: np.ndarray, labels: Sequence[str], max_points: int = 4000, seed: int = 0) -> float:
    """Silhouette score of the environment labels in embedding space (1: separated, 0: mixed)."""
    from sklearn.metrics import silhouette_score

    labels = np.asarray(labels)
    if len(set(labels)) < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    take = rng.choice(len(labels), size=min(max_points, len(labels)), replace=False)
    return float(silhouette_score(embeddings[take], labels[take]))


def projections(embeddings: np.ndarray, seed: int = 0, max_points: int = 2000) -> dict[str, np.ndarray]:
    """2-D PCA and t-SNE projections of (a random subset of) the embeddings, and the subset used."""
    from sklearn.manifold import TSNE

    rng = np.random.default_rng(seed)
    take = np.sort(rng.choice(len(embeddings), size=min(max_points, len(embeddings)), replace=False))
    x = embeddings[take] - embeddings[take].mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    pca = x @ vt[:2].T
    perplexity = float(min(30, max(2, len(take) // 4)))
    tsne = TSNE(n_components=2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(x)
    return {"pca": pca, "tsne": tsne, "index": take}


def force_smoothness(calculator: Calculator, frames: Sequence[Atoms], displacements: int = 20,
                     step: float = 0.01, seed: int = 0) -> np.ndarray:
    """``|F(x + step u) - F(x)| / step`` (eV/Å^2) for random atoms ``a`` and unit directions ``u``.

    ``|.|`` is the norm over all atoms' force components. The same (frame, atom, direction) draws are
    made for every calculator with the same ``seed``, so distributions are directly comparable.
    """
    rng = np.random.default_rng(seed)
    ratios = []
    for k in range(displacements):
        atoms = frames[int(rng.integers(len(frames)))].copy()
        atom = int(rng.integers(len(atoms)))
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        atoms.calc = calculator
        before = atoms.get_forces().copy()
        atoms.positions[atom] += step * direction
        after = atoms.get_forces()
        ratios.append(np.linalg.norm(after - before) / step)
    return np.array(ratios)


def force_difference_error(forces_model: Sequence[np.ndarray], forces_reference: Sequence[np.ndarray],
                           lag: int = 1) -> dict[str, float]:
    """Error of predicted force changes between frames ``t`` and ``t + lag`` against the reference.

    Returns the RMSE of ``dF_model - dF_ref`` (eV/Å) and its ratio to the RMS of ``dF_ref``.
    """
    fm = [np.asarray(f) for f in forces_model]
    fr = [np.asarray(f) for f in forces_reference]
    errors, scale = [], []
    for t in range(len(fm) - lag):
        d_model, d_ref = fm[t + lag] - fm[t], fr[t + lag] - fr[t]
        errors.append((d_model - d_ref).ravel())
        scale.append(d_ref.ravel())
    e, s = np.concatenate(errors), np.concatenate(scale)
    rmse = float(np.sqrt((e**2).mean()))
    return {"delta_force_rmse": rmse, "relative_delta_force_rmse": rmse / max(float(np.sqrt((s**2).mean())), 1e-300)}


def model_names(paths: Sequence[str | Path]) -> list[str]:
    """Short distinct names: the file names, or where two are equal (``a/model.nnp.pt``, ``b/model.nnp.pt``)
    the path from the first folder in which they differ."""
    paths = [Path(p).resolve() for p in paths]
    depth = 1
    while True:
        names = [str(Path(*p.parts[-depth:])) for p in paths]
        if len(set(names)) == len(names) or depth >= max(len(p.parts) for p in paths):
            return names
        depth += 1


def compare_models(model_paths: Sequence[str | Path], reference_frames: Sequence[Atoms], output_dir: str | Path,
                   reference_calculator: Callable[[], Calculator] | None = None, displacements: int = 20,
                   max_frames: int = 50) -> dict:
    """All three analyses for several models on the same reference frames; writes PNGs and a JSON summary."""
    import json

    from ..calculator import NNPCalculator
    from ..export import load_exported
    from ..plotting import plot_analysis

    for path in model_paths:  # every model file is checked before any work
        load_exported(path)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    frames = list(reference_frames)[:max_frames]
    labels = [label for atoms in frames for label in environment_labels(atoms)]
    reference_forces = [atoms.get_forces() for atoms in frames]
    names = model_names(model_paths)
    summary: dict = {"reference_frames": len(frames), "models": {},  # what each short name stands for:
                     "model_paths": {name: str(Path(path).resolve()) for path, name in zip(model_paths, names)}}
    curves: dict = {"smoothness": {}, "projections": {}, "labels": labels}
    if reference_calculator is not None:
        curves["smoothness"]["reference"] = force_smoothness(reference_calculator(), frames, displacements)
        summary["reference_smoothness_median"] = float(np.median(curves["smoothness"]["reference"]))
    for path, name in zip(model_paths, names):
        calc = NNPCalculator(path)
        predicted = []
        for atoms in frames:
            probe = atoms.copy()
            probe.calc = calc
            predicted.append(probe.get_forces())
        embeddings = model_embeddings(path, frames)
        smooth = force_smoothness(calc, frames, displacements)
        curves["smoothness"][name] = smooth
        curves["projections"][name] = projections(embeddings)
        force_error = np.concatenate([(p - r).ravel() for p, r in zip(predicted, reference_forces)])
        entry = {
            "force_rmse": float(np.sqrt((force_error**2).mean())),
            "latent_silhouette": separation_score(embeddings, labels),
            "smoothness_median": float(np.median(smooth)),
            **force_difference_error(predicted, reference_forces),
        }
        if "reference" in curves["smoothness"]:
            from scipy.stats import wasserstein_distance

            entry["smoothness_wasserstein_to_reference"] = float(
                wasserstein_distance(smooth, curves["smoothness"]["reference"]))
        summary["models"][name] = entry
    summary["plots"] = [str(p) for p in plot_analysis(curves, output_dir)]
    (output_dir / "analysis.json").write_text(json.dumps(summary, indent=2))
    return summary

"""Shared helpers for the tests: small float64 models and structures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

from nnp.config import ModelConfig
from nnp.data.graph import atoms_to_graph, edge_vectors
from nnp.models import build_potential
from nnp.models.gemnet_t import fit_scale_factors


CONSERVATIVE_KINDS = ("egnn", "gns", "painn", "gemnet_t")
ALL_KINDS = CONSERVATIVE_KINDS + ("gemnet_dt",)
ROTATION_INVARIANT_KINDS = ("egnn", "painn", "gemnet_t", "gemnet_dt")


def small_model(species=("H", "O"), cutoff=3.0, layers=3, hidden=16, seed=0, kind="egnn"):
    """A float64 model with all weights random (including the zero-initialised coordinate heads).

    GemNet-T keeps its (random, He-orthogonal) initialisation and gets its scale factors fitted on a water
    box instead: perturbed weights with unit scale factors make its energies explode.
    """
    torch.manual_seed(seed)
    config = ModelConfig(kind=kind, cutoff=cutoff, hidden=hidden, layers=layers, num_rbf=8, emb_trip=8,
                         emb_rbf=8, emb_cbf=8, emb_bil_trip=8, num_spherical=4, num_radial=4)
    references = torch.tensor([-13.6, -430.0, -380.0, -1030.0][: len(species)])  # eV per atom, any 1-4 elements
    model = build_potential(config, list(species), avg_num_neighbors=8.0, reference_energies=references, scale=0.5)
    if kind == "gemnet_t":
        model = model.double().eval()
        fit_scale_factors(model.backbone, lambda: model.backbone(*graph_inputs(model, water_box(seed=seed))))
        return model
    # PaiNN multiplies features (a_sv <Uv, Vv>, v_j x_vv): with 0.3 noise on every weight its random forces
    # reach 1e4 eV/A and atoms leave the box in a few steps; 0.1 keeps them near the other models'
    noise = 0.1 if kind == "painn" else 0.3
    with torch.no_grad():
        for p in model.parameters():
            p.add_(noise * torch.randn_like(p))
    return model.double().eval()


def graph_inputs(model, atoms: Atoms):
    """``(species, edge_index, edge_vectors)`` of ``atoms`` for ``model`` (float64)."""
    graph = atoms_to_graph(atoms, model.species, model.cutoff, torch.float64, with_labels=False)
    return graph.species, graph.edge_index, edge_vectors(graph)


def water_box(n_side=2, spacing=3.1, seed=0, cell=None) -> Atoms:
    """Slightly disordered water molecules on a cubic lattice, periodic."""
    rng = np.random.default_rng(seed)
    symbols, positions = [], []
    for ix in range(n_side):
        for iy in range(n_side):
            for iz in range(n_side):
                o = np.array([ix, iy, iz]) * spacing + rng.normal(0, 0.1, 3)
                symbols += ["O", "H", "H"]
                positions += [o, o + [0.96, 0, 0] + rng.normal(0, 0.05, 3), o + [-0.24, 0.93, 0] + rng.normal(0, 0.05, 3)]
    atoms = Atoms(symbols, positions=positions, cell=cell if cell is not None else np.eye(3) * n_side * spacing,
                  pbc=True)
    atoms.wrap()
    return atoms


def triclinic_water(seed: int) -> Atoms:
    """A water box in a skewed cell (all three tilt factors non-zero)."""
    atoms = water_box(seed=seed)
    atoms.set_cell(np.array([[6.3, 0, 0], [1.1, 6.1, 0], [-0.7, 0.9, 6.5]]), scale_atoms=True)
    return atoms


def water_cluster(seed: int) -> Atoms:
    """The water box cut out as a non-periodic cluster with 5 Å of vacuum."""
    atoms = water_box(seed=seed)
    atoms.pbc = False
    atoms.center(vacuum=5.0)
    return atoms


def predict(model, atoms: Atoms, cutoff=None):
    graph = atoms_to_graph(atoms, model.species, cutoff or model.cutoff, torch.float64, with_labels=False)
    out = model(graph.species, graph.edge_index, edge_vectors(graph), graph.num_nodes)
    return {k: v.detach().numpy() for k, v in out.items()}


def kill_during_generation(code: str, state: Path, frames: int, timeout: float = 120.0, poll: float = 0.02) -> None:
    """Run ``code`` in a new Python process and SIGKILL it once its resumable state reports ``frames``."""
    process = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if state.exists() and json.loads(state.read_text())["frames"] >= frames:
            break
        time.sleep(poll)
    assert process.poll() is None, "generation finished before it could be interrupted"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


# Independent references for the statistics nnp computes from its streaming summary table
# (nnp.data.pack.subset_statistics): plain numpy on the frames.
def composition_matrix(frames, species) -> np.ndarray:
    index = {s: k for k, s in enumerate(species)}
    counts = np.zeros((len(frames), len(species)))
    for row, atoms in enumerate(frames):
        for s in atoms.get_chemical_symbols():
            counts[row, index[s]] += 1
    return counts


def fit_reference_energies(frames, species) -> np.ndarray:
    """Per-species energies minimising sum_frames (E - sum_s n_s e_s)^2 (minimum-norm least squares)."""
    energies = np.array([atoms.get_potential_energy() for atoms in frames])
    solution, *_ = np.linalg.lstsq(composition_matrix(frames, species), energies, rcond=None)
    return solution


def force_rms(frames) -> float:
    forces = np.concatenate([atoms.get_forces().ravel() for atoms in frames])
    return float(np.sqrt(np.mean(forces**2))) if forces.size else 1.0

"""Observables and force-field analyses give the known answer on constructed cases."""

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from helpers import small_model, water_box
from nnp.export import export_model
from nnp.md.analysis import (
    compare_models,
    environment_labels,
    force_difference_error,
    force_smoothness,
    model_embeddings,
    separation_score,
)
from nnp.data.molecules import reference_bonds
from nnp.md.observables import diffusivity, max_bond_deviation, rdf, rdf_mae


def ideal_gas(n=400, box=12.0, seed=0):
    rng = np.random.default_rng(seed)
    return Atoms("O" * n, positions=rng.random((n, 3)) * box, cell=np.eye(3) * box, pbc=True)


def test_ideal_gas_rdf_is_one_and_self_mae_is_zero():
    frames = [ideal_gas(seed=k) for k in range(5)]
    r, g = rdf(frames, ("O", "O"), r_max=5.0, bins=50)
    assert np.mean(g[r > 2.0]) == pytest.approx(1.0, abs=0.05)
    assert rdf_mae(g, g) == 0.0


def test_water_criterion_fires_on_a_torn_apart_trajectory():
    water = [water_box(n_side=3, seed=k) for k in range(4)]
    torn = []
    rng = np.random.default_rng(0)
    for atoms in water:  # hydrogens scattered through the box: the molecules have dissociated
        broken = atoms.copy()
        h = np.array(broken.get_chemical_symbols()) == "H"
        broken.positions[h] = rng.random((h.sum(), 3)) * broken.cell.lengths()
        torn.append(broken)
    errors = {}
    for pair in (("O", "O"), ("O", "H"), ("H", "H")):
        _, g_ref = rdf(water[:2], pair)
        _, g_same = rdf(water[2:], pair)
        _, g_torn = rdf(torn, pair)
        errors[pair] = (rdf_mae(g_same, g_ref), rdf_mae(g_torn, g_ref))
    assert max(e[1] for e in errors.values()) > 3.0  # collapse
    assert errors[("O", "H")][0] < errors[("O", "H")][1]


def test_bond_deviation_is_zero_on_reference_and_exact_when_stretched():
    atoms = water_box(seed=0)
    bonds = reference_bonds(atoms)
    assert len(bonds[0]) == 16  # 8 molecules x 2 O-H bonds (H-H is beyond 1.2 x covalent radii)
    assert max_bond_deviation(atoms, bonds) < 1e-12
    stretched = atoms.copy()
    o, h = 0, 1
    direction = stretched.positions[h] - stretched.positions[o]
    stretched.positions[h] += 0.3 * direction / np.linalg.norm(direction)
    assert max_bond_deviation(stretched, bonds) == pytest.approx(0.3, abs=1e-9)


def test_diffusivity_of_a_random_walk():
    rng = np.random.default_rng(0)
    sigma, dt = 0.1, 0.5  # Å per step and axis, ps
    walk = np.cumsum(rng.normal(0, sigma, (2000, 200, 3)), axis=0)
    assert diffusivity(walk, dt) == pytest.approx(sigma**2 / (2 * dt), rel=0.1)


def test_force_difference_error_zero_for_reference_and_exact_for_scaled_model():
    rng = np.random.default_rng(0)
    forces = [rng.normal(size=(5, 3)) for _ in range(10)]
    assert force_difference_error(forces, forces)["delta_force_rmse"] == 0.0
    scaled = [1.1 * f for f in forces]
    assert force_difference_error(scaled, forces)["relative_delta_force_rmse"] == pytest.approx(0.1)


def test_force_smoothness_same_calculator_same_distribution():
    frames = []
    for k in range(3):
        atoms = Atoms("Cu4", positions=np.random.default_rng(k).random((4, 3)) * 0.2 + np.eye(4, 3) * 2.5,
                      cell=np.eye(3) * 6, pbc=True)
        frames.append(atoms)
    a = force_smoothness(EMT(), frames, displacements=5)
    b = force_smoothness(EMT(), frames, displacements=5)
    np.testing.assert_allclose(a, b)
    assert np.all(a > 0)


def test_separation_score_on_constructed_clusters():
    rng = np.random.default_rng(0)
    centres = {"C(H)": [0, 0], "O(C)": [10, 0], "H(C)": [0, 10]}
    labels = [k for k in centres for _ in range(50)]
    points = np.array([np.array(centres[k]) + rng.normal(0, 0.3, 2) for k in labels])
    assert separation_score(points, labels) > 0.9
    assert abs(separation_score(points, rng.permutation(labels))) < 0.1


def test_environment_labels_of_water():
    labels = environment_labels(water_box(seed=0))
    assert labels[:3] == ["O(HH)", "H(O)", "H(O)"]


def test_compare_models_end_to_end(tmp_path):
    teacher = export_model(small_model(cutoff=3.0), tmp_path / "teacher.nnp.pt")
    other = export_model(small_model(cutoff=3.0, seed=1), tmp_path / "other.nnp.pt")
    from nnp.calculator import NNPCalculator

    frames = []
    for k in range(4):
        atoms = water_box(seed=k)
        atoms.calc = NNPCalculator(teacher)
        atoms.calc = SinglePointCalculator(atoms, energy=atoms.get_potential_energy(), forces=atoms.get_forces())
        frames.append(atoms)
    assert model_embeddings(teacher, frames[:1]).shape == (24, 16)
    summary = compare_models([teacher, other], frames, tmp_path / "analysis",
                             reference_calculator=lambda: NNPCalculator(teacher), displacements=4)
    same, diff = summary["models"]["teacher.nnp.pt"], summary["models"]["other.nnp.pt"]
    assert same["force_rmse"] < 1e-9 and same["delta_force_rmse"] < 1e-9
    assert same["smoothness_wasserstein_to_reference"] < 1e-9
    assert diff["force_rmse"] > 1e-3 and diff["delta_force_rmse"] > 1e-3
    assert (tmp_path / "analysis" / "analysis.json").exists()
    assert (tmp_path / "analysis" / "latent_projections.png").exists()

"""Physics of every model: gradients, symmetries, periodicity, cutoff smoothness."""

import numpy as np
import pytest
import torch
from ase import Atoms

from helpers import ALL_KINDS, CONSERVATIVE_KINDS, ROTATION_INVARIANT_KINDS, predict, small_model, water_box


@pytest.fixture(scope="module", params=ALL_KINDS)
def any_model(request):
    return small_model(kind=request.param)


@pytest.fixture(scope="module", params=CONSERVATIVE_KINDS)
def model(request):
    return small_model(kind=request.param)


def energy(model, atoms):
    return float(predict(model, atoms)["energy"])


@pytest.mark.parametrize("periodic", [True, False])
def test_forces_are_minus_energy_gradient(model, periodic):
    atoms = water_box(seed=1)
    if not periodic:
        atoms.pbc = False
    forces = predict(model, atoms)["forces"]
    h = 1e-5
    rng = np.random.default_rng(0)
    for atom in rng.choice(len(atoms), 4, replace=False):
        for axis in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[atom, axis] += h
            minus.positions[atom, axis] -= h
            numeric = -(energy(model, plus) - energy(model, minus)) / (2 * h)
            assert forces[atom, axis] == pytest.approx(numeric, abs=1e-6, rel=1e-6)


def test_stress_is_strain_derivative(model):
    atoms = water_box(seed=2, cell=np.array([[6.2, 0, 0], [0.4, 6.0, 0], [-0.3, 0.5, 6.4]]))
    virial = predict(model, atoms)["virial"]
    stress = -virial / atoms.get_volume()
    h = 1e-6
    for a in range(3):
        for b in range(3):
            strain = np.eye(3)
            strain[a, b] += h
            plus = atoms.copy()
            plus.set_cell(atoms.cell @ strain, scale_atoms=True)
            strain[a, b] -= 2 * h
            minus = atoms.copy()
            minus.set_cell(atoms.cell @ strain, scale_atoms=True)
            numeric = (energy(model, plus) - energy(model, minus)) / (2 * h) / atoms.get_volume()
            assert stress[a, b] == pytest.approx(numeric, abs=1e-7, rel=1e-7)  # O(h^2) error grows with curvature


def test_virial_equals_sum_of_position_times_force_for_molecule(model):
    atoms = water_box(seed=3)
    atoms.pbc = False
    out = predict(model, atoms)
    expected = atoms.positions.T @ out["forces"]
    np.testing.assert_allclose(out["virial"], expected, atol=1e-10)
    np.testing.assert_allclose(out["atom_virial"].sum(0), out["virial"], atol=1e-10)


def random_rotation(seed):
    return torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))[0].numpy()


def test_translation_and_permutation_exact(any_model):
    model = any_model
    atoms = water_box(seed=4)
    atoms.pbc = False
    ref = predict(model, atoms)
    moved = atoms.copy()
    moved.positions = atoms.positions + np.array([1.3, -2.2, 0.7])
    out = predict(model, moved)
    assert out["energy"] == pytest.approx(ref["energy"], abs=1e-10)
    np.testing.assert_allclose(out["forces"], ref["forces"], atol=1e-10)
    perm = np.random.default_rng(0).permutation(len(atoms))
    permuted = atoms[perm]
    out = predict(model, permuted)
    assert out["energy"] == pytest.approx(ref["energy"], abs=1e-10)
    np.testing.assert_allclose(out["forces"], ref["forces"][perm], atol=1e-10)
    np.testing.assert_allclose(out["atom_energy"], ref["atom_energy"][perm], atol=1e-10)


@pytest.mark.parametrize("kind", ROTATION_INVARIANT_KINDS)
def test_rotation_exact_for_invariant_models(kind):
    model = small_model(kind=kind)
    atoms = water_box(seed=4)
    atoms.pbc = False
    ref = predict(model, atoms)
    rot = random_rotation(1)
    rotated = atoms.copy()
    rotated.positions = atoms.positions @ rot.T
    out = predict(model, rotated)
    assert out["energy"] == pytest.approx(ref["energy"], abs=1e-10)
    np.testing.assert_allclose(out["forces"], ref["forces"] @ rot.T, atol=1e-10)


def test_gns_is_not_rotation_invariant_and_reports_by_how_much():
    """GNS encodes raw displacement vectors: rotation invariance is only learned (augmentation)."""
    model = small_model(kind="gns")
    atoms = water_box(seed=4)
    atoms.pbc = False
    ref = predict(model, atoms)
    errors = []
    for seed in range(3):
        rotated = atoms.copy()
        rot = random_rotation(seed)
        rotated.positions = atoms.positions @ rot.T
        out = predict(model, rotated)
        errors.append(np.abs(out["forces"] - ref["forces"] @ rot.T).max())
    print(f"untrained GNS: max force change under rotation {max(errors):.3g} eV/Å")
    assert max(errors) > 1e-6


@pytest.mark.parametrize("kind", ROTATION_INVARIANT_KINDS)
def test_periodic_rotation_of_cell_and_positions(kind):
    model = small_model(kind=kind)
    atoms = water_box(seed=5)
    ref = predict(model, atoms)
    rot = random_rotation(2)
    rotated = atoms.copy()
    rotated.set_cell(atoms.cell @ rot.T)
    rotated.positions = atoms.positions @ rot.T
    out = predict(model, rotated)
    assert out["energy"] == pytest.approx(ref["energy"], abs=1e-9)
    np.testing.assert_allclose(out["forces"], ref["forces"] @ rot.T, atol=1e-9)
    np.testing.assert_allclose(out["virial"], rot @ ref["virial"] @ rot.T, atol=1e-9)


def test_supercell_is_extensive(any_model):
    model = any_model
    atoms = water_box(seed=6)
    ref = predict(model, atoms)
    big = atoms.repeat((2, 2, 2))
    out = predict(model, big)
    assert out["energy"] == pytest.approx(8 * ref["energy"], rel=1e-12)
    np.testing.assert_allclose(out["forces"], np.tile(ref["forces"], (8, 1)), atol=1e-10)
    np.testing.assert_allclose(out["virial"], 8 * ref["virial"], atol=1e-9)


def test_small_cell_sees_its_own_images(any_model):
    """A cell shorter than the cutoff: one atom interacts with many of its own images."""
    model = any_model
    atoms = Atoms("OH", positions=[[0, 0, 0], [0.97, 0.1, 0]], cell=np.eye(3) * 2.5, pbc=True)
    out = predict(model, atoms)
    big = predict(model, atoms.repeat((3, 1, 2)))
    assert big["energy"] == pytest.approx(6 * out["energy"], rel=1e-12)
    np.testing.assert_allclose(big["forces"], np.tile(out["forces"], (6, 1)), atol=1e-10)
    if model.model_kind != "gemnet_dt":  # direct forces need not obey Newton's third law
        assert np.abs(out["forces"].sum(0)).max() < 1e-10


def test_energy_continuous_across_cutoff(any_model):
    model = any_model
    """Moving an atom out through the cutoff changes energy and forces continuously."""
    cutoff = model.cutoff

    def trimer(d):
        return Atoms("OHH", positions=[[0, 0, 0], [0.96, 0, 0], [0, 0, d]], pbc=False)

    far = predict(model, trimer(cutoff + 0.5))
    assert np.abs(far["forces"][2]).max() == 0.0
    energy_gaps, force_sizes = [], []
    for delta in (1e-2, 1e-3, 1e-4):
        inside = predict(model, trimer(cutoff - delta))
        outside = predict(model, trimer(cutoff + delta))
        assert outside["energy"] == pytest.approx(far["energy"], abs=1e-12)
        energy_gaps.append(abs(inside["energy"] - far["energy"]))
        force_sizes.append(np.abs(inside["forces"][2]).max())
    # the envelope vanishes with its first two derivatives: E - E_far ~ delta^3, F ~ delta^2
    assert energy_gaps[2] < 1e-8 and force_sizes[2] < 1e-5
    assert energy_gaps[2] < energy_gaps[1] / 200 < energy_gaps[0] / 200**2
    assert force_sizes[2] < force_sizes[1] / 50 < force_sizes[0] / 50**2

"""The default dataset: flexible TIP3P water from LAMMPS, with exact labels and exact resume."""

import json

import ase.io
import numpy as np
import pytest

from helpers import kill_during_generation
from nnp.data.generate.tip3p import evaluate_tip3p, generate_tip3p
from nnp.data.readers import bundled_dataset, read_structures

SHORT = {"interval": 10, "equilibration_steps": 400, "progress": False}  # quick settings used by every test


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    path = generate_tip3p(tmp_path_factory.mktemp("tip3p") / "water.extxyz", n_frames=8, **SHORT)
    return path, ase.io.read(path, ":")


def assert_same_frames(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(y.positions, x.positions, atol=1e-6)
        np.testing.assert_allclose(y.get_forces(), x.get_forces(), atol=1e-6)
        assert y.get_potential_energy() == pytest.approx(x.get_potential_energy(), abs=1e-6)


def test_frames_are_intact_water_with_sane_labels(frames):
    path, atoms_list = frames
    assert len(atoms_list) == 8
    for k, atoms in enumerate(atoms_list):
        assert atoms.get_chemical_symbols() == ["O", "H", "H"] * 64
        assert atoms.pbc.all() and atoms.cell.lengths() == pytest.approx([12.43] * 3, abs=0.01)
        assert atoms.info["frame"] == k and atoms.info["step"] == 400 + 10 * (k + 1)
        assert 150 < atoms.info["temperature"] < 450
        forces = atoms.get_forces()
        assert forces.shape == (192, 3) and np.isfinite(forces).all() and np.isfinite(atoms.positions).all()
        assert np.abs(forces.sum(0)).max() < 1e-3  # no net force in a periodic box
        assert -0.5 < atoms.get_potential_energy() / 64 < -0.3  # eV per molecule, ~ -9 kcal/mol
        oh = [atoms.get_distance(3 * m, 3 * m + j, mic=True) for m in range(64) for j in (1, 2)]
        assert 0.85 < min(oh) and max(oh) < 1.1 and np.mean(oh) == pytest.approx(0.96, abs=0.02)
        hoh = [atoms.get_angle(3 * m + 1, 3 * m, 3 * m + 2, mic=True) for m in range(64)]
        assert 85 < min(hoh) and max(hoh) < 125
    card = json.loads(path.with_name(path.name + ".card.json").read_text())
    assert card["generator"] == "nnp tip3p" and card["level_of_theory"] == "flexible TIP3P (classical)"
    assert card["frames"] == 8 and card["atoms_per_frame"] == 192 and card["units"]["energy"] == "eV"
    assert card["timestep_fs"] == 0.5 and card["sampling_interval_steps"] == 10 and card["seed"] == 0
    assert card["arguments"]["n_frames"] == 8 and "generate_tip3p" in card["command"]
    assert len(read_structures(path)) == 8


def test_forces_are_minus_the_energy_gradient(frames):
    atoms = frames[1][-1]
    energy, forces = evaluate_tip3p(atoms)
    assert energy == pytest.approx(atoms.get_potential_energy(), abs=1e-6)  # recorded labels = single point
    np.testing.assert_allclose(forces, atoms.get_forces(), atol=1e-6)
    h = 1e-4
    for atom, axis in [(0, 0), (1, 1), (2, 2), (95, 2), (130, 1), (191, 0)]:
        e = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[atom, axis] += sign * h
            e.append(evaluate_tip3p(moved)[0])
        assert forces[atom, axis] == pytest.approx(-(e[0] - e[1]) / (2 * h), abs=1e-4, rel=1e-4)


def test_extending_a_run_continues_exactly(tmp_path, frames):
    target = tmp_path / "water.extxyz"
    generate_tip3p(target, n_frames=4, **SHORT)
    head = target.read_bytes()
    assert len(ase.io.read(target, ":")) == 4
    with open(target, "a") as handle:  # a frame written before the run was killed, without its state
        ase.io.write(handle, frames[1][4], format="extxyz")
    generate_tip3p(target, n_frames=8, **SHORT)
    assert target.read_bytes().startswith(head)  # frames already written are kept
    assert_same_frames(frames[1], ase.io.read(target, ":"))
    card = json.loads(target.with_name(target.name + ".card.json").read_text())
    assert card["frames"] == 8
    generate_tip3p(target, n_frames=8, **SHORT)  # already complete: nothing to do
    assert len(ase.io.read(target, ":")) == 8
    with pytest.raises(ValueError, match="different parameters"):
        generate_tip3p(target, n_frames=8, seed=1, **SHORT)


def test_killed_generation_resumes_to_the_same_trajectory(tmp_path, frames):
    target = tmp_path / "water.extxyz"
    code = ("from nnp.data.generate.tip3p import generate_tip3p; "
            f"generate_tip3p({str(target)!r}, n_frames=200, interval=10, equilibration_steps=400, progress=False)")
    state = target.with_name(target.name + ".state.json")
    kill_during_generation(code, state, frames=2, timeout=120, poll=0.002)
    assert 2 <= json.loads(state.read_text())["frames"] < 8
    generate_tip3p(target, n_frames=8, **SHORT)
    assert_same_frames(frames[1], ase.io.read(target, ":"))


def test_positions_only_mode(tmp_path):
    path = generate_tip3p(tmp_path / "unlabelled.extxyz", n_frames=2, interval=5, equilibration_steps=50,
                          positions_only=True, progress=False)
    atoms = ase.io.read(path, ":")[0]
    assert atoms.calc is None or "forces" not in atoms.calc.results
    assert len(read_structures(path, require_labels=False)) == 2


def test_bundled_water_reads_with_its_card():
    path = bundled_dataset("water_tip3p_small")
    frames = read_structures(path)
    assert 90 <= len(frames) <= 110 and all(len(a) == 192 for a in frames)
    assert frames[0].get_chemical_symbols()[:3] == ["O", "H", "H"]
    card = json.loads(path.with_name(path.name + ".card.json").read_text())
    assert card["frames"] == len(frames) and card["level_of_theory"] == "flexible TIP3P (classical)"
    assert path.stat().st_size < 2.2e6

"""The default dataset: flexible TIP3P water from LAMMPS, with exact labels and exact resume."""

import json
import os
import signal
import subprocess
import sys
import time

import ase.io
import numpy as np
import pytest

from nnp.data.generate.tip3p import evaluate_tip3p, generate_tip3p


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    path = generate_tip3p(tmp_path_factory.mktemp("tip3p") / "water.extxyz", n_frames=6, interval=10,
                          equilibration_steps=400, progress=False)
    return path, ase.io.read(path, ":")


def test_frames_are_intact_water_with_sane_labels(frames):
    path, atoms_list = frames
    assert len(atoms_list) == 6
    atoms = atoms_list[-1]
    assert atoms.get_chemical_symbols()[:3] == ["O", "H", "H"] and len(atoms) == 192
    assert atoms.pbc.all() and atoms.cell.lengths()[0] == pytest.approx(12.42, abs=0.05)
    oh = [atoms.get_distance(3 * m, 3 * m + k, mic=True) for m in range(64) for k in (1, 2)]
    assert 0.85 < min(oh) and max(oh) < 1.1
    assert -0.5 < atoms.get_potential_energy() / 64 < -0.3  # eV per molecule, ~ -9 kcal/mol
    forces = atoms.get_forces()
    assert np.abs(forces.sum(0)).max() < 1e-3  # no net force in a periodic box
    card = json.loads(path.with_name(path.name + ".card.json").read_text())
    assert card["frames"] == 6 and card["units"]["energy"] == "eV" and card["timestep_fs"] == 0.5


def test_forces_are_minus_the_energy_gradient(frames):
    atoms = frames[1][-1]
    energy, forces = evaluate_tip3p(atoms)
    assert energy == pytest.approx(atoms.get_potential_energy(), abs=1e-6)
    h = 1e-4
    for atom, axis in [(0, 0), (1, 1), (95, 2), (191, 0)]:
        e = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[atom, axis] += sign * h
            e.append(evaluate_tip3p(moved)[0])
        assert forces[atom, axis] == pytest.approx(-(e[0] - e[1]) / (2 * h), abs=2e-3, rel=1e-3)


def test_interrupted_generation_resumes_to_the_same_file(tmp_path, frames):
    reference = frames[0]
    target = tmp_path / "water.extxyz"
    code = ("from nnp.data.generate.tip3p import generate_tip3p; "
            f"generate_tip3p({str(target)!r}, n_frames=6, interval=10, equilibration_steps=400, progress=False)")
    process = subprocess.Popen([sys.executable, "-c", code])
    state = target.with_name(target.name + ".state.json")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if state.exists() and json.loads(state.read_text())["frames"] >= 2:
            break
        time.sleep(0.002)
    assert process.poll() is None, "generation finished before it could be interrupted"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert json.loads(state.read_text())["frames"] < 6
    generate_tip3p(target, n_frames=6, interval=10, equilibration_steps=400, progress=False)
    a, b = ase.io.read(reference, ":"), ase.io.read(target, ":")
    assert len(b) == 6
    for x, y in zip(a, b):
        np.testing.assert_allclose(y.positions, x.positions, atol=1e-6)
        np.testing.assert_allclose(y.get_forces(), x.get_forces(), atol=1e-6)


def test_positions_only_mode(tmp_path):
    path = generate_tip3p(tmp_path / "unlabelled.extxyz", n_frames=2, interval=5, equilibration_steps=50,
                          positions_only=True, progress=False)
    atoms = ase.io.read(path, ":")[0]
    assert atoms.calc is None or "forces" not in atoms.calc.results

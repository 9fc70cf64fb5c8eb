"""GFN2-xTB datasets: valid frames, force labels = -dE/dx, interrupt + resume, cards."""

import hashlib
import json

import ase.io
import numpy as np
import pytest

pytest.importorskip("tblite")

from helpers import kill_during_generation, water_box
from nnp.data.generate.xtb import generate_aspirin_xtb, generate_g2_xtb, relabel_xtb, xtb_calculator
from nnp.data.info import dataset_info


def fd_check(atoms, h=1e-3, n_atoms=2):
    probe = atoms.copy()
    probe.calc = xtb_calculator()
    forces = atoms.get_forces()
    for a in range(n_atoms):
        for axis in range(3):
            e = []
            for sign in (1, -1):
                probe.positions = atoms.positions
                probe.positions[a, axis] += sign * h
                e.append(probe.get_potential_energy())
            assert forces[a, axis] == pytest.approx(-(e[0] - e[1]) / (2 * h), abs=2e-3)


def test_aspirin_frames_are_valid_and_labelled(tmp_path):
    path = generate_aspirin_xtb(tmp_path / "aspirin.extxyz", n_frames=4, progress=False)
    frames = ase.io.read(path, ":")
    assert len(frames) == 4
    assert frames[0].get_chemical_formula() == "C9H8O4"
    energies = [f.get_potential_energy() for f in frames]
    assert np.all(np.isfinite(energies)) and -1200 < min(energies) < max(energies) < -1000  # eV, GFN2 aspirin
    assert len(set(np.round(energies, 6))) == 4  # the MD moves
    fd_check(frames[-1])
    card = json.loads(path.with_name(path.name + ".card.json").read_text())
    assert card["frames"] == 4 and card["timestep_fs"] == 0.5 and card["temperatures_K"] == [500.0]
    assert card["finite_difference_check"]["max_abs_error_eV_per_A"] < 1e-3
    assert "GFN2-xTB" in card["level_of_theory"] and card["units"]["energy"] == "eV"
    assert card["file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert "file matches its card" in dataset_info(str(path))
    frames[0].positions[0, 0] += 1e-4  # a copy changed after its card was written
    ase.io.write(path, frames, format="extxyz")
    assert "WARNING: the file's SHA-256" in dataset_info(str(path))


def test_killed_generation_resumes_to_the_same_frames(tmp_path):
    reference = generate_aspirin_xtb(tmp_path / "straight.extxyz", n_frames=8, progress=False)
    target = tmp_path / "killed.extxyz"
    code = ("import sys; from nnp.data.generate.xtb import generate_aspirin_xtb; "
            f"generate_aspirin_xtb({str(target)!r}, n_frames=8, progress=False)")
    state = target.with_name(target.name + ".state.json")
    kill_during_generation(code, state, frames=3, timeout=120, poll=0.02)
    generate_aspirin_xtb(target, n_frames=8, progress=False)
    a, b = ase.io.read(reference, ":"), ase.io.read(target, ":")
    assert len(a) == len(b) == 8
    for x, y in zip(a, b):  # xTB's SCF starts from a cached guess, so agreement is to SCF precision
        np.testing.assert_allclose(x.positions, y.positions, atol=1e-6)
        np.testing.assert_allclose(x.get_forces(), y.get_forces(), atol=1e-4)


def test_g2_set_is_diverse(tmp_path):
    path = generate_g2_xtb(tmp_path / "g2.extxyz", frames_per_system=1, temperatures=(300.0, 1000.0),
                           max_molecules=4, progress=False)
    frames = ase.io.read(path, ":")
    assert len(frames) == 8
    assert len({f.info["system"] for f in frames}) == 8
    assert len({f.get_chemical_formula() for f in frames}) == 4


def test_periodic_water_relabelled(tmp_path):
    source = tmp_path / "tip3p.extxyz"
    ase.io.write(source, [water_box(seed=k) for k in range(2)], format="extxyz")
    path = relabel_xtb(source, tmp_path / "water-xtb.extxyz", progress=False, stress=True)
    frames = ase.io.read(path, ":")
    assert len(frames) == 2 and frames[0].pbc.all()
    forces = frames[0].get_forces()
    assert np.abs(forces.sum(0)).max() < 1e-3  # periodic: no net force
    fd_check(frames[0], n_atoms=1)
    # the stress label = (1/V) dE/d(strain): one normal and one shear component by finite differences
    stress, volume, h = frames[0].get_stress(voigt=False), frames[0].get_volume(), 1e-4
    probe = frames[0].copy()
    probe.calc = xtb_calculator()
    for a, b in ((0, 0), (1, 2)):
        e = []
        for sign in (1, -1):
            strain = np.eye(3)
            strain[a, b] += sign * h / (1 if a == b else 2)
            strain[b, a] += 0 if a == b else sign * h / 2
            probe.set_cell(frames[0].cell[:] @ strain, scale_atoms=True)
            e.append(probe.get_potential_energy())
        assert stress[a, b] == pytest.approx((e[0] - e[1]) / (2 * h) / volume, abs=1e-5)

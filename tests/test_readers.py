"""Readers round-trip small files written in each public format; malformed files give clear errors."""

import ase.db
import ase.io
import numpy as np
import pytest
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator

from nnp.data.errors import DatasetError
from nnp.data.readers import bundled_dataset, read_structures, write_extxyz

KCAL = units.kcal / units.mol


def labelled_frames(n=3, seed=0):
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        atoms = Atoms("OH2", positions=rng.normal(size=(3, 3)), cell=np.eye(3) * 5, pbc=True)
        atoms.calc = SinglePointCalculator(atoms, energy=float(rng.normal()), forces=rng.normal(size=(3, 3)))
        frames.append(atoms)
    return frames


def test_md17_npz_in_ev(tmp_path):
    rng = np.random.default_rng(0)
    R, z = rng.normal(size=(4, 3, 3)), np.array([8, 1, 1])
    E, F = rng.normal(size=(4, 1)) * 100, rng.normal(size=(4, 3, 3))  # MD17 stores E as (n, 1)
    np.savez(tmp_path / "md17_water.npz", R=R, z=z, E=E, F=F)
    frames = read_structures(tmp_path / "md17_water.npz")
    assert len(frames) == 4 and frames[0].get_chemical_symbols() == ["O", "H", "H"]
    assert frames[2].get_potential_energy() == pytest.approx(E[2, 0] * 0.0433641, rel=1e-5)
    np.testing.assert_allclose(frames[3].get_forces(), F[3] * KCAL)
    np.testing.assert_allclose(frames[1].positions, R[1])


def test_revised_md17_npz_in_ev(tmp_path):
    rng = np.random.default_rng(1)
    coords, charges = rng.normal(size=(2, 3, 3)), np.array([6, 1, 8])
    energies, forces = rng.normal(size=2) * 1000, rng.normal(size=(2, 3, 3))
    np.savez(tmp_path / "rmd17.npz", coords=coords, nuclear_charges=charges, energies=energies, forces=forces,
             old_indices=np.arange(2))
    frames = read_structures(tmp_path / "rmd17.npz")
    assert frames[1].get_potential_energy() == pytest.approx(energies[1] * KCAL)
    np.testing.assert_allclose(frames[0].get_forces(), forces[0] * KCAL)


def test_extxyz_and_ase_db_round_trip(tmp_path):
    frames = labelled_frames()
    write_extxyz(tmp_path / "f.extxyz", frames)
    with ase.db.connect(tmp_path / "f.db") as db:
        for atoms in frames:
            db.write(atoms)
    for name in ("f.extxyz", "f.db"):
        back = read_structures(tmp_path / name)
        assert len(back) == 3
        for a, b in zip(frames, back):
            assert b.get_potential_energy() == pytest.approx(a.get_potential_energy())
            np.testing.assert_allclose(b.get_forces(), a.get_forces(), atol=1e-7)
            np.testing.assert_allclose(b.cell, a.cell)


def test_bundled_dataset_reads():
    frames = read_structures(bundled_dataset())
    assert len(frames) >= 50 and set(frames[0].get_chemical_symbols()) == {"O", "H"}


def test_malformed_files_name_file_frame_and_problem(tmp_path):
    with pytest.raises(DatasetError, match="missing.extxyz: file does not exist"):
        read_structures(tmp_path / "missing.extxyz")
    (tmp_path / "empty.extxyz").write_text("")
    with pytest.raises(DatasetError, match="empty.extxyz: file is empty"):
        read_structures(tmp_path / "empty.extxyz")
    np.savez(tmp_path / "wrong.npz", positions=np.zeros((1, 2, 3)))
    with pytest.raises(DatasetError, match=r"wrong.npz: keys \['positions'\] match no supported"):
        read_structures(tmp_path / "wrong.npz")
    np.savez(tmp_path / "shape.npz", R=np.zeros((2, 3, 3)), z=np.array([1, 1]), E=np.zeros(2), F=np.zeros((2, 3, 3)))
    with pytest.raises(DatasetError, match="shape.npz: positions have shape"):
        read_structures(tmp_path / "shape.npz")
    np.savez(tmp_path / "elem.npz", R=np.zeros((1, 2, 3)), z=np.array([1, 200]), E=np.zeros(1), F=np.zeros((1, 2, 3)))
    with pytest.raises(DatasetError, match="elem.npz: unknown element"):
        read_structures(tmp_path / "elem.npz")
    frames = labelled_frames()
    frames[1].calc.results["forces"][0, 0] = np.nan
    write_extxyz(tmp_path / "nan.extxyz", frames)
    with pytest.raises(DatasetError, match="nan.extxyz: frame 1: forces contain NaN"):
        read_structures(tmp_path / "nan.extxyz")
    frames = labelled_frames()
    frames[2].positions[0, 1] = np.nan
    write_extxyz(tmp_path / "nanpos.extxyz", frames)
    with pytest.raises(DatasetError, match="nanpos.extxyz: frame 2: positions contain NaN"):
        read_structures(tmp_path / "nanpos.extxyz")
    unlabelled = [Atoms("H2", positions=[[0, 0, 0], [0.7, 0, 0]])]
    ase.io.write(tmp_path / "plain.xyz", unlabelled)
    with pytest.raises(DatasetError, match="plain.xyz: frame 0: no energy or forces label"):
        read_structures(tmp_path / "plain.xyz")
    assert len(read_structures(tmp_path / "plain.xyz", require_labels=False)) == 1
    (tmp_path / "trunc.extxyz").write_text("5\nProperties=species:S:1:pos:R:3\nH 0 0 0\n")
    with pytest.raises(DatasetError, match="trunc.extxyz: cannot be read"):
        read_structures(tmp_path / "trunc.extxyz")

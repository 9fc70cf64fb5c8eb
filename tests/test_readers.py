"""Readers round-trip small files written in each public format; malformed files give clear errors."""

import importlib.util
import sqlite3

import ase.db
import ase.io
import numpy as np
import pytest
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator

from nnp.data.errors import DatasetError
from nnp.data.readers import LabelKeys, bundled_dataset, read_structures, write_extxyz, write_md17_npz

KCAL = units.kcal / units.mol


def test_kcal_per_mol_constant():
    assert KCAL == pytest.approx(0.0433641, rel=1e-6)


def labelled_frames(n=3, seed=0, stress=False):
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        atoms = Atoms("OH2", positions=rng.normal(size=(3, 3)) + 2.5, cell=np.eye(3) * 5, pbc=True)
        labels = {"energy": float(rng.normal()), "forces": rng.normal(size=(3, 3))}
        if stress:
            labels["stress"] = rng.normal(size=6) * 0.01
        atoms.calc = SinglePointCalculator(atoms, **labels)
        frames.append(atoms)
    return frames


def md17_arrays(n=4, seed=0):
    rng = np.random.default_rng(seed)
    return {"R": rng.normal(size=(n, 3, 3)), "z": np.array([8, 1, 1], dtype=np.uint8),
            "E": rng.normal(size=(n, 1)) * 100 - 47000, "F": rng.normal(size=(n, 3, 3)) * 30}


def test_md17_npz_in_ev(tmp_path):
    a = md17_arrays()  # as in the sGDML files: E is (n, 1), z uint8, plus metadata strings
    np.savez(tmp_path / "md17_water.npz", **a, name=np.array("water"), theory=np.array("PBE+vdW-TS"))
    frames = read_structures(tmp_path / "md17_water.npz")
    assert len(frames) == 4 and frames[0].get_chemical_symbols() == ["O", "H", "H"]
    for k, atoms in enumerate(frames):
        assert isinstance(atoms.calc, SinglePointCalculator) and not atoms.pbc.any()
        assert atoms.get_potential_energy() == pytest.approx(a["E"][k, 0] * 0.0433641, rel=1e-6)
        np.testing.assert_allclose(atoms.get_forces(), a["F"][k] * KCAL)
        np.testing.assert_allclose(atoms.positions, a["R"][k])
    assert [f.get_potential_energy() for f in read_structures(tmp_path / "md17_water.npz", index="1:3")] == \
        pytest.approx([a["E"][1, 0] * KCAL, a["E"][2, 0] * KCAL])
    assert read_structures(tmp_path / "md17_water.npz", index=-1)[0].get_potential_energy() == \
        pytest.approx(a["E"][3, 0] * KCAL)


def test_md17_npz_writer_round_trip(tmp_path):
    frames = read_structures(bundled_dataset("aspirin_xtb_test_small"), index=":5")
    path = write_md17_npz(tmp_path / "aspirin.npz", frames, name="aspirin")
    with np.load(path) as raw:  # the sGDML layout, in kcal/mol
        assert raw["E"].shape == (5, 1) and raw["z"].dtype == np.uint8 and raw["R"].shape == (5, 21, 3)
        assert raw["E"][0, 0] == pytest.approx(frames[0].get_potential_energy() / KCAL)
    back = read_structures(path)
    for a, b in zip(frames, back):
        assert a.get_chemical_symbols() == b.get_chemical_symbols()
        np.testing.assert_allclose(b.positions, a.positions)
        assert b.get_potential_energy() == pytest.approx(a.get_potential_energy(), rel=1e-12)
        np.testing.assert_allclose(b.get_forces(), a.get_forces(), rtol=1e-12, atol=1e-12)
    water = labelled_frames(2)
    water[1] = water[1][[1, 0, 2]]  # other atom order: not one MD17 molecule
    with pytest.raises(DatasetError, match="frame 1 has other atoms"):
        write_md17_npz(tmp_path / "bad.npz", water)


def test_revised_md17_npz_in_ev(tmp_path):
    rng = np.random.default_rng(1)
    coords, charges = rng.normal(size=(2, 3, 3)), np.array([6, 1, 8])
    energies, forces = rng.normal(size=2) * 1000, rng.normal(size=(2, 3, 3))
    np.savez(tmp_path / "rmd17.npz", coords=coords, nuclear_charges=charges, energies=energies, forces=forces,
             old_indices=np.arange(2), old_energies=energies)
    frames = read_structures(tmp_path / "rmd17.npz")
    assert frames[0].get_chemical_symbols() == ["C", "H", "O"]
    assert frames[1].get_potential_energy() == pytest.approx(energies[1] * KCAL)
    np.testing.assert_allclose(frames[0].get_forces(), forces[0] * KCAL)
    np.testing.assert_allclose(frames[1].positions, coords[1])


def test_extxyz_and_ase_db_round_trip(tmp_path):
    frames = labelled_frames(stress=True)
    write_extxyz(tmp_path / "f.extxyz", frames)
    with ase.db.connect(tmp_path / "f.db") as db:
        for atoms in frames:
            db.write(atoms, tag="x")
    for name in ("f.extxyz", "f.db"):
        back = read_structures(tmp_path / name)
        assert len(back) == 3
        for a, b in zip(frames, back):
            assert isinstance(b.calc, SinglePointCalculator)
            assert b.get_potential_energy() == pytest.approx(a.get_potential_energy())
            np.testing.assert_allclose(b.get_forces(), a.get_forces(), atol=1e-7)
            np.testing.assert_allclose(b.get_stress(), a.get_stress(), atol=1e-7)
            np.testing.assert_allclose(b.positions, a.positions, atol=1e-7)
            np.testing.assert_allclose(b.cell, a.cell)
            assert b.pbc.all()
    assert read_structures(tmp_path / "f.extxyz", index=1)[0].get_potential_energy() == \
        pytest.approx(frames[1].get_potential_energy())


def test_unlabelled_frames_need_require_labels_false(tmp_path):
    ase.io.write(tmp_path / "plain.xyz", [Atoms("H2", positions=[[0, 0, 0], [0.7, 0, 0]])] * 2)
    with pytest.raises(DatasetError, match=r"plain.xyz: frame 0: no energy or forces label.*require_labels=False"):
        read_structures(tmp_path / "plain.xyz")
    frames = read_structures(tmp_path / "plain.xyz", require_labels=False)
    assert len(frames) == 2 and "energy" not in frames[0].calc.results


def test_bundled_dataset_reads():
    frames = read_structures(bundled_dataset())
    assert len(frames) >= 50 and set(frames[0].get_chemical_symbols()) == {"O", "H"}
    with pytest.raises(DatasetError, match="no bundled dataset 'nope'; choose one of: .*water_tip3p_small"):
        bundled_dataset("nope")


def _npz(tmp_path, name, **changes):
    arrays = {**md17_arrays(), **changes}
    np.savez(tmp_path / name, **{k: v for k, v in arrays.items() if v is not None})
    return tmp_path / name


def _extxyz(tmp_path, name, change):
    frames = labelled_frames()
    change(frames)
    return write_extxyz(tmp_path / name, frames)


def _text(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    return tmp_path / name


def _bad_cases():
    nan_pos = lambda fr: fr[2].positions.__setitem__((0, 1), np.nan)  # noqa: E731
    nan_f = lambda fr: fr[1].calc.results["forces"].__setitem__((0, 0), np.nan)  # noqa: E731
    inf_e = lambda fr: fr[1].calc.results.__setitem__("energy", np.inf)  # noqa: E731
    zero_z = lambda fr: fr[0].numbers.__setitem__(0, 0)  # noqa: E731
    nan_e = md17_arrays()["E"].copy()
    nan_e[2, 0] = np.nan
    return {
        "missing": (lambda p: p / "missing.extxyz", "missing.extxyz: file does not exist"),
        "empty": (lambda p: _text(p, "empty.extxyz", ""), "empty.extxyz: file is empty"),
        "directory": (lambda p: p, "is a directory"),
        "truncated extxyz": (lambda p: _text(p, "trunc.extxyz", "5\nProperties=species:S:1:pos:R:3\nH 0 0 0\n"),
                             "trunc.extxyz: frame 0: cannot be read .*truncated"),
        "unknown symbol": (lambda p: _text(p, "sym.extxyz", "1\nProperties=species:S:1:pos:R:3\nXx 0 0 0\n"),
                           "sym.extxyz: frame 0: unknown element symbol 'Xx'"),
        "atomic number 0": (lambda p: _extxyz(p, "z0.extxyz", zero_z), r"z0.extxyz: frame 0: unknown element .*\[0\]"),
        "nan positions": (lambda p: _extxyz(p, "nanpos.extxyz", nan_pos),
                          "nanpos.extxyz: frame 2: positions contain NaN"),
        "nan forces": (lambda p: _extxyz(p, "nanf.extxyz", nan_f), "nanf.extxyz: frame 1: forces contain NaN"),
        "inf energy": (lambda p: _extxyz(p, "infe.extxyz", inf_e), "infe.extxyz: frame 1: energy is NaN or infinite"),
        "npz wrong keys": (lambda p: _npz(p, "wrong.npz", R=None, positions=np.zeros((1, 2, 3))),
                           r"wrong.npz: keys \['E', 'F', 'positions', 'z'\] match no supported .npz format; "
                           r"supported: MD17 with keys R, z, E, F and revised MD17 with keys coords, nuclear_charges"),
        "npz atoms differ": (lambda p: _npz(p, "natoms.npz", z=np.array([8, 1])),
                             "natoms.npz: positions R have shape .* but z lists 2 atoms"),
        "npz forces shape": (lambda p: _npz(p, "fshape.npz", F=np.zeros((4, 3, 2))),
                             r"fshape.npz: forces F have shape \(4, 3, 2\), expected \(4, 3, 3\)"),
        "npz energies count": (lambda p: _npz(p, "ecount.npz", E=np.zeros((3, 1))),
                               r"ecount.npz: E has shape \(3, 1\), expected \(4,\)"),
        "npz element 200": (lambda p: _npz(p, "elem.npz", z=np.array([8, 1, 200])),
                            r"elem.npz: unknown element \(atomic numbers \[200\]"),
        "npz nan energy": (lambda p: _npz(p, "nane.npz", E=nan_e), "nane.npz: frame 2: energy is NaN"),
        "npz truncated": (lambda p: _text(p, "cut.npz", "PK\x03\x04 not really a zip"),
                          "cut.npz: not a readable .npz file"),
        "db corrupt": (lambda p: _text(p, "bad.db", "this is not sqlite " * 20), "bad.db: not a readable ASE database"),
        "db empty": (lambda p: _empty_db(p / "none.db"), "none.db: holds no frames"),
        "index out of range": (lambda p: _npz(p, "few.npz"), "few.npz: index 10 is out of range; the file holds 4"),
    }


def _empty_db(path):
    with ase.db.connect(path) as db:
        db.write(Atoms("H"))
    with sqlite3.connect(path) as con:
        con.execute("DELETE FROM systems")
    return path


@pytest.mark.parametrize("case", list(_bad_cases()))
def test_malformed_input_names_file_frame_and_problem(tmp_path, case):
    make, message = _bad_cases()[case]
    path = make(tmp_path)
    with pytest.raises(DatasetError, match=message):
        read_structures(path, index=10 if case == "index out of range" else ":")


def test_lammps_data_files_as_structures(tmp_path):
    """A LAMMPS data file is a structure: elements from its Masses, or from ``type_symbols`` in type order; a file
    whose types name no element (no Masses, a deuterium mass) is an error asking for ``type_symbols``, never a guess."""
    from nnp.lammps import read_lammps_data, write_lammps_data

    water = Atoms("OH2OH2", positions=[[1, 1, 1], [1.9, 1.2, 1], [0.8, 1.9, 1.1], [4, 4, 4], [4.9, 4, 4.2],
                                       [3.8, 4.9, 4]], cell=[7, 7, 7], pbc=True)
    write_lammps_data(water, tmp_path / "water.data", ["O", "H"])
    back = read_structures(tmp_path / "water.data", require_labels=False)
    assert len(back) == 1 and back[0].get_chemical_symbols() == water.get_chemical_symbols()
    np.testing.assert_allclose(back[0].positions, water.positions, atol=1e-8)
    np.testing.assert_allclose(back[0].cell[:], water.cell[:])
    # written by LAMMPS-style tools in atom style full, with no Masses section (set in the deck instead)
    ase.io.write(tmp_path / "bare.data", water, format="lammps-data", atom_style="full", masses=False,
                 specorder=["H", "O"])
    with pytest.raises(ValueError, match="no Masses section.*type_symbols"):
        read_structures(tmp_path / "bare.data", require_labels=False)
    assert read_lammps_data(tmp_path / "bare.data", ["H", "O"]).get_chemical_symbols() == water.get_chemical_symbols()
    with pytest.raises(ValueError, match="must name an element for each of the atom types 1-2"):
        read_lammps_data(tmp_path / "bare.data", ["H"])
    heavy = water.copy()
    heavy.set_masses([16.0 if z == 8 else 2.014 for z in heavy.numbers])  # D2O
    ase.io.write(tmp_path / "heavy.data", heavy, format="lammps-data", atom_style="atomic", masses=True,
                 specorder=["O", "H"])
    with pytest.raises(ValueError, match="type 2 has mass 2.014.*type_symbols"):
        read_structures(tmp_path / "heavy.data", require_labels=False)
    assert read_lammps_data(tmp_path / "heavy.data", ["O", "H"]).get_chemical_symbols() == water.get_chemical_symbols()
    with pytest.raises(ValueError, match="type 1 has the mass of O .* type_symbols names it H"):
        read_lammps_data(tmp_path / "water.data", ["H", "O"])  # the pair_coeff order swapped


def mace_style_extxyz(path, frames):
    """frames written the way MACE datasets are: REF_energy and a 9-number REF_stress in the comment line, a
    REF_forces column, no ASE labels."""
    lines = []
    for atoms in frames:
        cell = " ".join(f"{v:.10f}" for v in atoms.cell.array.ravel())
        stress = " ".join(f"{v:.10f}" for v in atoms.get_stress(voigt=False).ravel())
        lines += [str(len(atoms)), f'Lattice="{cell}" Properties=species:S:1:pos:R:3:REF_forces:R:3 '
                  f'REF_energy={atoms.get_potential_energy():.10f} REF_stress="{stress}" pbc="T T T"']
        for symbol, position, force in zip(atoms.get_chemical_symbols(), atoms.positions, atoms.get_forces()):
            lines.append(f"{symbol} " + " ".join(f"{v:.10f}" for v in (*position, *force)))
    path.write_text("\n".join(lines) + "\n")
    return path


MACE_KEYS = LabelKeys(energy="REF_energy", forces="REF_forces", stress="REF_stress")


def test_labels_under_other_keys(tmp_path):
    """MACE's REF_energy / REF_forces / REF_stress (and an ASE database with the energy among its key-value pairs and
    the forces in its data) read with LabelKeys; without them, the error names the keys the frame holds."""
    frames = labelled_frames(stress=True)
    path = mace_style_extxyz(tmp_path / "mace.extxyz", frames)
    with pytest.raises(DatasetError, match=r"frame 0: no energy or forces label.*info 'REF_energy', per-atom "
                                           r"'REF_forces'.*--energy-key"):
        read_structures(path)
    with ase.db.connect(tmp_path / "custom.db") as db:
        for atoms in frames:
            db.write(Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=True),
                     dft_energy=atoms.get_potential_energy(), data={"dft_forces": atoms.get_forces()})
    read_back = {"extxyz": read_structures(path, keys=MACE_KEYS),
                 "db": read_structures(tmp_path / "custom.db", keys=LabelKeys(energy="dft_energy", forces="dft_forces"))}
    for kind, back in read_back.items():
        for a, b in zip(frames, back):
            assert b.get_potential_energy() == pytest.approx(a.get_potential_energy(), abs=1e-9)
            np.testing.assert_allclose(b.get_forces(), a.get_forces(), atol=1e-9)
            if kind == "extxyz":
                np.testing.assert_allclose(b.get_stress(), a.get_stress(), atol=1e-9)
            assert "REF_forces" not in b.arrays  # the label, not a second copy
    write_md17_npz(tmp_path / "m.npz", [frames[0]])
    with pytest.raises(DatasetError, match="MD17 files have fixed keys"):
        read_structures(tmp_path / "m.npz", keys=MACE_KEYS)


def test_ani1x_and_spice_hdf5(tmp_path):
    """Small files in the two HDF5 layouts (written with h5py as the released files are): ANI-1x (Å, Hartree,
    Hartree/Å, a group per formula, a second level of theory with a missing value) and SPICE (bohr, Hartree, the
    gradient, SMILES with a charge), read in eV, Å and eV/Å."""
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(3)
    positions = rng.normal(size=(2, 3, 3)) + 2.0                 # Å
    energies, forces = np.array([-76.4, -76.3]), rng.normal(size=(2, 3, 3)) * 0.01   # Hartree, Hartree/Å
    with h5py.File(tmp_path / "ani1x.h5", "w") as f:
        for formula in ("H2O1", "H2O1b", "H2O1c/rxn0001"):  # Transition1x nests a group per reaction
            g = f.create_group(formula)
            g["atomic_numbers"] = np.array([8, 1, 1], dtype=np.uint8)
            g["coordinates"] = positions
            g["wb97x_dz.energy"], g["wb97x_dz.forces"] = energies, forces
            g["ccsd(t)_cbs.energy"] = np.array([-76.2, np.nan])
    frames = read_structures(tmp_path / "ani1x.h5")
    assert [a.info["group"] for a in frames] == ["H2O1"] * 2 + ["H2O1b"] * 2 + ["H2O1c/rxn0001"] * 2
    assert frames[1].info["conformation"] == 1
    assert frames[1].get_chemical_symbols() == ["O", "H", "H"]
    np.testing.assert_allclose(frames[1].positions, positions[1])
    assert frames[1].get_potential_energy() == pytest.approx(energies[1] * units.Hartree)
    np.testing.assert_allclose(frames[1].get_forces(), forces[1] * units.Hartree)
    with pytest.raises(DatasetError, match=r"ani1x.h5: frame 1: energy is NaN"):
        read_structures(tmp_path / "ani1x.h5", keys=LabelKeys(energy="ccsd(t)_cbs.energy"))
    with pytest.raises(DatasetError, match=r"ani1x.h5: frame 0: no energy label"):
        read_structures(tmp_path / "ani1x.h5", keys=LabelKeys(energy="wb97x_tz.energy"))
    assert len(read_structures(tmp_path / "ani1x.h5", keys=LabelKeys(energy="wb97x_tz.energy"),
                               require_labels=False)) == 6

    gradient = rng.normal(size=(2, 3, 3)) * 0.01                 # Hartree/bohr
    with h5py.File(tmp_path / "spice.hdf5", "w") as f:
        for name, smiles in (("water", "[H]O[H]"), ("hydroxide", "[H][O-]")):
            g = f.create_group(name)
            g["atomic_numbers"] = np.array([8, 1, 1] if name == "water" else [8, 1], dtype=np.int16)
            n = len(g["atomic_numbers"])
            g["conformations"] = (positions[:, :n] / units.Bohr).astype(np.float32)
            g["dft_total_energy"], g["dft_total_gradient"] = energies, gradient[:, :n]
            g["smiles"] = np.array([smiles.encode()])
            g["subset"] = np.array([b"test"])
    frames = read_structures(tmp_path / "spice.hdf5")  # groups in HDF5's (alphabetical) order
    assert [a.info["group"] for a in frames] == ["hydroxide"] * 2 + ["water"] * 2
    if importlib.util.find_spec("rdkit"):
        assert [a.info["charge"] for a in frames] == [-1, -1, 0, 0]
    water = frames[2]
    np.testing.assert_allclose(water.positions, positions[0], atol=1e-5)   # stored as float32 bohr
    assert water.get_potential_energy() == pytest.approx(energies[0] * units.Hartree)
    np.testing.assert_allclose(water.get_forces(), -gradient[0] * units.Hartree / units.Bohr)

    with h5py.File(tmp_path / "empty.h5", "w") as f:
        f.create_group("nothing")
    with pytest.raises(DatasetError, match="holds no conformations"):
        read_structures(tmp_path / "empty.h5")

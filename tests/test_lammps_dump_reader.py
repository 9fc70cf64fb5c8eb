"""LAMMPS dump + log files as training data: the same physics in metal and real units."""

import numpy as np
import pytest

from nnp.data.errors import DatasetError
from nnp.data.lammps_dump import read_lammps_dump
from nnp.lammps import make_lammps

EPSILON_EV = 0.0104  # argon-like LJ


def run_lj(tmp_path, units):
    epsilon = EPSILON_EV if units == "metal" else EPSILON_EV / 0.0433641043
    timestep = 0.002 if units == "metal" else 2.0
    lmp = make_lammps(["-log", str(tmp_path / f"log.{units}"), "-screen", "none"], load_plugin=False)
    for line in (
        f"units {units}", "atom_style atomic", "lattice fcc 5.26", "region box block 0 2 0 2 0 2",
        "create_box 2 box", "create_atoms 1 box", "set type 1 type/fraction 2 0.25 7", "mass * 39.95",
        "pair_style lj/cut 8.0", f"pair_coeff * * {epsilon} 3.4", "velocity all create 60 1 loop geom",
        f"timestep {timestep}", "fix nve all nve", "thermo 5", "thermo_style custom step temp pe",
        f"dump d all custom 5 {tmp_path}/dump.{units} id type x y z fx fy fz",
        "dump_modify d format float %.10g", "run 20",
    ):
        lmp.command(line)
    lmp.close()
    return tmp_path / f"dump.{units}", tmp_path / f"log.{units}"


def test_metal_and_real_runs_give_the_same_data_in_ev(tmp_path):
    frames = {}
    for units in ("metal", "real"):
        dump, log = run_lj(tmp_path, units)
        frames[units] = read_lammps_dump(dump, ["Ar", "Kr"], log, units=units)
    assert len(frames["metal"]) == 5
    for a, b in zip(frames["metal"], frames["real"]):
        assert a.get_chemical_symbols() == b.get_chemical_symbols()
        assert set(a.get_chemical_symbols()) == {"Ar", "Kr"}
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), rel=1e-6)
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), atol=1e-6)
        assert np.abs(a.get_forces().sum(0)).max() < 1e-8


def test_missing_energies_and_types_are_clear_errors(tmp_path):
    dump, log = run_lj(tmp_path, "metal")
    with pytest.raises(DatasetError, match="element names"):
        read_lammps_dump(dump, ["Ar"], log)
    log.write_text("no thermo here\n")
    with pytest.raises(DatasetError, match="no PotEng"):
        read_lammps_dump(dump, ["Ar", "Kr"], log)
    with pytest.raises(DatasetError, match="units"):
        read_lammps_dump(dump, ["Ar", "Kr"], units="lj")

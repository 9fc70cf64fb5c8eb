"""pair_style nnp under the LAMMPS commands users put around `run`: rerun, restart files, minimize, and new
positions set from a Python driver between runs."""

import numpy as np
import pytest
from ase.build import molecule
from ase.optimize import BFGS

from helpers import small_model, water_box
from lammps_helpers import lammps_atoms, lammps_results, python_results, run_deck, run_lammps
from nnp.calculator import NNPCalculator
from nnp.export import export_model
from nnp.lammps import make_lammps, nnp_lines, system_lines, write_lammps_data
from nnp.lammps.state import by_id


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return export_model(small_model(cutoff=3.0, layers=3), tmp_path_factory.mktemp("m") / "egnn.nnp.pt")


def read_column(path) -> np.ndarray:
    return np.array([float(line) for line in path.read_text().splitlines() if not line.startswith("#")])


@pytest.mark.parametrize("ranks", [1, pytest.param(2, marks=pytest.mark.mpi)])
def test_rerun_gives_the_energies_of_the_run(model_file, tmp_path, ranks):
    """``rerun`` of a dump written during a run: every snapshot's energy is the run's. Each snapshot is a new
    setup (atoms replaced, wrapped, neighbour list built) that leaves LAMMPS's build counter at 0 as the one
    before did: the pair style must still see a new list (it did not: wrong energies on some snapshots)."""
    data = tmp_path / "water.data"
    write_lammps_data(water_box(n_side=3, seed=4), data, ["H", "O"])
    deck = "\n".join(system_lines(data) + nnp_lines(model_file, ["H", "O"]) + [
        "neighbor 1.0 bin", "velocity all create 600 1", "timestep 0.0005", "fix nve all nve",
        "variable e equal pe",
        "fix run all print 10 '${e}' file run.txt screen no",
        "dump d all custom 10 traj.dump id type x y z", "dump_modify d format float %.17g",
        "run 200",
        "unfix nve", "unfix run", "undump d",
        "fix rerun all print 10 '${e}' file rerun.txt screen no",
        "rerun traj.dump dump x y z",
    ]) + "\n"
    done = run_deck(deck, tmp_path, ranks)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ran, reran = read_column(tmp_path / "run.txt"), read_column(tmp_path / "rerun.txt")
    assert len(ran) == len(reran) == 21
    np.testing.assert_allclose(reran, ran, rtol=0, atol=1e-9)


def test_positions_set_between_runs_are_evaluated(model_file, tmp_path):
    """A Python driver (ASE's LAMMPSlib style) writes new positions and calls ``run 0``: the result is the
    model's on those positions. Here an H and an O trade places: the same set of positions and ghost count, a
    different configuration, so a graph kept from the call before would give the old energy."""
    atoms = water_box(seed=10)
    lmp, _ = run_lammps(atoms, model_file, tmp_path, ["H", "O"])
    n = len(atoms)
    symbols = np.array(atoms.get_chemical_symbols())
    first_h, first_o = int(np.flatnonzero(symbols == "H")[0]), int(np.flatnonzero(symbols == "O")[0])
    for swap in (True, False, True):
        positions = atoms.positions.copy()
        if swap:
            positions[[first_h, first_o]] = positions[[first_o, first_h]]
        ids = lmp.numpy.extract_atom("id")[:n]
        lmp.numpy.extract_atom("x")[:n] = positions[ids - 1]
        lmp.command("run 0")
        expected = python_results(model_file, lammps_atoms(lmp, ["H", "O"]))
        got = lammps_results(lmp)
        assert got["energy"] == pytest.approx(float(expected["energy"]), abs=1e-9)
        np.testing.assert_allclose(got["forces"], expected["forces"], atol=1e-9)
    lmp.close()


def test_a_restart_file_continues_the_run(model_file, tmp_path):
    """``write_restart`` in the middle of NVE, then ``read_restart`` and pair_style/pair_coeff again (the pair
    style keeps nothing in restart files): the same trajectory as the run that went on."""
    data = tmp_path / "water.data"
    write_lammps_data(water_box(seed=2), data, ["H", "O"])
    restart = tmp_path / "half.restart"
    lmp = make_lammps()
    for line in system_lines(data) + nnp_lines(model_file, ["H", "O"]) + [
            "neighbor 1.0 bin", "velocity all create 300 1", "timestep 0.0005", "fix nve all nve",
            "run 40", f"write_restart {restart}", "run 40"]:
        lmp.command(line)
    expected_x, expected_energy = by_id(lmp, "x"), lmp.get_thermo("pe")
    lmp.close()
    lmp = make_lammps()
    for line in system_lines(restart, restart=True) + nnp_lines(model_file, ["H", "O"]) + [
            "neighbor 1.0 bin", "timestep 0.0005", "fix nve all nve", "run 40"]:
        lmp.command(line)
    assert lmp.extract_global("ntimestep") == 80
    np.testing.assert_allclose(by_id(lmp, "x"), expected_x, rtol=0, atol=1e-10)
    assert lmp.get_thermo("pe") == pytest.approx(expected_energy, abs=1e-9)
    lmp.close()


def test_minimize_finds_the_minimum_ase_finds(tmp_path):
    """LAMMPS's conjugate gradients (line searches on the energy, so energy and forces must agree) and ASE's
    BFGS on the same bundled model from the same distorted ethanol reach the same minimum."""
    elements = ["C", "H", "O"]
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=1)
    atoms.center(vacuum=6.0)
    atoms.pbc = False
    data = tmp_path / "ethanol.data"
    write_lammps_data(atoms, data, elements)
    lmp = make_lammps()
    for line in system_lines(data, "f f f") + nnp_lines("organic-xtb", elements) + [
            "min_style cg", "minimize 0 1e-6 2000 20000"]:
        lmp.command(line)
    assert lmp.get_thermo("fmax") < 1e-5
    relaxed = atoms.copy()
    relaxed.calc = NNPCalculator("organic-xtb")
    assert BFGS(relaxed, logfile=None).run(fmax=1e-4, steps=500)
    assert lmp.get_thermo("pe") == pytest.approx(relaxed.get_potential_energy(), abs=1e-6)
    assert lmp.get_thermo("pe") < NNPCalculator("organic-xtb").get_potential_energy(atoms) - 0.05  # it moved
    np.testing.assert_allclose(lammps_atoms(lmp, elements).get_all_distances(), relaxed.get_all_distances(),
                               atol=1e-3)
    lmp.close()


def test_atom_swap_monte_carlo_sees_the_swapped_types(model_file, tmp_path):
    """``fix atom/swap`` swaps two atoms' types and asks for the energy without rebuilding the neighbour list.
    At 1 K with the atoms held still only swaps that lower the energy may be accepted: the energy after every
    step is at most the one before, some swaps are refused, and the end state is the model's."""
    lmp, _ = run_lammps(water_box(seed=10), model_file, tmp_path, ["H", "O"])
    energies = tmp_path / "mc.txt"
    for line in ("variable e equal pe", "fix mc all atom/swap 1 1 29494 1.0 types 1 2",
                 f"fix print all print 1 '${{e}}' file {energies} screen no", "run 30"):
        lmp.command(line)
    attempts, accepted = (lmp.numpy.extract_fix("mc", 0, 1, k) for k in (0, 1))
    energy = read_column(energies)
    assert attempts == 30 and 0 < accepted < attempts
    assert np.diff(energy).max() <= 1e-9 and energy[-1] < energy[0]
    assert lammps_results(lmp)["energy"] == pytest.approx(
        float(python_results(model_file, lammps_atoms(lmp, ["H", "O"]))["energy"]), abs=1e-9)
    lmp.close()

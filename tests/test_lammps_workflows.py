"""pair_style nnp under the LAMMPS commands and inputs users put around `run`: rerun, restart files, minimize,
Monte Carlo type swaps, positions set from a Python driver between runs, and bonded data files."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.optimize import BFGS

from helpers import small_model, water_box
from lammps_helpers import final_thermo, lammps_atoms, lammps_results, python_results, run_deck, run_lammps
from nnp.calculator import NNPCalculator
from nnp.data.generate.tip3p import box_length, initial_water, write_data_file
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


def bonded_water_lines(tmp_path, special: str, pair: list[str]) -> list[str]:
    """8 water molecules from a TIP3P data file (atom_style full, O-H bonds, H-O-H angles; O type 1, H type 2)."""
    data = tmp_path / "bonded.data"
    write_data_file(initial_water(8, box_length(8, 0.997), seed=0), data)
    return ["units metal", "atom_style full", "atom_modify map yes", f"read_data {data}", "bond_style zero",
            "bond_coeff 1", "angle_style zero", "angle_coeff 1", special] + pair + ["run 0"]


def test_bonded_pairs_left_out_by_special_bonds_are_an_error(model_file, tmp_path):
    """LAMMPS's default special_bonds (weight 0) takes bonded pairs out of the neighbour list: an error naming the
    fix. With weight 1 the model sees every pair: the energy of the same atoms without bonds."""
    pair = ["pair_style nnp", f"pair_coeff * * {model_file} O H"]
    lmp = make_lammps()
    with pytest.raises(Exception, match=r"special_bonds leaves 1-2 bonded pairs.*special_bonds lj/coul 1.0 1.0 1.0"):
        for line in bonded_water_lines(tmp_path, "special_bonds lj/coul 0.0 0.0 0.0", pair):
            lmp.command(line)
    lmp.close()
    lmp = make_lammps()
    for line in bonded_water_lines(tmp_path, "special_bonds lj/coul 1.0 1.0 1.0", pair):
        lmp.command(line)
    held = lammps_atoms(lmp, ["O", "H"])
    assert lmp.get_thermo("pe") == pytest.approx(float(python_results(model_file, held)["energy"]), abs=1e-9)
    lmp.close()


def test_hybrid_keeps_bonded_pairs_for_the_model_and_excludes_them_for_lj(model_file, tmp_path):
    """The documented hybrid recipe: a tiny non-zero global weight and the classical style's own weight 0. The
    total is the model's energy of all pairs plus lj/cut with its bonded pairs excluded."""
    def energy(special: str, pair: list[str]) -> float:
        lmp = make_lammps()
        for line in bonded_water_lines(tmp_path, special, pair):
            lmp.command(line)
        value = lmp.get_thermo("pe")
        lmp.close()
        return value

    lj = ["pair_style lj/cut 3.0", "pair_coeff * * 0.01 1.0"]
    nnp = ["pair_style nnp", f"pair_coeff * * {model_file} O H"]
    hybrid = ["pair_style hybrid/overlay nnp lj/cut 3.0", f"pair_coeff * * nnp {model_file} O H",
              "pair_coeff * * lj/cut 0.01 1.0", "pair_modify pair lj/cut special lj/coul 0.0 0.0 0.0"]
    lj_excluded, lj_all = energy("special_bonds lj/coul 0.0 0.0 0.0", lj), energy("special_bonds lj/coul 1 1 1", lj)
    assert abs(lj_all - lj_excluded) > 1e-3  # the exclusions matter for lj/cut here
    total = energy("special_bonds lj/coul 1e-10 1e-10 1e-10", hybrid)
    assert total == pytest.approx(energy("special_bonds lj/coul 1 1 1", nnp) + lj_excluded, abs=1e-9)


def test_zbl_overlay_adds_lammps_zbl_only_under_its_outer_distance(model_file, tmp_path):
    """``nnp_lines(zbl=(inner, outer))``: the model plus LAMMPS's own ``pair_style zbl`` for every element pair,
    energy and forces the sum of the two alone; with no pair under ``outer`` it is the model alone. One hydrogen
    0.4 Å from another's puts ZBL at several eV."""
    box = water_box(seed=5)
    hydrogens = np.flatnonzero(box.numbers == 1)
    close = box.copy()
    close.positions[hydrogens[-1]] = close.positions[hydrogens[0]] + [0.4, 0.0, 0.0]

    def evaluate(atoms, pair_lines):
        data = tmp_path / "box.data"
        write_lammps_data(atoms, data, ["H", "O"])
        lmp = make_lammps()
        for line in system_lines(data) + pair_lines + ["run 0"]:
            lmp.command(line)
        energy, forces = lmp.get_thermo("pe"), by_id(lmp, "f")
        lmp.close()
        return energy, forces

    alone = ["pair_style zbl 0.5 0.8", "pair_coeff 1 1 1 1", "pair_coeff 1 2 1 8", "pair_coeff 2 2 8 8"]
    assert nnp_lines(model_file, ["H", "O"], zbl=(0.5, 0.8)) == [
        "pair_style hybrid/overlay nnp zbl 0.5 0.8", f"pair_coeff * * nnp {model_file} H O",
        "pair_coeff 1 1 zbl 1 1", "pair_coeff 1 2 zbl 1 8", "pair_coeff 2 2 zbl 8 8"]
    for atoms, zbl_energy in ((box, (0.0, 0.0)), (close, (3.0, 30.0))):
        e_model, f_model = evaluate(atoms, nnp_lines(model_file, ["H", "O"]))
        e_zbl, f_zbl = evaluate(atoms, alone)
        e_sum, f_sum = evaluate(atoms, nnp_lines(model_file, ["H", "O"], zbl=(0.5, 0.8)))
        assert zbl_energy[0] <= e_zbl <= zbl_energy[1]
        assert e_sum == pytest.approx(e_model + e_zbl, abs=1e-9)
        np.testing.assert_allclose(f_sum, f_model + f_zbl, atol=1e-9)
    with pytest.raises(ValueError, match="0 < inner < outer"):
        nnp_lines(model_file, ["H", "O"], zbl=(0.8, 0.5))


def test_neighbour_exclusions_warn(model_file, tmp_path):
    """``neigh_modify exclude`` is the user's choice, but for a many-body model it changes more than the excluded
    pairs: a warning says so."""
    data = tmp_path / "water.data"
    write_lammps_data(water_box(seed=3), data, ["H", "O"])
    deck = "\n".join(system_lines(data) + nnp_lines(model_file, ["H", "O"])
                     + ["neigh_modify exclude type 2 2", "run 0"]) + "\n"
    done = run_deck(deck, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "neigh_modify exclude takes pairs out of the model's graph" in done.stdout + done.stderr


@pytest.mark.parametrize("ranks", [1, pytest.param(2, marks=pytest.mark.mpi)])
def test_two_models_under_hybrid_each_see_their_own_atoms(model_file, tmp_path, ranks):
    """``pair_style hybrid nnp nnp``: two model files on two sets of atom types (two interpenetrating water
    boxes, types 1-2 and 3-4, no interaction between them): the energy is each model's on its own box, on one
    rank and with halo exchange on two (each instance exchanges its own node features)."""
    second = export_model(small_model(cutoff=3.0, layers=2, seed=5), tmp_path / "second.nnp.pt")
    first_box = water_box(seed=10)
    second_box = first_box.copy()
    second_box.positions += [0.5, 1.2, 0.7]
    stand_in = {"H": "Li", "O": "Be"}  # types 3 and 4 in the data file, mapped back to H and O by pair_coeff
    both = Atoms(first_box.get_chemical_symbols() + [stand_in[s] for s in second_box.get_chemical_symbols()],
                 positions=np.vstack([first_box.positions, second_box.positions]), cell=first_box.cell, pbc=True)
    data = tmp_path / "two.data"
    write_lammps_data(both, data, ["H", "O", "Li", "Be"])
    deck = "\n".join(system_lines(data) + [
        "mass 3 1.008", "mass 4 15.999", "pair_style hybrid nnp nnp",
        f"pair_coeff * * nnp 1 {model_file} H O NULL NULL", f"pair_coeff * * nnp 2 {second} NULL NULL H O",
        "pair_coeff 1*2 3*4 none", "thermo_style custom step pe", "thermo_modify format float %20.15g",
        "run 0"]) + "\n"
    done = run_deck(deck, tmp_path, ranks)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    expected = float(python_results(model_file, first_box)["energy"]) + float(python_results(second, second_box)["energy"])
    assert final_thermo(done.stdout, "PotEng") == pytest.approx(expected, abs=1e-9)


@pytest.mark.mpi
def test_bonded_pairs_error_stops_every_rank(model_file, tmp_path):
    """On two ranks the special_bonds error stops the run, no rank waits: checked on every rank before the first
    force call and reduced over them, so LAMMPS's collective error (``ERROR:``, printed once by rank 0) stops it,
    not one rank's abort racing the other's output (``ERROR on proc``: the message was lost once under load)."""
    deck = "\n".join(bonded_water_lines(tmp_path, "", ["pair_style nnp", f"pair_coeff * * {model_file} O H"])) + "\n"
    done = run_deck(deck, tmp_path, ranks=2, timeout=120)
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "ERROR: pair_style nnp: special_bonds leaves 1-2 bonded pairs" in output, output[-3000:]
    assert "ERROR on proc" not in output


def test_rerun_with_an_ensemble_writes_the_runs_deviation(model_file, tmp_path):
    """The model deviation of an existing trajectory (DP-GEN's ``dp model-devi``): ``rerun`` of the dump with
    ``pair_style nnp ensemble`` writes the same model_devi.out rows as the run that wrote the dump."""
    members = [export_model(small_model(cutoff=3.0, layers=3, seed=s), tmp_path / f"m{s}.nnp.pt") for s in (1, 2)]
    data = tmp_path / "water.data"
    write_lammps_data(water_box(seed=4), data, ["H", "O"])
    ensemble = f"ensemble {members[0]} {members[1]} out_freq 10 out_file"
    deck = "\n".join(system_lines(data) + nnp_lines(model_file, ["H", "O"], f"{ensemble} run_devi.out") + [
        "velocity all create 600 1", "timestep 0.0005", "fix nve all nve",
        "dump d all custom 10 traj.dump id type x y z", "dump_modify d format float %.17g", "run 100",
        "unfix nve", "undump d"] + nnp_lines(model_file, ["H", "O"], f"{ensemble} rerun_devi.out")
        + ["rerun traj.dump dump x y z"]) + "\n"
    done = run_deck(deck, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ran, reran = (np.loadtxt(tmp_path / name) for name in ("run_devi.out", "rerun_devi.out"))
    assert ran.shape == reran.shape == (11, 8)
    np.testing.assert_allclose(reran, ran, rtol=0, atol=1e-9)

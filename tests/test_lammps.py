"""pair_style nnp inside real LAMMPS: agreement with Python, MPI, finite differences, units, bad input."""

import re

import numpy as np
import pytest
import torch
from ase import Atoms

from helpers import ALL_KINDS, small_model, triclinic_water, water_box, water_cluster
from lammps_helpers import (
    final_thermo,
    lammps_results,
    python_results,
    read_dump_forces,
    run_deck,
    run_lammps,
)
from nnp.export import export_model
from nnp.lammps import write_lammps_data

TOL = 1e-10


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return export_model(small_model(cutoff=3.0, layers=3), tmp_path_factory.mktemp("m") / "egnn.nnp.pt")


SYSTEMS = {
    "periodic_water": (lambda: water_box(seed=10), "p p p"),
    "triclinic": (lambda: triclinic_water(11), "p p p"),
    "small_box": (lambda: Atoms("OHH", positions=[[0, 0, 0], [0.96, 0, 0], [-0.2, 0.9, 0.1]], cell=np.eye(3) * 2.2,
                                pbc=True), "p p p"),
    "molecule": (lambda: water_cluster(12), "s s s"),
    "slab": (lambda: water_box(seed=13), "p p f"),  # a surface: periodic in x and y only
    "wire": (lambda: water_box(seed=14), "f s p"),
}


def assert_agree(lmp_out, py_out, tol=TOL):
    assert lmp_out["energy"] == pytest.approx(float(py_out["energy"]), abs=tol * max(1, len(py_out["forces"])))
    np.testing.assert_allclose(lmp_out["atom_energy"], py_out["atom_energy"], atol=tol)
    np.testing.assert_allclose(lmp_out["forces"], py_out["forces"], atol=tol)
    np.testing.assert_allclose(lmp_out["virial_voigt"], py_out["virial_voigt"], atol=tol * 10)
    np.testing.assert_allclose(lmp_out["atom_virial_voigt"], py_out["atom_virial_voigt"], atol=tol)


@pytest.mark.parametrize("system", list(SYSTEMS))
def test_lammps_equals_python(model_file, tmp_path, system):
    make, boundary = SYSTEMS[system]
    lmp, atoms = run_lammps(make(), model_file, tmp_path, ["H", "O"], boundary=boundary)
    assert_agree(lammps_results(lmp), python_results(model_file, atoms))
    lmp.close()


@pytest.mark.parametrize("units", ["metal", "real"])
def test_centroid_stress_is_the_models_asymmetric_atom_virial(model_file, tmp_path, units):
    """compute centroid/stress/atom (Green-Kubo heat flux): the nine components xx yy zz xy xz yz yx zx zy are
    the model's per-atom virial r_a F_b, unsymmetrised; their symmetric part is compute stress/atom."""
    from lammps_helpers import NKTV2P
    from nnp.units import KCAL_PER_MOL_PER_EV

    lmp, atoms = run_lammps(triclinic_water(11), model_file, tmp_path, ["H", "O"], units=units,
                            extra=["compute cs all centroid/stress/atom NULL pair"])
    n = lmp.get_natoms()
    order = np.argsort(lmp.numpy.extract_atom("id")[:n])
    to_ev = 1.0 if units == "metal" else 1.0 / KCAL_PER_MOL_PER_EV
    centroid = -np.array(lmp.numpy.extract_compute("cs", 1, 2)[:n][order]) / NKTV2P[units] * to_ev
    w = python_results(model_file, atoms)["atom_virial"]
    expected = np.stack([w[:, 0, 0], w[:, 1, 1], w[:, 2, 2], w[:, 0, 1], w[:, 0, 2], w[:, 1, 2],
                         w[:, 1, 0], w[:, 2, 0], w[:, 2, 1]], 1)
    assert np.abs(expected[:, 3:6] - expected[:, 6:9]).max() > 1e-6  # the test can see a transpose
    np.testing.assert_allclose(centroid, expected, atol=TOL)
    symmetric = np.concatenate([centroid[:, :3], 0.5 * (centroid[:, 3:6] + centroid[:, 6:9])], 1)
    np.testing.assert_allclose(symmetric, lammps_results(lmp, units)["atom_virial_voigt"] * to_ev, atol=TOL)
    lmp.close()


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_architecture_runs_in_lammps(tmp_path, kind):
    path = export_model(small_model(kind=kind, cutoff=3.0, layers=2), tmp_path / f"{kind}.nnp.pt")
    lmp, atoms = run_lammps(triclinic_water(11), path, tmp_path, ["H", "O"])
    out, ref = lammps_results(lmp), python_results(path, atoms)
    if kind == "gemnet_dt":  # direct forces: no virial
        np.testing.assert_allclose(out["forces"], ref["forces"], atol=TOL)
        assert out["energy"] == pytest.approx(float(ref["energy"]), abs=1e-9)
    else:
        assert_agree(out, ref)
    lmp.close()


def test_float32_model_agrees_to_single_precision(tmp_path):
    path = export_model(small_model(cutoff=3.0), tmp_path / "f32.nnp.pt", dtype="float32")
    lmp, atoms = run_lammps(water_box(seed=3), path, tmp_path, ["H", "O"])
    out, ref = lammps_results(lmp), python_results(path, atoms)
    # float32 sums come in a different order in LAMMPS (and on a GPU, with atomics): agree to
    # single precision relative to the force scale, not to a fixed absolute 1e-5
    scale = np.abs(ref["forces"]).max()
    np.testing.assert_allclose(out["forces"], ref["forces"], atol=1e-4 * scale)
    assert out["energy"] == pytest.approx(float(ref["energy"]), rel=1e-6)


def test_type_map_permutation_gives_identical_physics(model_file, tmp_path):
    atoms = water_box(seed=4)
    a, _ = run_lammps(atoms, model_file, tmp_path, ["H", "O"])
    b, _ = run_lammps(atoms, model_file, tmp_path, ["O", "H"])
    ra, rb = lammps_results(a), lammps_results(b)
    assert ra["energy"] == pytest.approx(rb["energy"], abs=1e-12)
    np.testing.assert_allclose(ra["forces"], rb["forces"], atol=1e-12)


def test_units_real_is_converted(model_file, tmp_path):
    atoms = water_box(seed=5)
    metal, _ = run_lammps(atoms, model_file, tmp_path, ["H", "O"])
    real, _ = run_lammps(atoms, model_file, tmp_path, ["H", "O"], units="real")
    m, r = lammps_results(metal), lammps_results(real, units="real")
    kcal = 23.060548012069496
    assert r["energy"] == pytest.approx(kcal * m["energy"], rel=1e-12)
    np.testing.assert_allclose(r["forces"], kcal * m["forces"], rtol=1e-12, atol=1e-12)


def test_finite_differences_inside_lammps(model_file, tmp_path):
    lmp, _ = run_lammps(water_box(seed=6), model_file, tmp_path, ["H", "O"])
    forces = lammps_results(lmp)["forces"]
    e0 = lmp.get_thermo("pe")
    dx = np.array([1e-4, -2e-4, 1.5e-4])
    lmp.command("displace_atoms all move 0 0 0")  # no-op keeps the box fixed
    lmp.command("group one id 5")
    lmp.command(f"displace_atoms one move {dx[0]} {dx[1]} {dx[2]} units box")
    lmp.command("run 0")
    de = lmp.get_thermo("pe") - e0
    assert de == pytest.approx(-forces[4] @ dx, rel=1e-3, abs=1e-9)
    # pressure (virial part) against the numerical volume derivative of the energy
    lmp.command("displace_atoms one move %g %g %g units box" % tuple(-dx))
    lmp.command("run 0")
    volume = lmp.get_thermo("vol")
    p_virial = np.array(lmp.numpy.extract_compute("virial", 0, 1))[:3].mean()
    energies = []
    for factor in (1 + 1e-5, 1 / (1 + 1e-5)):
        lmp.command(f"change_box all x scale {factor} y scale {factor} z scale {factor} remap")
        lmp.command("run 0")
        energies.append((lmp.get_thermo("vol"), lmp.get_thermo("pe")))
        lmp.command(f"change_box all x scale {1 / factor} y scale {1 / factor} z scale {1 / factor} remap")
    (v1, e1), (v2, e2) = energies
    numeric = -(e1 - e2) / (v1 - v2) * 1.6021765e6  # eV/Å^3 -> bar
    assert p_virial == pytest.approx(numeric, rel=1e-4, abs=1e-2)
    assert volume > 0
    lmp.close()


def test_atom_without_neighbours_and_empty_regions(model_file, tmp_path):
    atoms = Atoms("OHHH", positions=[[0, 0, 0], [0.96, 0, 0], [-0.2, 0.9, 0], [8.0, 8.0, 8.0]])
    atoms.center(vacuum=4.0)
    atoms.pbc = False
    lmp, held = run_lammps(atoms, model_file, tmp_path, ["H", "O"], boundary="s s s")
    out = lammps_results(lmp)
    assert np.all(out["forces"][3] == 0.0)
    assert_agree(out, python_results(model_file, held))


def water_deck(data, model, dump, steps=0, extra=""):
    return f"""units metal
atom_style atomic
atom_modify map yes
boundary p p p
read_data {data}
pair_style nnp
pair_coeff * * {model} H O
neighbor 1.0 bin
thermo_style custom step pe press
thermo_modify format float %20.15g
{extra}
dump d all custom 1 {dump} id fx fy fz
dump_modify d format float %20.15g
run {steps}
"""


@pytest.mark.mpi
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_two_ranks_equal_one_rank(tmp_path, kind):
    """3 message-passing layers: the ghost shell must carry every layer for the local energies to be exact."""
    model_file = export_model(small_model(kind=kind, cutoff=3.0, layers=3), tmp_path / f"{kind}.nnp.pt")
    atoms = water_box(n_side=3, seed=7)
    data = tmp_path / "water.data"
    write_lammps_data(atoms, data, ["H", "O"])
    results = {}
    for ranks in (1, 2):
        dump = tmp_path / f"forces.{ranks}"
        done = run_deck(water_deck(data, model_file, dump, steps=5,
                                   extra="velocity all create 300 1\nfix nve all nve\ntimestep 0.0005"), tmp_path, ranks)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        grid = re.search(r"(\d+) by (\d+) by (\d+) MPI processor grid", done.stdout)
        assert np.prod([int(g) for g in grid.groups()]) == ranks
        results[ranks] = (final_thermo(done.stdout, "PotEng"), read_dump_forces(dump)[1])
    assert results[2][0] == pytest.approx(results[1][0], abs=1e-10)
    np.testing.assert_allclose(results[2][1], results[1][1], atol=1e-10)


@pytest.mark.mpi
def test_rank_without_atoms(model_file, tmp_path):
    atoms = Atoms("OHH", positions=[[1, 1, 1], [1.96, 1, 1], [0.8, 1.9, 1]], cell=np.eye(3) * 16.0, pbc=True)
    data = tmp_path / "one.data"
    write_lammps_data(atoms, data, ["H", "O"])
    energies = []
    for ranks in (1, 2):
        done = run_deck(water_deck(data, model_file, tmp_path / f"d{ranks}", steps=0), tmp_path, ranks)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        energies.append(final_thermo(done.stdout, "PotEng"))
    assert energies[0] == pytest.approx(energies[1], abs=1e-10)


def test_nve_energy_is_conserved(model_file, tmp_path):
    """float64 model, 0.25 fs, 400 steps of hot water: |drift| < 1e-4 eV/atom.

    The bound is ~100x above what velocity Verlet gives for a smooth potential at this step (errors
    scale as dt^2 and do not accumulate); a missing force term or a non-smooth cutoff gives a drift orders
    of magnitude larger.
    """
    atoms = water_box(n_side=2, seed=8)
    data = tmp_path / "water.data"
    write_lammps_data(atoms, data, ["H", "O"])
    deck = water_deck(data, model_file, tmp_path / "d", steps=400, extra="""velocity all create 600 2 mom yes rot yes
fix nve all nve
timestep 0.00025
thermo_style custom step pe ke etotal
thermo 20""")
    done = run_deck(deck, tmp_path)
    assert done.returncode == 0, done.stdout[-2000:]
    block = done.stdout.split("Step")[-1].split("Loop time")[0].strip().splitlines()[1:]
    etotal = np.array([float(line.split()[3]) for line in block])
    drift = np.abs(etotal - etotal[0]).max() / len(atoms)
    print(f"NVE: max |E(t) - E(0)| = {drift:.2e} eV/atom over 400 steps of 0.25 fs")
    assert drift < 1e-4


def test_threads_keyword_sets_torch_threads_and_keeps_the_result(model_file, tmp_path):
    """`pair_style nnp threads 2` gives torch 2 intra-op threads (the wheel's lmp otherwise runs 1 when
    OMP_NUM_THREADS is unset); results equal the 1-thread run to summation order."""
    data = tmp_path / "water.data"
    write_lammps_data(water_box(n_side=2, seed=4), data, ["H", "O"])
    results = {}
    for threads in (1, 2):
        deck = water_deck(data, model_file, tmp_path / f"f{threads}").replace(
            "pair_style nnp\n", f"pair_style nnp threads {threads}\n")
        done = run_deck(deck, tmp_path)
        assert done.returncode == 0, done.stdout[-2000:]
        assert f"{threads} torch thread(s) per rank" in done.stdout
        results[threads] = (final_thermo(done.stdout, "PotEng"), read_dump_forces(tmp_path / f"f{threads}")[1])
    assert results[2][0] == pytest.approx(results[1][0], abs=1e-9)
    np.testing.assert_allclose(results[2][1], results[1][1], atol=1e-9)
    bad = run_deck(water_deck(data, model_file, tmp_path / "f0").replace("pair_style nnp\n", "pair_style nnp threads 0\n"),
                   tmp_path)
    assert bad.returncode != 0 and "threads must be >= 1" in bad.stdout + bad.stderr


BAD_INPUTS = {
    "missing file": ("pair_coeff * * {missing} H O", "does not exist"),
    "not torchscript": ("pair_coeff * * {junk} H O", "not a TorchScript model file"),
    "unknown element": ("pair_coeff * * {model} H C", "element C (atom type 2) is not known to model"),
    "argument count": ("pair_coeff * * {model} H", "one element per atom type"),
    "not star star": ("pair_coeff 1 1 {model} H O", "must start with"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gives_a_clear_error(model_file, tmp_path, case):
    from nnp.lammps import make_lammps

    line, message = BAD_INPUTS[case]
    junk = tmp_path / "junk.nnp.pt"
    junk.write_text("this is not a model")
    data = tmp_path / "w.data"
    write_lammps_data(water_box(seed=1), data, ["H", "O"])
    lmp = make_lammps()
    for setup in ("units metal", "atom_style atomic", f"read_data {data}", "pair_style nnp"):
        lmp.command(setup)
    with pytest.raises(Exception, match=re.escape(message)):
        lmp.command(line.format(missing=tmp_path / "none.nnp.pt", junk=junk, model=model_file))
    lmp.close()


@pytest.mark.parametrize("setting,message", [("units lj", "supports units metal and real"),
                                             ("newton off", "requires newton pair on")])
def test_unsupported_run_settings_are_refused(model_file, tmp_path, setting, message):
    from nnp.lammps import make_lammps

    data = tmp_path / "w.data"
    write_lammps_data(water_box(seed=1), data, ["H", "O"])
    lmp = make_lammps()
    lines = ["units metal", "atom_style atomic", f"read_data {data}", "pair_style nnp",
             f"pair_coeff * * {model_file} H O"]
    if setting == "newton off":
        lines.insert(0, "newton off")
    else:
        lines[0] = setting
    for line in lines:
        lmp.command(line)
    with pytest.raises(Exception, match=message):
        lmp.command("run 0")
    lmp.close()


def test_nan_output_stops_with_step_and_atom(tmp_path):
    model = small_model(cutoff=3.0)
    with torch.no_grad():
        model.reference_energies[1] = float("nan")  # every O atom gets a NaN energy
    path = export_model(model, tmp_path / "nan.nnp.pt")
    with pytest.raises(Exception, match=r"NaN or infinite energy/force at step 0 for atom ID \d+"):
        run_lammps(water_box(seed=1), path, tmp_path, ["H", "O"])


def test_cuda_request_without_gpu_is_a_clear_error(model_file, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from nnp.lammps import make_lammps

    data = tmp_path / "w.data"
    write_lammps_data(water_box(seed=1), data, ["H", "O"])
    lmp = make_lammps()
    for line in ("units metal", "atom_style atomic", f"read_data {data}", "pair_style nnp device cuda"):
        lmp.command(line)
    with pytest.raises(Exception, match="device cuda.*requested.*use device cpu"):
        lmp.command(f"pair_coeff * * {model_file} H O")
    lmp.close()


@pytest.mark.cuda
def test_cuda_agrees_with_cpu(model_file, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from nnp._evaluator import Evaluator
    from nnp.data.graph import atoms_to_graph, edge_vectors

    atoms = water_box(seed=2)
    graph = atoms_to_graph(atoms, ["H", "O"], 3.0, torch.float64, with_labels=False)
    args = (graph.species.numpy(), graph.edge_index.numpy(), edge_vectors(graph).numpy(), len(atoms))
    cpu, gpu = Evaluator(str(model_file), "cpu").evaluate(*args), Evaluator(str(model_file), "cuda").evaluate(*args)
    np.testing.assert_allclose(gpu["forces"], cpu["forces"], atol=1e-9)


def hybrid_deck(data, model, dump, elements, pair_lines, ranks_grid=""):
    return f"""units metal
atom_style atomic
atom_modify map yes
boundary p p p
{ranks_grid}
read_data {data}
{pair_lines}
neighbor 1.0 bin
compute pe all pe/atom
thermo_style custom step pe
thermo_modify format float %20.15g
dump d all custom 1 {dump} id fx fy fz c_pe
dump_modify d format float %20.15g
run 0
"""


@pytest.mark.parametrize("ranks", [1, 2])
def test_null_type_leaves_argon_to_lj_under_hybrid(model_file, tmp_path, ranks):
    """Water described by nnp, argon (NULL for nnp) by lj/cut: the water's nnp energy and forces are those of
    the same water without argon, and argon never enters the graph (with halo exchange on 2 ranks too)."""
    water = water_box(n_side=3, seed=13)
    argon = Atoms("Ar4", positions=[[1.5, 1.5, 7.7], [7.7, 1.5, 1.5], [4.6, 7.7, 4.6], [1.5, 4.6, 1.5]],
                  cell=water.cell, pbc=True)
    mixed = water + argon
    pure, both = tmp_path / "pure.data", tmp_path / "mixed.data"
    write_lammps_data(water, pure, ["H", "O"])
    write_lammps_data(mixed, both, ["H", "O", "Ar"])
    # argon-argon Lennard-Jones only (water-argon epsilon 0): forces on water atoms are nnp's alone
    hybrid = (f"pair_style hybrid nnp lj/cut 6.0\npair_coeff * * nnp {model_file} H O NULL\n"
              "pair_coeff 1*2 3 lj/cut 0.0 3.0\npair_coeff 3 3 lj/cut 0.0104 3.4")
    plain = f"pair_style nnp\npair_coeff * * {model_file} H O"
    done_pure = run_deck(hybrid_deck(pure, model_file, tmp_path / "pure.dump", ["H", "O"], plain), tmp_path, ranks)
    done_mixed = run_deck(hybrid_deck(both, model_file, tmp_path / "mixed.dump", ["H", "O", "Ar"], hybrid), tmp_path,
                          ranks)
    assert done_pure.returncode == 0 and done_mixed.returncode == 0, done_mixed.stdout[-3000:]
    ids, f_pure = read_dump_forces(tmp_path / "pure.dump")
    ids_mixed, f_mixed = read_dump_forces(tmp_path / "mixed.dump")
    n = len(water)
    np.testing.assert_allclose(f_mixed[:n], f_pure, atol=1e-10)
    assert np.abs(f_mixed[n:]).max() > 0  # argon feels its LJ neighbours only
    lj = 4 * 0.0104 * sum(((3.4 / d) ** 12 - (3.4 / d) ** 6) for d in argon_distances(mixed[n:], 6.0))
    assert final_thermo(done_mixed.stdout, "PotEng") == pytest.approx(final_thermo(done_pure.stdout, "PotEng") + lj,
                                                                      abs=1e-9)


def argon_distances(argon, cutoff):
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list("ijd", argon, cutoff)
    return d[i < j]


def test_plain_nnp_with_a_null_type_is_an_error(model_file, tmp_path):
    from nnp.lammps import make_lammps

    data = tmp_path / "w.data"
    write_lammps_data(water_box(seed=1), data, ["H", "O"])
    lmp = make_lammps()
    for line in ("units metal", "atom_style atomic", f"read_data {data}", "pair_style nnp",
                 f"pair_coeff * * {model_file} H NULL"):
        lmp.command(line)
    with pytest.raises(Exception, match="All pair coeffs are not set"):
        lmp.command("run 0")
    lmp.close()


def test_mass_that_does_not_match_the_element_warns(model_file, tmp_path):
    data = tmp_path / "w.data"
    write_lammps_data(water_box(seed=1), data, ["H", "O"])  # type 1 = H (1.008), type 2 = O (15.999)
    swapped = run_deck(water_deck(data, model_file, tmp_path / "d").replace("H O\n", "O H\n", 1), tmp_path)
    assert swapped.returncode == 0, swapped.stdout[-2000:]
    assert re.search(r"atom type 1 has mass 1\.008 but is mapped to element O", swapped.stdout)
    assert re.search(r"atom type 2 has mass 16 but is mapped to element H", swapped.stdout)
    right = run_deck(water_deck(data, model_file, tmp_path / "d"), tmp_path)
    assert "but is mapped to element" not in right.stdout


@pytest.mark.cuda
def test_cuda_lammps_run_agrees_with_cpu(model_file, tmp_path):
    """The device-resident graph (positions up, forces down) gives the CPU results."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    data = tmp_path / "w.data"
    write_lammps_data(water_box(seed=2), data, ["H", "O"])
    forces = {}
    for device in ("cpu", "cuda"):
        deck = water_deck(data, model_file, tmp_path / f"d.{device}", steps=3,
                          extra="velocity all create 300 1\nfix nve all nve").replace(
            "pair_style nnp\n", f"pair_style nnp device {device}\n")
        done = run_deck(deck, tmp_path)
        assert done.returncode == 0, done.stdout[-2000:]
        forces[device] = read_dump_forces(tmp_path / f"d.{device}")[1]
    np.testing.assert_allclose(forces["cuda"], forces["cpu"], atol=1e-9)


def test_npt_runs_on_the_model_virial(model_file, tmp_path):
    lmp, _ = run_lammps(water_box(seed=9), model_file, tmp_path, ["H", "O"])
    v0 = lmp.get_thermo("vol")
    for line in ("velocity all create 300 3", "timestep 0.0002", "fix npt all npt temp 300 300 0.02 iso 1e4 1e4 0.2",
                 "run 100"):
        lmp.command(line)
    assert np.isfinite(lmp.get_thermo("press")) and lmp.get_thermo("vol") != v0
    lmp.close()


@pytest.mark.parametrize("system", ["periodic_water", "molecule"])
def test_quick_md_starts_from_the_models_energy(model_file, system):
    """``nnp.md.quick_md`` loads the structure with its own periodicity (a molecule in a cell without pbc sees no
    periodic image): after 0 steps its potential energy is the model's in Python."""
    from nnp.md.run import quick_md

    atoms = SYSTEMS[system][0]()
    if not atoms.pbc.any():
        atoms.center(vacuum=1.0)  # a cell smaller than the cutoff's reach: periodic images would change the energy
    result = quick_md(model_file, atoms, steps=0)
    assert result["natoms"] == len(atoms)
    assert result["potential_energy"] == pytest.approx(float(python_results(model_file, atoms)["energy"]), abs=1e-8)

"""pair_style nnp against an independent implementation of the contract (tests/lammps_models.py).

The model files here are written by plain torch code that shares nothing with ``nnp.models``/``nnp.export``,
and the Python reference graph is built with ASE's neighbour list, so these tests check the C++ side
(evaluator + pair style) and the contract itself, not one implementation against itself.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from ase import Atoms

from helpers import triclinic_water, water_box, water_cluster
from lammps_helpers import final_thermo, lammps_results, run_deck, run_lammps
from lammps_models import reference_results, write_model
from nnp.lammps import write_lammps_data

TOL = 1e-10
KCAL_PER_EV = 23.060548012069496


@pytest.fixture(scope="module")
def ref_model(tmp_path_factory):
    """float64, 3 message-passing layers, cutoff 3 Å."""
    return write_model(tmp_path_factory.mktemp("ref") / "ref.nnp.pt", layers=3)


def isolated_atoms():
    """No edge at all: two atoms further apart than the cutoff."""
    atoms = Atoms("OH", positions=[[0, 0, 0], [5.0, 1.0, 0.5]])
    atoms.center(vacuum=4.0)
    return atoms


SYSTEMS = {
    "periodic_water": (lambda: water_box(seed=20), "p p p"),
    "triclinic": (lambda: triclinic_water(21), "p p p"),
    # cell edge 2.2 Å < cutoff 3 Å: an atom sees several images of itself and of its neighbours
    "small_box": (lambda: Atoms("OHH", positions=[[0, 0, 0], [0.96, 0, 0], [-0.2, 0.9, 0.1]],
                                cell=np.eye(3) * 2.2, pbc=True), "p p p"),
    "small_triclinic": (lambda: Atoms("OHHO", positions=[[0, 0, 0], [0.96, 0, 0], [-0.2, 0.9, 0.1], [1.5, 1.4, 1.2]],
                                      cell=[[2.6, 0, 0], [0.8, 2.5, 0], [0.3, -0.6, 2.7]], pbc=True), "p p p"),
    "molecule_shrinkwrapped": (lambda: water_cluster(22), "s s s"),
    "molecule_fixed": (lambda: water_cluster(22), "f f f"),
    "no_edges": (isolated_atoms, "s s s"),
}


def assert_agree(out, ref, tol=TOL):
    n = len(ref["forces"])
    assert out["energy"] == pytest.approx(float(ref["energy"]), abs=tol * n)
    np.testing.assert_allclose(out["atom_energy"], ref["atom_energy"], rtol=0, atol=tol)
    np.testing.assert_allclose(out["forces"], ref["forces"], rtol=0, atol=tol)
    np.testing.assert_allclose(out["virial_voigt"], ref["virial_voigt"], rtol=0, atol=tol * n)
    np.testing.assert_allclose(out["atom_virial_voigt"], ref["atom_virial_voigt"], rtol=0, atol=tol)


@pytest.mark.parametrize("system", list(SYSTEMS))
def test_lammps_equals_reference(ref_model, tmp_path, system):
    make, boundary = SYSTEMS[system]
    lmp, atoms = run_lammps(make(), ref_model, tmp_path, ["H", "O"], boundary=boundary)
    out, ref = lammps_results(lmp), reference_results(ref_model, atoms)
    assert_agree(out, ref)
    if system == "no_edges":
        assert np.all(out["forces"] == 0.0) and np.all(out["virial_voigt"] == 0.0)
    lmp.close()


def test_lammps_reports_exceptions():
    from nnp.lammps import make_lammps

    lmp = make_lammps()
    assert lmp.has_exceptions and lmp.has_style("pair", "nnp")
    lmp.close()


def test_float32_model(tmp_path):
    path = write_model(tmp_path / "f32.nnp.pt", dtype="float32")
    lmp, atoms = run_lammps(triclinic_water(21), path, tmp_path, ["H", "O"])
    out, ref = lammps_results(lmp), reference_results(path, atoms)
    # same float32 computation, different summation order (C++ vs Python graph): single-precision agreement
    np.testing.assert_allclose(out["forces"], ref["forces"], atol=2e-5)
    np.testing.assert_allclose(out["atom_energy"], ref["atom_energy"], atol=2e-3)
    assert out["energy"] == pytest.approx(float(ref["energy"]), rel=1e-6)
    np.testing.assert_allclose(out["virial_voigt"], ref["virial_voigt"], atol=1e-3)
    lmp.close()


@pytest.mark.parametrize("units", ["metal", "real"])
def test_per_atom_virial_sums_to_the_global_virial(ref_model, tmp_path, units):
    """compute stress/atom (our vatom) summed over atoms = -pressure * volume (our virial), every component."""
    lmp, _ = run_lammps(triclinic_water(21), ref_model, tmp_path, ["H", "O"], units=units)
    n = lmp.get_natoms()
    stress = np.array(lmp.numpy.extract_compute("stress", 1, 2)[:n]).sum(0)
    pressure = np.array(lmp.numpy.extract_compute("virial", 0, 1))
    volume = lmp.get_thermo("vol")
    np.testing.assert_allclose(stress, -pressure * volume, rtol=1e-10, atol=1e-8 * np.abs(stress).max())
    lmp.close()


def test_units_real_converts_every_output(ref_model, tmp_path):
    atoms = water_box(seed=23)
    metal, _ = run_lammps(atoms, ref_model, tmp_path, ["H", "O"])
    real, _ = run_lammps(atoms, ref_model, tmp_path, ["H", "O"], units="real")
    m, r = lammps_results(metal), lammps_results(real, units="real")
    assert r["energy"] == pytest.approx(KCAL_PER_EV * m["energy"], rel=1e-12)
    for key in ("atom_energy", "forces", "virial_voigt", "atom_virial_voigt"):
        np.testing.assert_allclose(r[key], KCAL_PER_EV * m[key], rtol=1e-9, atol=1e-9, err_msg=key)
    metal.close()
    real.close()


def test_type_maps_give_identical_physics(ref_model, tmp_path):
    """H O, O H, and O H H (hydrogens split over two LAMMPS types) are the same system."""
    atoms = water_box(seed=24)
    a, _ = run_lammps(atoms, ref_model, tmp_path, ["H", "O"])
    b, _ = run_lammps(atoms, ref_model, tmp_path, ["O", "H"])
    ra, rb = lammps_results(a), lammps_results(b)
    # three types: O=1, H=2 for the first half of the hydrogens, H=3 for the rest
    data = tmp_path / "three.data"
    write_lammps_data(atoms, data, ["O", "H"])
    text = data.read_text().replace("2 atom types", "3 atom types").replace(
        "2      1.0079999997406976 # H", "2      1.0079999997406976 # H\n3      1.0079999997406976 # H")
    lines = text.splitlines()
    start = lines.index("Atoms # atomic") + 2
    for k in range(start, start + len(atoms)):
        fields = lines[k].split()
        if fields[1] == "2" and int(fields[0]) % 2 == 0:
            fields[1] = "3"
        lines[k] = " ".join(fields)
    data.write_text("\n".join(lines) + "\n")
    from nnp.lammps import make_lammps

    c = make_lammps()
    for line in ["units metal", "atom_style atomic", "atom_modify map yes", f"read_data {data}", "pair_style nnp",
                 f"pair_coeff * * {ref_model} O H H", "run 0"]:
        c.command(line)
    assert c.extract_global("ntypes") == 3
    order = np.argsort(c.numpy.extract_atom("id")[: len(atoms)])
    fc = np.array(c.numpy.extract_atom("f")[: len(atoms)][order])
    assert ra["energy"] == pytest.approx(rb["energy"], abs=1e-12)
    assert c.get_thermo("pe") == pytest.approx(ra["energy"], abs=1e-12)
    np.testing.assert_allclose(ra["forces"], rb["forces"], atol=1e-12)
    np.testing.assert_allclose(fc, ra["forces"], atol=1e-12)
    for lmp in (a, b, c):
        lmp.close()


def test_forces_are_minus_the_energy_gradient_inside_lammps(ref_model, tmp_path):
    """Central differences of the LAMMPS energy over atom displacements (h = 1e-4 Å)."""
    lmp, _ = run_lammps(triclinic_water(21), ref_model, tmp_path, ["H", "O"])
    forces = lammps_results(lmp)["forces"]
    h = 1e-4
    for atom, axis in ((1, 0), (5, 1), (12, 2), (20, 0)):
        lmp.command(f"group probe{atom}{axis} id {atom}")
        move = ["0", "0", "0"]
        energies = []
        for step in (h, -2 * h, h):
            move[axis] = repr(step)
            lmp.command(f"displace_atoms probe{atom}{axis} move {' '.join(move)} units box")
            lmp.command("run 0")
            energies.append(lmp.get_thermo("pe"))
        numeric = -(energies[0] - energies[1]) / (2 * h)
        assert numeric == pytest.approx(forces[atom - 1, axis], abs=2e-7), (atom, axis)
    lmp.close()


def test_virial_is_minus_the_strain_derivative_inside_lammps(ref_model, tmp_path):
    """Deform the triclinic box with change_box ... remap: dE = sum_ab (dh h^-1)_ab G_ab with G = -W^T."""
    lmp, _ = run_lammps(triclinic_water(21), ref_model, tmp_path, ["H", "O"])
    w6 = lammps_results(lmp)["virial_voigt"]
    w = np.array([[w6[0], w6[3], w6[4]], [w6[3], w6[1], w6[5]], [w6[4], w6[5], w6[2]]])
    boxlo, boxhi, xy, yz, xz, _, _ = lmp.extract_box()
    lx, ly, lz = np.array(boxhi) - np.array(boxlo)
    h_inv = np.linalg.inv(np.array([[lx, xy, xz], [0, ly, yz], [0, 0, lz]]))
    d = 1e-5
    changes = {"x delta 0 {}": (0, 0), "xy delta {}": (0, 1), "yz delta {}": (1, 2), "xz delta {}": (0, 2),
               "z delta 0 {}": (2, 2)}
    for template, (a, b) in changes.items():
        energies = []
        for step in (d, -2 * d, d):
            lmp.command("change_box all " + template.format(repr(step)) + " remap units box")
            lmp.command("run 0")
            energies.append(lmp.get_thermo("pe"))
        numeric = (energies[0] - energies[1]) / (2 * d)
        dh = np.zeros((3, 3))
        dh[a, b] = 1.0
        predicted = np.sum((dh @ h_inv) * (-w.T))
        assert numeric == pytest.approx(predicted, rel=1e-5, abs=1e-6), template
    lmp.close()


def deck(data, model, dump, steps=0, extra="", elements="H O", every=1):
    return f"""units metal
atom_style atomic
atom_modify map yes
boundary p p p
read_data {data}
pair_style nnp
pair_coeff * * {model} {elements}
neighbor 1.0 bin
compute pe all pe/atom
compute s all stress/atom NULL virial
thermo_style custom step pe press pxx pyy pzz pxy pxz pyz
thermo_modify format float %24.17g
{extra}
dump d all custom {every} {dump} id fx fy fz c_pe c_s[1] c_s[2] c_s[3] c_s[4] c_s[5] c_s[6]
dump_modify d format float %24.17g
run {steps}
"""


def last_frame(path):
    text = path.read_text().split("ITEM: TIMESTEP")[-1]
    rows = np.array([[float(v) for v in r.split()] for r in text.split("ITEM: ATOMS")[1].strip().splitlines()[1:]])
    return rows[np.argsort(rows[:, 0])]


def thermo_row(stdout):
    blocks = re.findall(r"^\s*Step.*?(?=^Loop time)", stdout, flags=re.S | re.M)
    return np.array([float(v) for v in blocks[-1].strip().splitlines()[-1].split()[1:]])


@pytest.mark.mpi
@pytest.mark.parametrize("system,ranks,comm", [("cubic", 2, ""), ("triclinic", 2, ""),
                                               ("cubic", 3, "comm_modify cutoff 2.0")])
def test_several_ranks_equal_one_rank(ref_model, tmp_path, system, ranks, comm):
    """3 layers: local energies need a ghost shell of 3 cutoffs; LAMMPS must sum ghost forces/virials back.

    Compares energy, pressure tensor, and per-atom forces, energies and stresses after 5 MD steps. The
    third case also sets a too-small ``comm_modify cutoff``, which the pair style must raise.
    """
    atoms = water_box(n_side=3, seed=25)
    if system == "triclinic":
        atoms.set_cell(atoms.cell.array + np.array([[0, 0, 0], [1.2, 0, 0], [-0.8, 0.6, 0]]), scale_atoms=True)
    data = tmp_path / "water.data"
    write_lammps_data(atoms, data, ["H", "O"])
    md = f"{comm}\nvelocity all create 300 1 mom yes\nfix nve all nve\ntimestep 0.0005"
    results = {}
    for nprocs in (1, ranks):
        dump = tmp_path / f"dump.{nprocs}"
        done = run_deck(deck(data, ref_model, dump, steps=5, extra=md, every=5), tmp_path, nprocs)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        grid = re.search(r"(\d+) by (\d+) by (\d+) MPI processor grid", done.stdout)
        assert np.prod([int(g) for g in grid.groups()]) == nprocs
        if comm and nprocs > 1:
            assert "raising comm_modify cutoff to 10" in done.stdout  # 3 layers * 3 Å + 1 Å skin
        results[nprocs] = (thermo_row(done.stdout), last_frame(dump))
    (t1, d1), (tn, dn) = results[1], results[ranks]
    assert tn[0] == pytest.approx(t1[0], abs=1e-10)  # potential energy
    np.testing.assert_allclose(tn[1:], t1[1:], rtol=1e-10, atol=1e-6)  # pressures (bar)
    np.testing.assert_allclose(dn[:, 1:5], d1[:, 1:5], rtol=0, atol=1e-10)  # forces, per-atom energy
    np.testing.assert_allclose(dn[:, 5:], d1[:, 5:], rtol=1e-9, atol=1e-5)  # per-atom stress (bar*Å^3)


@pytest.mark.mpi
def test_a_too_thin_ghost_shell_is_detected(tmp_path):
    """Control for the test above: a file that claims 1 layer (it has 3) gets a 1-cutoff ghost shell, and then
    2 ranks no longer equal 1 rank. So the agreement above really depends on the ghost shell width."""
    liar = write_model(tmp_path / "liar.nnp.pt", layers=3, meta={"num_interactions": "1"})
    data = tmp_path / "water.data"
    write_lammps_data(water_box(n_side=3, seed=25), data, ["H", "O"])
    frames = []
    for nprocs in (1, 2):
        done = run_deck(deck(data, liar, tmp_path / f"d{nprocs}"), tmp_path, nprocs)
        assert done.returncode == 0, done.stdout[-2000:]
        frames.append(last_frame(tmp_path / f"d{nprocs}"))
    assert np.abs(frames[0][:, 1:4] - frames[1][:, 1:4]).max() > 1e-6


@pytest.mark.mpi
def test_rank_without_atoms_and_nan_under_mpi(ref_model, tmp_path):
    """A rank that owns no atom contributes nothing; a NaN model stops every rank with a message, no hang."""
    atoms = Atoms("OHH", positions=[[1, 1, 1], [1.96, 1, 1], [0.8, 1.9, 1]], cell=np.eye(3) * 16.0, pbc=True)
    data = tmp_path / "one.data"
    write_lammps_data(atoms, data, ["H", "O"])
    energies = []
    for ranks in (1, 2):
        done = run_deck(deck(data, ref_model, tmp_path / f"d{ranks}"), tmp_path, ranks)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        energies.append(final_thermo(done.stdout, "PotEng"))
    assert energies[0] == pytest.approx(energies[1], abs=1e-10)

    nan_model = write_model(tmp_path / "nan.nnp.pt", nan_species=1)
    water = tmp_path / "water.data"
    write_lammps_data(water_box(n_side=2, seed=26), water, ["H", "O"])
    done = run_deck(deck(water, nan_model, tmp_path / "dnan"), tmp_path, 2, timeout=120)
    assert done.returncode != 0
    assert re.search(r"NaN or infinite energy/force at step 0 for atom ID \d+", done.stdout + done.stderr)


def nve_fluctuation(model, data, tmp_path, dt_fs, time_fs):
    steps = int(round(time_fs / dt_fs))
    extra = f"""velocity all create 300 2 mom yes rot yes
fix nve all nve
timestep {dt_fs / 1000}
thermo_style custom step pe ke etotal
thermo_modify format float %24.17g
thermo {max(1, steps // 100)}"""
    done = run_deck(deck(data, model, tmp_path / "nve", steps=steps, extra=extra, every=steps), tmp_path)
    assert done.returncode == 0, done.stdout[-2000:]
    block = done.stdout.split("Step")[-1].split("Loop time")[0].strip().splitlines()[1:]
    etotal = np.array([float(line.split()[3]) for line in block])
    return etotal - etotal[0]


def test_nve_energy_conservation(ref_model, tmp_path):
    """float64, 24-atom water, 300 K, 250 fs of velocity Verlet at 0.5 fs and at 0.25 fs.

    Velocity Verlet is symplectic: with forces that are the exact gradient of a smooth energy, the total
    energy fluctuates by O(dt^2) around its start and does not drift. So (1) the fluctuation at 0.5 fs is
    below 2e-4 eV/atom (0.2 meV/atom, ~100x less than the 300 K kinetic energy per atom), (2) halving dt
    divides it by ~4 (between 2.5 and 7; measured 4.9), which fails if the forces are not -dE/dx (a force error gives a
    dt-independent drift), and (3) there is no secular drift: the mean of the last quarter stays within
    the fluctuation bound.
    """
    data = tmp_path / "water.data"
    n = 24
    write_lammps_data(water_box(n_side=2, seed=27), data, ["H", "O"])
    coarse = nve_fluctuation(ref_model, data, tmp_path, 0.5, 250.0) / n
    fine = nve_fluctuation(ref_model, data, tmp_path, 0.25, 250.0) / n
    ratio = np.abs(coarse).max() / np.abs(fine).max()
    print(f"NVE max |E(t)-E(0)|: {np.abs(coarse).max():.2e} eV/atom at 0.5 fs, {np.abs(fine).max():.2e} at 0.25 fs "
          f"(ratio {ratio:.2f}); mean of the last quarter at 0.5 fs {coarse[-len(coarse) // 4:].mean():.2e} eV/atom")
    assert np.abs(coarse).max() < 2e-4
    assert 2.5 < ratio < 7.0
    assert abs(coarse[-len(coarse) // 4:].mean()) < 2e-4


def test_direct_force_model_warns(tmp_path):
    path = write_model(tmp_path / "direct.nnp.pt", meta={"forces": "direct"})
    data = tmp_path / "w.data"
    write_lammps_data(water_box(seed=28), data, ["H", "O"])
    done = run_deck(deck(data, path, tmp_path / "d"), tmp_path)
    assert done.returncode == 0, done.stdout[-2000:]
    assert "energy is not conserved in NVE" in done.stdout


BAD_MODELS = {
    "missing metadata": ({"drop": ("cutoff",)}, "lacks nnp metadata (cutoff)"),
    "format version": ({"meta": {"format_version": "3"}}, "has model format version 3, this nnp reads 1 and 2"),
    "version 2 without halo keys": ({"meta": {"format_version": "2"}}, "lacks nnp metadata (halo, receptive_hops)"),
    "halo mode": ({"meta": {"format_version": "2", "halo": "often", "receptive_hops": "3"}},
                  "declares halo 'often'; expected per_layer or none"),
    "units": ({"meta": {"units": "real"}}, "declares units 'real'; format version 1 requires metal"),
    "dtype": ({"meta": {"dtype": "float16"}}, "declares dtype 'float16'; expected float32 or float64"),
    "force kind": ({"meta": {"forces": "magic"}}, "declares forces 'magic'"),
    "cutoff": ({"meta": {"cutoff": "abc"}}, "is not a number"),
    "species": ({"meta": {"species": "  "}}, "declares no species"),
}


@pytest.fixture
def lammps_with_box(tmp_path):
    from nnp.lammps import make_lammps

    data = tmp_path / "w.data"
    write_lammps_data(water_box(seed=1), data, ["H", "O"])
    lmp = make_lammps()
    for line in ("units metal", "atom_style atomic", f"read_data {data}"):
        lmp.command(line)
    yield lmp
    lmp.close()


@pytest.mark.parametrize("case", list(BAD_MODELS))
def test_bad_model_file_is_refused_by_name(lammps_with_box, tmp_path, case):
    kwargs, message = BAD_MODELS[case]
    path = write_model(tmp_path / "bad.nnp.pt", **kwargs)
    lammps_with_box.command("pair_style nnp")
    with pytest.raises(Exception, match=re.escape(message)):
        lammps_with_box.command(f"pair_coeff * * {path} H O")


def test_torchscript_file_without_metadata_is_refused(lammps_with_box, tmp_path):
    path = tmp_path / "plain.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    lammps_with_box.command("pair_style nnp")
    with pytest.raises(Exception, match="lacks nnp metadata"):
        lammps_with_box.command(f"pair_coeff * * {path} H O")


@pytest.mark.parametrize("line,message", [
    ("pair_style nnp device tpu", "device must be cpu or cuda, not 'tpu'"),
    ("pair_style nnp gpu", "unknown argument 'gpu'"),
    ("pair_style nnp device", "unknown argument 'device'"),
])
def test_bad_pair_style_arguments(lammps_with_box, line, message):
    with pytest.raises(Exception, match=re.escape(message)):
        lammps_with_box.command(line)


def test_unknown_element_names_the_model_species(lammps_with_box, ref_model):
    lammps_with_box.command("pair_style nnp")
    with pytest.raises(Exception, match=r"element Na \(atom type 1\) is not known to model .*which knows H O"):
        lammps_with_box.command(f"pair_coeff * * {ref_model} Na O")


def test_run_without_pair_coeff_is_an_error(lammps_with_box):
    lammps_with_box.command("pair_style nnp")
    with pytest.raises(Exception, match="(pair_coeff|pair coeffs)"):
        lammps_with_box.command("run 0")


@pytest.mark.cuda
def test_lammps_on_cuda_equals_cpu(ref_model, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    atoms = triclinic_water(21)
    cpu, held = run_lammps(atoms, ref_model, tmp_path, ["H", "O"])
    gpu, _ = run_lammps(atoms, ref_model, tmp_path, ["H", "O"], extra=["pair_style nnp device cuda",
                                                                        f"pair_coeff * * {ref_model} H O"])
    assert_agree(lammps_results(gpu), lammps_results(cpu), tol=1e-9)
    assert_agree(lammps_results(gpu), reference_results(ref_model, held), tol=1e-9)

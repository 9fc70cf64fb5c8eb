"""Ensemble model deviation: pair_style nnp ensemble, compute nnp/deviation, fix halt, MPI, ASE.

The reference for every number is an independent numpy evaluation of DeePMD's definitions on the
members' outputs from torch.jit in Python on an ASE graph (tests/lammps_models.py), not the C++ code.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import small_model, water_box
from lammps_helpers import run_deck, setup_lines
from lammps_models import reference_results, write_model
from nnp.calculator import NNPCalculator
from nnp.export import export_model
from nnp.lammps import make_lammps
from nnp.lammps import write_lammps_data

TOL = 1e-10


def numpy_deviation(files: list[Path], atoms, relative: float | None = None) -> tuple[np.ndarray, float]:
    """eps_i = sqrt(<|F_i - <F_i>|^2>) over members, and std over members of E/N (DeePMD's model_devi)."""
    outs = [reference_results(f, atoms) for f in files]
    forces = np.stack([o["forces"] for o in outs])
    eps = np.sqrt(np.mean(np.sum((forces - forces.mean(0)) ** 2, axis=-1), axis=0))
    if relative is not None:  # DeePMD's relative model deviation
        eps = eps / (np.linalg.norm(forces.mean(0), axis=1) + relative)
    return eps, float(np.std([float(o["energy"]) / len(atoms) for o in outs]))


def numpy_virial_deviation(files: list[Path], atoms, relative_v: float | None = None) -> list[float]:
    """max, min, avg of the std over members of virial/N per component, as deepmd.infer.calc_model_devi_v."""
    virials = np.stack([reference_results(f, atoms)["virial"].reshape(9) / len(atoms) for f in files])
    eps = np.std(virials, axis=0)
    if relative_v is not None:
        eps = eps / (np.abs(virials.mean(0)) + relative_v)
    return [eps.max(), eps.min(), np.linalg.norm(eps) / 3]


HEADER = ["#", "step", "max_devi_v", "min_devi_v", "avg_devi_v", "max_devi_f", "min_devi_f", "avg_devi_f", "devi_e"]


def read_model_devi(path: Path) -> np.ndarray:
    """The file as DP-GEN reads it (numpy.loadtxt, columns by position), after checking DeePMD's header."""
    assert path.read_text().splitlines()[0].split()[:len(HEADER)] == HEADER
    return np.loadtxt(path, ndmin=2)


@pytest.fixture(scope="module")
def members(tmp_path_factory) -> list[Path]:
    """Three reference potentials that differ only in their random weights (seed)."""
    tmp = tmp_path_factory.mktemp("ens")
    return [write_model(tmp / f"m{k}.nnp.pt", seed=k) for k in range(3)]


def ensemble_lammps(tmp: Path, atoms, driver: Path, others: list[Path], options: str = "", extra=()):
    data = tmp / "w.data"
    write_lammps_data(atoms, data, ["H", "O"])
    lmp = make_lammps()
    style = f"nnp ensemble {' '.join(map(str, others))} out_file {tmp / 'model_devi.out'} {options}"
    for line in setup_lines(data, driver, ["H", "O"], style=style) + [
            "compute dev all nnp/deviation", *extra]:
        lmp.command(line)
    return lmp


def per_atom(lmp, name: str = "dev") -> np.ndarray:
    n = lmp.get_natoms()
    order = np.argsort(lmp.numpy.extract_atom("id")[:n])
    return np.array(lmp.numpy.extract_compute(name, 1, 1)[:n][order])


def test_identical_members_give_zero_deviation(members, tmp_path):
    lmp = ensemble_lammps(tmp_path, water_box(seed=1), members[0], [members[0], members[0]], "out_freq 1")
    lmp.command("run 0")
    assert [lmp.numpy.extract_compute("dev", 0, 1)[k] for k in range(7)] == [0.0] * 7
    assert np.all(per_atom(lmp) == 0.0)
    assert read_model_devi(tmp_path / "model_devi.out").tolist() == [[0.0] * 8]
    lmp.close()


def test_deviation_equals_independent_python(members, tmp_path):
    atoms = water_box(seed=2)
    lmp = ensemble_lammps(tmp_path, atoms, members[0], members[1:], "out_freq 1")
    lmp.command("run 0")
    eps, devi_e = numpy_deviation(members, atoms)
    virial = numpy_virial_deviation(members, atoms)
    assert eps.max() > 1e-3 and devi_e > 1e-6 and min(virial) > 1e-6  # the members really differ
    expected = [eps.max(), eps.min(), eps.mean(), devi_e]
    got = np.array(lmp.numpy.extract_compute("dev", 0, 1)[:7])
    np.testing.assert_allclose(got, expected + virial, rtol=0, atol=TOL)
    np.testing.assert_allclose(per_atom(lmp), eps, rtol=0, atol=TOL)
    np.testing.assert_allclose(read_model_devi(tmp_path / "model_devi.out")[0], [0, *virial, *expected], rtol=0,
                               atol=1e-9)
    # the driver's dynamics are untouched: LAMMPS's forces are member 0's
    n = lmp.get_natoms()
    order = np.argsort(lmp.numpy.extract_atom("id")[:n])
    forces = np.array(lmp.numpy.extract_atom("f")[:n][order])
    np.testing.assert_allclose(forces, reference_results(members[0], atoms)["forces"], atol=TOL)
    lmp.close()


def test_ase_calculator_gives_the_same_deviation(members):
    from nnp.calculator import NNPCalculator

    atoms = water_box(seed=2)
    atoms.calc = NNPCalculator(members[0], ensemble=members[1:])
    eps, devi_e = numpy_deviation(members, atoms)
    atoms.get_potential_energy()
    results = atoms.calc.results
    np.testing.assert_allclose(results["devi_f"], eps, rtol=0, atol=TOL)
    np.testing.assert_allclose(results["model_deviation"], [eps.max(), eps.min(), eps.mean(), devi_e], atol=TOL)
    assert results["max_devi_f"] == pytest.approx(eps.max(), abs=TOL)
    np.testing.assert_allclose([results[k] for k in ("max_devi_v", "min_devi_v", "avg_devi_v")],
                               numpy_virial_deviation(members, atoms), rtol=0, atol=TOL)
    np.testing.assert_allclose(results["forces"], reference_results(members[0], atoms)["forces"], atol=TOL)


def test_relative_and_atomic_deviation_as_deepmd_writes_them(members, tmp_path):
    atoms = water_box(seed=6)
    lmp = ensemble_lammps(tmp_path, atoms, members[0], members[1:], "out_freq 1 relative 0.5 relative_v 0.2 atomic")
    lmp.command("run 0")
    eps, devi_e = numpy_deviation(members, atoms, relative=0.5)
    virial = numpy_virial_deviation(members, atoms, relative_v=0.2)
    absolute, _ = numpy_deviation(members, atoms)
    assert not np.allclose(eps, absolute)  # the relative level changed the numbers
    table = read_model_devi(tmp_path / "model_devi.out")
    assert table.shape == (1, 8 + len(atoms))  # DeePMD's columns, then one value per atom (atom-ID order)
    np.testing.assert_allclose(table[0, :8], [0, *virial, eps.max(), eps.min(), eps.mean(), devi_e], atol=1e-9)
    np.testing.assert_allclose(table[0, 8:], eps, rtol=0, atol=1e-9)
    np.testing.assert_allclose(per_atom(lmp), eps, rtol=0, atol=TOL)
    lmp.close()
    atoms.calc = NNPCalculator(members[0], ensemble=members[1:], relative=0.5, relative_v=0.2)
    atoms.get_potential_energy()
    np.testing.assert_allclose(atoms.calc.results["devi_f"], eps, rtol=0, atol=TOL)
    np.testing.assert_allclose([atoms.calc.results[k] for k in ("max_devi_v", "min_devi_v", "avg_devi_v")], virial,
                               rtol=0, atol=TOL)


def test_deviation_only_every_out_freq_steps_and_stale_compute_is_an_error(members, tmp_path):
    lmp = ensemble_lammps(tmp_path, water_box(seed=3), members[0], members[1:], "out_freq 3",
                          ["velocity all create 300 5", "fix nve all nve", "timestep 0.0005"])
    lmp.command("run 7")
    assert read_model_devi(tmp_path / "model_devi.out")[:, 0].tolist() == [0, 3, 6]
    with pytest.raises(Exception, match=r"invoked at step 7, but pair_style nnp measured the deviation last at "
                                        r"step 6: it does so every out_freq = 3 steps"):
        lmp.command("variable d equal c_dev[1]")
        lmp.command("print $(v_d)")
    lmp.close()


def planted_frames(atoms, velocity: np.ndarray, dt: float, steps: int):
    """Atom 0 moves at constant velocity (Å/ps) and the others stay: the positions fix move produces."""
    for step in range(steps + 1):
        frame = atoms.copy()
        frame.positions[0] += velocity * dt * step
        yield step, frame


def test_fix_halt_stops_at_the_right_step(members, tmp_path):
    atoms = water_box(seed=4)
    atoms.wrap()
    velocity, dt, every = np.array([60.0, 0.0, 0.0]), 0.001, 2
    maxdev = {s: numpy_deviation(members, f)[0].max() for s, f in planted_frames(atoms, velocity, dt, 16)
              if s % every == 0}
    # a threshold between two checked steps, so that the right step is unambiguous
    ordered = sorted(maxdev.values())
    threshold = None
    for step in sorted(maxdev)[2:]:
        below = max(maxdev[s] for s in maxdev if s < step)
        if maxdev[step] > below * 1.02:
            threshold, expected = float(0.5 * (below + maxdev[step])), step
            break
    assert threshold is not None, ordered
    lmp = ensemble_lammps(tmp_path, atoms, members[0], members[1:], f"out_freq {every}", [
        "group mover id 1", "group rest subtract all mover", f"timestep {dt}",
        f"fix drag mover move linear {velocity[0]} {velocity[1]} {velocity[2]}", "fix stay rest move linear 0 0 0",
        "variable maxdev equal c_dev[1]", f"fix stop all halt {every} v_maxdev > {threshold!r} error continue"])
    lmp.command("run 16")
    assert lmp.extract_global("ntimestep") == expected
    lmp.close()


MPI_DECK = """units metal
atom_style atomic
atom_modify map yes
boundary p p p
read_data {data}
pair_style nnp {device}ensemble {others} out_freq 2 out_file {out} atomic
pair_coeff * * {driver} H O
neighbor 1.0 bin
compute dev all nnp/deviation
velocity all create 300 7 loop geom
fix nve all nve
timestep 0.0005
dump d all custom 2 {dump} id c_dev
dump_modify d format float %20.15g
run 4
"""


@pytest.mark.mpi
@pytest.mark.parametrize("kind", ["reference", "egnn", "egnn-served", pytest.param("egnn-cuda", marks=pytest.mark.cuda)])
def test_two_ranks_equal_one_rank(members, tmp_path, kind, monkeypatch):
    """reference (version-1 file): deep ghost shell; EGNN: per-layer halo exchange. egnn-served: the
    members' exchanges handed from a helper thread to the LAMMPS thread (NNP_HALO_SERVE=1, the path of a
    GPU run) on the CPU; egnn-cuda: on a GPU, 1 and 2 ranks sharing it (skipped without one)."""
    device = ""
    if kind == "egnn-served":
        monkeypatch.setenv("NNP_HALO_SERVE", "1")
    if kind == "egnn-cuda":
        if not torch.cuda.is_available():
            pytest.skip("needs a CUDA GPU")
        device = "device cuda "
    if kind.startswith("egnn"):
        files = [export_model(small_model(seed=k), tmp_path / f"egnn{k}.nnp.pt") for k in range(3)]
    else:
        files = members
    data = tmp_path / "w.data"
    write_lammps_data(water_box(n_side=3, seed=5), data, ["H", "O"])
    results = {}
    for ranks in (1, 2):
        out, dump = tmp_path / f"devi.{ranks}", tmp_path / f"dump.{ranks}"
        deck = MPI_DECK.format(data=data, others=" ".join(map(str, files[1:])), out=out, driver=files[0], dump=dump,
                               device=device)
        done = run_deck(deck, tmp_path, ranks)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        if ranks == 2 and kind in ("egnn-served", "egnn-cuda"):
            assert "its halo exchanges (MPI) on this one" in done.stdout
        frames = dump.read_text().split("ITEM: TIMESTEP")[1:]
        atoms = [np.array(sorted([float(v) for v in row.split()] for row in f.split("ITEM: ATOMS")[1].strip()
                                 .splitlines()[1:])) for f in frames]
        results[ranks] = (read_model_devi(out), atoms)
    assert results[1][0][:, 0].tolist() == [0, 2, 4]
    assert results[1][0][-1, 4] > 1e-3 and results[1][0][-1, 1] > 1e-6  # max_devi_f, max_devi_v
    assert results[1][0].shape[1] == 8 + len(results[1][1][0])  # atomic: one column per atom
    np.testing.assert_allclose(results[2][0], results[1][0], rtol=0, atol=1e-9)
    for one, two in zip(results[1][1], results[2][1]):
        np.testing.assert_allclose(two, one, rtol=0, atol=TOL)


def egnn_file(tmp: Path, name: str, **kwargs) -> Path:
    return export_model(small_model(**kwargs), tmp / name)


MISMATCHES = {
    "species": (lambda tmp: write_model(tmp / "bad.nnp.pt", species=("H", "C")), "has species 'H C' but the driving"),
    "species_order": (lambda tmp: write_model(tmp / "bad.nnp.pt", species=("O", "H")), "has species 'O H'"),
    "cutoff": (lambda tmp: write_model(tmp / "bad.nnp.pt", cutoff=3.5), "has cutoff 3.5 A but the driving model"),
    "halo": (lambda tmp: egnn_file(tmp, "bad.nnp.pt"), "has halo 'per_layer' but the driving model"),
    "missing": (lambda tmp: tmp / "none.nnp.pt", "does not exist or cannot be read"),
}


@pytest.mark.parametrize("case", list(MISMATCHES))
def test_mismatched_member_is_a_clear_error_naming_the_file(members, tmp_path, case):
    make, message = MISMATCHES[case]
    bad = make(tmp_path)
    data = tmp_path / "w.data"
    write_lammps_data(water_box(seed=1), data, ["H", "O"])
    lmp = make_lammps()
    for line in ("units metal", "atom_style atomic", f"read_data {data}",
                 f"pair_style nnp ensemble {members[1]} {bad} out_freq 10"):
        lmp.command(line)
    with pytest.raises(Exception, match=re.escape(message)) as err:
        lmp.command(f"pair_coeff * * {members[0]} H O")
    assert str(bad) in str(err.value)
    lmp.close()
    if case != "missing":
        from nnp.calculator import NNPCalculator
        from nnp.export import ModelFileError

        with pytest.raises((ValueError, ModelFileError), match=re.escape(message)):
            NNPCalculator(members[0], ensemble=[bad])


@pytest.mark.parametrize("style,message", [
    ("nnp out_freq 10", "need ensemble member files"),
    ("nnp ensemble {m} out_freq 0", "out_freq must be a positive number of steps"),
    ("nnp", "compute nnp/deviation needs pair_style nnp with an ensemble"),
])
def test_bad_ensemble_settings_are_refused(members, tmp_path, style, message):
    data = tmp_path / "w.data"
    write_lammps_data(water_box(seed=1), data, ["H", "O"])
    lmp = make_lammps()
    lines = ["units metal", "atom_style atomic", f"read_data {data}", "pair_style " + style.format(m=members[1]),
             f"pair_coeff * * {members[0]} H O", "compute dev all nnp/deviation", "thermo_style custom step c_dev[1]",
             "run 0"]
    with pytest.raises(Exception, match=re.escape(message)):
        for line in lines:
            lmp.command(line)
    lmp.close()


def test_nnp_train_ensemble_trains_members_that_differ_only_in_seed(tmp_path, capsys):
    import yaml
    from ase.io import read

    from nnp.cli import main
    from nnp.calculator import NNPCalculator
    from test_training import emt_dataset, small_config

    data = emt_dataset(tmp_path / "emt.extxyz", n_frames=10)
    cfg = small_config(tmp_path, data, epochs=1, seed=5)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(tmp_path / "cfg.yaml"), "--ensemble", "2", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    files = [tmp_path / "run" / f"member{k}" / "model.nnp.pt" for k in range(2)]
    assert all(f.exists() for f in files)
    assert f"pair_style nnp ensemble {files[1]}" in printed and f"pair_coeff * * {files[0]}" in printed
    configs = [torch_provenance(f)["config"] for f in files]
    assert [c["train"]["seed"] for c in configs] == [5, 6]
    assert configs[0]["model"] == configs[1]["model"] and configs[0]["data"] == configs[1]["data"]
    assert all((f.parent / "results.json").exists() for f in files)
    atoms = read(data, 0)
    atoms.calc = NNPCalculator(files[0], ensemble=files[1:])
    atoms.get_potential_energy()
    assert atoms.calc.results["max_devi_f"] > 0.0


def torch_provenance(path: Path) -> dict:
    import json

    from nnp.export import load_exported

    return json.loads(load_exported(path)[1]["provenance"])


def scaled_egnn(path: Path, seed: int, scale: float) -> Path:
    import torch

    model = small_model(cutoff=3.0, layers=2, seed=seed)
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.mul_(scale)
    return export_model(model, path)


def test_stability_records_the_deviation_trace_up_to_the_collapse(tmp_path):
    import json

    from nnp.calculator import NNPCalculator
    from nnp.md.protocol import molecule_protocol
    from nnp.md.stability import run_stability

    driver = scaled_egnn(tmp_path / "broken.nnp.pt", seed=0, scale=2.0)  # collapses within 2 ps (test_stability)
    member = scaled_egnn(tmp_path / "other.nnp.pt", seed=1, scale=2.0)
    start = water_box(n_side=1, seed=0)[:3]
    start.pbc = False
    protocol = molecule_protocol(time_ps=2.0, check_every=5, sample_every=20, ensemble=(str(member),),
                                 deviation_every=5, deviation_threshold=0.15)
    summary = run_stability(driver, [start], protocol, tmp_path / "out", progress=False)
    entry = summary["trajectories"][0]
    assert entry["collapsed"]
    trace = np.load(tmp_path / "out" / "deviation.npz")["trajectory_0"]
    collapse_step = round(entry["time_ps"] * 1000 / protocol.timestep_fs)
    assert trace[0, 0] == 0 and np.all(np.diff(trace[:, 0]) == 5) and trace[-1, 0] <= collapse_step
    start.calc = NNPCalculator(driver, ensemble=[member])
    start.get_potential_energy()
    results = start.calc.results
    np.testing.assert_allclose(trace[0, 4:], results["model_deviation"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(trace[0, 1:4], [results[k] for k in ("max_devi_v", "min_devi_v", "avg_devi_v")],
                               rtol=1e-9, atol=1e-12)
    crossing = int(trace[np.argmax(trace[:, 4] > 0.15), 0]) if (trace[:, 4] > 0.15).any() else None
    assert entry["first_exceeds_step"] == crossing
    if crossing is not None:
        assert entry["warning_steps_before_collapse"] == collapse_step - crossing
    assert (tmp_path / "out" / "deviation.png").exists()
    assert json.loads((tmp_path / "out" / "stability.json").read_text())["trajectories"][0] == entry


def test_pair_style_reissued_without_pair_coeff_is_an_error(members, tmp_path):
    data = tmp_path / "w.data"
    write_lammps_data(water_box(seed=1), data, ["H", "O"])
    lmp = make_lammps()
    for line in ("units metal", "atom_style atomic", f"read_data {data}", f"pair_style nnp ensemble {members[1]}",
                 f"pair_coeff * * {members[0]} H O", f"pair_style nnp ensemble {members[2]}"):
        lmp.command(line)
    with pytest.raises(Exception, match="the ensemble members load at pair_coeff"):
        lmp.command("run 0")
    lmp.close()


def test_nnp_train_ensemble_of_fewer_than_two_is_a_user_error(tmp_path, capsys):
    import yaml

    from nnp.cli import main
    from test_training import small_config

    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(small_config(tmp_path, tmp_path / "none.extxyz")))
    assert main(["train", "--config", str(tmp_path / "cfg.yaml"), "--ensemble", "0"]) == 2
    assert "--ensemble needs at least 2 members, got 0" in capsys.readouterr().err

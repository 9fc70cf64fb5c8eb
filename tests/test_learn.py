"""nnp learn: the active-learning loop at toy size (bulk Cu, EMT as the reference method).

The loop runs in a subprocess with one thread, as a user runs it; the deviation it records is checked
against an independent numpy computation on the members' forces, the selection against the trust
window, and a run killed with SIGKILL in each stage against an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import ase.io
import numpy as np
import pytest
import yaml
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from nnp.calculator import NNPCalculator
from nnp.config import ConfigError
from nnp.data.errors import DatasetError
from nnp.data.readers import read_structures
from nnp.learn import learn_config_from_dict
from nnp.learn.calibration import deviation_calibration, max_devi_f
from nnp.learn.labelling import label_frames, make_labeller, read_labelled
from nnp.learn.loop import _stable_summary, _start_data
from nnp.learn.selection import classify, classify_frames, farthest_point_sampling

TESTS = Path(__file__).parent
LO, HI = 0.02, 2.0


def cu_frames(n: int, seed: int = 0, sigma: float = 0.05) -> list:
    rng = np.random.default_rng(seed)
    base = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    frames = []
    for _ in range(n):
        atoms = base.copy()
        atoms.positions += rng.normal(0.0, sigma, atoms.positions.shape)
        atoms.calc = EMT()
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
        frames.append(atoms)
    return frames


def write_setup(tmp: Path, run: str, delay: float = 0.0, calibrate: int = 0, max_iterations: int = 2) -> Path:
    ase.io.write(tmp / "init.extxyz", cu_frames(20), format="extxyz")
    # the start as a LAMMPS user has it: a data file without Masses, its elements as type_symbols (pair_coeff * * Cu)
    ase.io.write(tmp / "start.data", bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2)), format="lammps-data",
                 atom_style="atomic", masses=False)
    (tmp / "scratch.yaml").write_text(yaml.safe_dump({
        "name": "cu", "model": {"kind": "egnn", "cutoff": 4.0, "hidden": 16, "layers": 2, "num_rbf": 8},
        "data": {"val_fraction": 0.2, "test_fraction": 0.0},
        "train": {"epochs": 6, "batch_size": 4, "lr": 0.005}}))
    config = tmp / f"{run}.yaml"
    config.write_text(yaml.safe_dump({
        "output_dir": str(tmp / run), "start": str(tmp / "scratch.yaml"), "initial_data": str(tmp / "init.extxyz"),
        "ensemble": 2, "train": ["train.epochs=6"],
        "explore": {"systems": [{"structure": str(tmp / "start.data"), "type_symbols": ["Cu"], "temperatures": [900],
                                 "steps": 200, "replicas": 2}], "timestep_fs": 2.0, "out_freq": 10},
        "deviation": {"lo": LO, "hi": HI, "calibrate": calibrate}, "select": {"per_iteration": 5},
        "labeller": {"calculator": "emt_labeller:SlowEMT", "kwargs": {"delay": delay}},
        "stop": {"candidate_fraction": 0.01, "max_labels": 35, "max_iterations": max_iterations}}))
    return config


def members_forces(members, frame) -> np.ndarray:
    """(members, atoms, 3): each member's forces on ``frame`` through the Python calculator (not LAMMPS)."""
    forces = []
    for member in members:
        atoms = frame.copy()
        atoms.calc = NNPCalculator(member)
        forces.append(atoms.get_forces())
    return np.stack(forces)


def learn_process(config: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen([sys.executable, "-m", "nnp.cli", "learn", "--config", str(config), "--no-progress"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run_to_end(config: Path) -> str:
    proc = learn_process(config)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    return out


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """One uninterrupted loop: 2 iterations, then the final ensemble on every label."""
    tmp = tmp_path_factory.mktemp("learn")
    out = run_to_end(write_setup(tmp, "run"))
    assert "iteration 1:" in out and "stopped: iteration budget reached (2)" in out
    return tmp


def test_loop_end_to_end(finished):
    run = finished / "run"
    summary = json.loads((run / "learn.json").read_text())
    rows = summary["iterations"]
    assert [r["iteration"] for r in rows] == [0, 1] and summary["stopped_by"].startswith("iteration budget")
    initial = len(ase.io.read(run / "data-000.extxyz", ":"))
    for k, row in enumerate(rows):
        it = run / f"iter-{k:03d}"
        labelled = read_labelled(it / "labelled.extxyz")
        candidates = ase.io.read(it / "candidates.extxyz", ":")
        assert row["new_labels"] == len(labelled) == len(candidates) - row["label_failures"] > 0
        assert row["frames"] == row["accurate"] + row["candidate"] + row["failed"] == 2 * (200 // 10 + 1)
        assert row["volume_ratio"] is None  # NVT: the box never changes
        # the selection respects the trust window, and picks distinct frames
        assert all(LO <= c.info["max_devi_f"] < HI for c in candidates)
        assert len({(c.info["step"], round(c.positions[0, 0], 8)) for c in candidates}) == len(candidates)
        # data-<k+1> = data-<k> + the labels of iteration k, with EMT's numbers
        before, after = (ase.io.read(run / f"data-{j:03d}.extxyz", ":") for j in (k, k + 1))
        assert len(after) == len(before) + len(labelled)
        for frame in after[len(before):]:
            reference = frame.copy()
            reference.calc = EMT()
            np.testing.assert_allclose(frame.get_forces(), reference.get_forces(), atol=1e-6)  # extxyz: 8 decimals
    assert rows[-1]["labels"] == initial + sum(r["new_labels"] for r in rows)
    assert all(Path(m).exists() for m in summary["final_models"]) and "iter-002" in summary["final_models"][0]
    assert (run / "learn.png").exists()


def test_recorded_deviation_equals_numpy_on_the_members_forces(finished):
    """max_devi_f that the loop read from LAMMPS = DeePMD's formula over the members' forces (numpy)."""
    it = finished / "run" / "iter-000"
    members = [it / "train" / f"member{k}" / "model.nnp.pt" for k in range(2)]
    frames = ase.io.read(it / "explore" / "system0-T900-r1" / "frames.extxyz", ":")
    for frame in frames[:: max(1, len(frames) // 4)]:
        forces = members_forces(members, frame)
        eps = np.sqrt(np.mean(np.sum((forces - forces.mean(0)) ** 2, axis=-1), axis=0))
        assert frame.info["max_devi_f"] == pytest.approx(eps.max(), abs=1e-6)
        assert max_devi_f(forces) == pytest.approx(eps.max(), rel=1e-12)


def test_calibration_measures_the_driving_members_error_against_the_deviation(finished):
    """Two copies of one member: zero deviation, so every labelled frame is 'accurate'; the share of those
    whose real error (member 0 against the EMT labels) reaches lo is counted by hand here."""
    it = finished / "run" / "iter-000"
    member = str(it / "train" / "member0" / "model.nnp.pt")
    frames = read_labelled(it / "labelled.extxyz")
    assert len(frames) >= 2
    same = deviation_calibration([member, member], frames, lo=LO)
    errors = []
    for frame in frames:
        atoms = frame.copy()
        atoms.calc = NNPCalculator(member)
        errors.append(np.linalg.norm(atoms.get_forces() - frame.get_forces(), axis=1).max())
    assert same["frames"] == len(frames) and same["median_max_devi_f_eV_A"] == 0.0
    assert same["accurate_fraction"] == 1.0
    assert same["accurate_but_error_above_lo_fraction"] == pytest.approx(np.mean(np.array(errors) >= LO))
    assert same["median_max_error_eV_A"] == pytest.approx(np.median(errors), rel=1e-9)
    both = deviation_calibration([member, str(it / "train" / "member1" / "model.nnp.pt")], frames, lo=LO)
    assert both["median_max_devi_f_eV_A"] > 0 and both["median_max_error_eV_A"] == same["median_max_error_eV_A"]


def test_calibrated_deviation_scales_the_trust_window(tmp_path):
    """deviation.calibrate: random explored frames are labelled, the scale = median(member 0's max force error /
    max_devi_f) on them (recomputed here), accurate = scale * deviation < lo while hi stays on the raw
    deviation, and the calibration labels join the data and the label count."""
    run = tmp_path / "cal"
    out = run_to_end(write_setup(tmp_path, "cal", calibrate=4, max_iterations=1))
    it = run / "iter-000"
    calibration = json.loads((it / "calibration.json").read_text())
    labelled = read_labelled(it / "calibration-labelled.extxyz")
    assert calibration["labelled"] == len(labelled) == 4
    assert all(f.info["max_devi_f"] < HI for f in labelled)
    member0 = NNPCalculator(str(it / "train" / "member0" / "model.nnp.pt"))
    ratios = []
    for frame in labelled:
        atoms = frame.copy()
        atoms.calc = member0
        ratios.append(np.linalg.norm(atoms.get_forces() - frame.get_forces(), axis=1).max() / frame.info["max_devi_f"])
    scale = calibration["scale"]
    assert scale == pytest.approx(np.median(ratios), rel=1e-6) and f"deviation x {scale:.3g}" in out
    assert json.loads((it / "selection.json").read_text())["scale"] == scale
    candidates = read_labelled(it / "labelled.extxyz")
    assert candidates and all(LO <= scale * c.info["max_devi_f"] and c.info["max_devi_f"] < HI for c in candidates)
    selection = json.loads((it / "selection.json").read_text())
    frames = [f for r in sorted((it / "explore").iterdir()) for f in ase.io.read(r / "frames.extxyz", ":")]
    assert selection["accurate"] == sum(scale * f.info["max_devi_f"] < LO for f in frames)
    row = json.loads((run / "learn.json").read_text())["iterations"][0]
    assert row["new_labels"] == 4 + len(candidates)
    assert len(ase.io.read(run / "data-001.extxyz", ":")) == 20 + 4 + len(candidates)


def test_finished_loop_does_not_run_again(finished):
    before = (finished / "run" / "learn.json").read_text()
    out = run_to_end(finished / "run.yaml")
    assert "iteration 0:" not in out and "stopped: iteration budget reached (2)" in out
    assert (finished / "run" / "learn.json").read_text() == before


def test_final_train_adds_a_production_ensemble_to_a_stopped_loop(finished, tmp_path):
    """final_train added to a stopped loop trains one more ensemble on every label, each member warm-started from
    the loop's last one (with a learning rate of ~0 it keeps those weights); run again it is kept; changed, it is
    a clear error."""
    shutil.copytree(finished / "run", tmp_path / "run")
    values = yaml.safe_load((finished / "run.yaml").read_text())
    values.update(output_dir=str(tmp_path / "run"), final_train=["train.epochs=2", "train.lr=1e-12"])
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(values))
    rows = json.loads((tmp_path / "run" / "learn.json").read_text())["iterations"]
    out = run_to_end(tmp_path / "run.yaml")
    assert "iteration 0:" not in out and "final ensemble (train.epochs=2 train.lr=1e-12) on data-002.extxyz" in out
    summary = json.loads((tmp_path / "run" / "learn.json").read_text())
    assert summary["iterations"] == rows and summary["final_train"]["data"].endswith("data-002.extxyz")
    assert summary["final_models"] == [str(tmp_path / "run" / "final" / f"member{i}" / "model.nnp.pt") for i in (0, 1)]
    frame = ase.io.read(tmp_path / "run" / "data-002.extxyz", index=-1)
    last = [str(tmp_path / "run" / "iter-002" / "train" / f"member{i}" / "model.nnp.pt") for i in (0, 1)]
    # float32 training: the EMA of unchanged weights moves them by rounding (~2e-7), the forces by ~1e-6 eV/Å
    np.testing.assert_allclose(members_forces(summary["final_models"], frame), members_forces(last, frame), atol=1e-5)
    assert not np.allclose(*members_forces(summary["final_models"], frame))  # each member from its own weights
    before = (tmp_path / "run" / "learn.json").read_text()
    assert "final ensemble" in run_to_end(tmp_path / "run.yaml")  # resumed: nothing trained again
    assert json.loads((tmp_path / "run" / "learn.json").read_text()) == json.loads(before)
    values["final_train"] = ["train.epochs=3"]
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(values))
    proc = learn_process(tmp_path / "run.yaml")
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode != 0 and "remove that folder to train the final ensemble again" in out


def _rerun_copy(finished: Path, tmp_path: Path, **changes) -> tuple[Path, dict]:
    """The finished loop copied to ``tmp_path/run``, its config with ``changes`` (section: {key: value})."""
    shutil.copytree(finished / "run", tmp_path / "run")
    values = yaml.safe_load((finished / "run.yaml").read_text())
    values["output_dir"] = str(tmp_path / "run")
    for section, update in changes.items():
        values[section] = {**values[section], **update} if isinstance(update, dict) else update
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(values))
    return tmp_path / "run.yaml", values


def test_a_budget_stop_lifted_by_the_config_goes_on_with_the_last_ensemble(finished, tmp_path):
    """Stopped by its iteration budget (2); run again with 3, the loop goes on from iteration 2, whose ensemble
    (trained on every label when the loop stopped) is used as it is, not trained again."""
    config, _ = _rerun_copy(finished, tmp_path, stop={"max_iterations": 3})
    run = tmp_path / "run"
    before = json.loads((run / "learn.json").read_text())["iterations"]
    model = run / "iter-002" / "train" / "member0" / "model.nnp.pt"
    trained = model.read_bytes()
    out = run_to_end(config)
    assert "iteration 1's stop (iteration budget reached (2)) does not hold under the new config" in out
    assert "iteration 2:" in out and "iteration 0:" not in out
    rows = json.loads((run / "learn.json").read_text())["iterations"]
    assert [r["iteration"] for r in rows] == [0, 1, 2] and rows[0] == before[0]
    assert rows[1]["stop"] is None and rows[1]["stop_lifted"] == before[1]["stop"]
    assert rows[2]["labels"] == rows[1]["labels"] + rows[2]["new_labels"] and rows[2]["stop"]
    assert model.read_bytes() == trained and rows[2]["settings"]["stop"]["max_iterations"] == 3


def test_a_no_candidates_stop_runs_its_iteration_again_when_hi_is_raised(tmp_path):
    """hi below every deviation: every replica fails at step 0 and the loop stops (no candidates), as its message
    says; raised, as the message advises, the same iteration explores again with the ensemble it has."""
    config = write_setup(tmp_path, "low")
    values = yaml.safe_load(config.read_text())
    values["deviation"].update(lo=1e-6, hi=2e-6)
    config.write_text(yaml.safe_dump(values))
    out = run_to_end(config)
    assert "stopped: no candidates" in out and "and run nnp learn again" in out
    run = tmp_path / "low"
    model = run / "iter-000" / "train" / "member0" / "model.nnp.pt"
    trained = model.read_bytes()
    values["deviation"].update(lo=LO, hi=HI)
    config.write_text(yaml.safe_dump(values))
    out = run_to_end(config)
    assert "deviation.hi: 2e-06 -> 2.0" in out and "running it again from its exploration" in out
    rows = json.loads((run / "learn.json").read_text())["iterations"]
    assert [r["iteration"] for r in rows] == [0, 1] and rows[0]["new_labels"] > 0
    assert rows[0]["settings"]["deviation"]["hi"] == HI
    assert model.read_bytes() == trained
    assert all(LO <= c.info["max_devi_f"] < HI for c in ase.io.read(run / "iter-000" / "candidates.extxyz", ":"))


def test_what_a_started_loop_is_made_of_cannot_change(finished, tmp_path):
    config, _ = _rerun_copy(finished, tmp_path, seed=5)
    proc = learn_process(config)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode != 0 and "started with other seed (seed: 0 -> 5)" in out
    assert "cannot change in a started loop" in out


def _wait_for(proc: subprocess.Popen, marker, timeout: float = 300.0) -> bool:
    """Until marker() is true (then True) or the process ends (False)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if marker():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    raise TimeoutError("the learn process neither reached the stage nor ended")


def _labelling_started(state: Path) -> bool:
    try:
        s = json.loads(state.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return 0 < s["done"] < s["total"]


def test_sigkill_in_each_stage_resumes_to_the_same_data(finished, tmp_path):
    """Killed while training, exploring and labelling (SIGKILL), restarted each time: the same data."""
    config = write_setup(tmp_path, "killed", delay=0.3)
    run = tmp_path / "killed"
    it = run / "iter-000"
    markers = [
        ("training", lambda: (it / "train" / "member1" / "last.ckpt").exists()),
        ("exploring", lambda: (it / "explore" / "system0-T900-r0" / "result.json").exists()),
        ("labelling", lambda: _labelling_started(it / "labelled.extxyz.state.json")),
    ]
    killed = []
    for stage, marker in markers:
        proc = learn_process(config)
        if _wait_for(proc, marker):
            proc.send_signal(signal.SIGKILL)
            killed.append(stage)
        proc.communicate(timeout=600)
    assert killed == ["training", "exploring", "labelling"]
    run_to_end(config)
    for k in range(3):
        name = f"data-{k:03d}.extxyz"
        a, b = (ase.io.read(d / name, ":") for d in (finished / "run", run))
        assert len(a) == len(b)
        for x, y in zip(a, b):
            np.testing.assert_allclose(x.positions, y.positions, atol=1e-8)
            np.testing.assert_allclose(x.get_forces(), y.get_forces(), atol=1e-8)


def test_failing_labeller_is_counted_and_skipped(tmp_path):
    frames = cu_frames(4, seed=1)
    bad = frames[1].copy()
    bad.set_chemical_symbols(["Fe"] * len(bad))  # EMT has no parameters for Fe: it raises
    frames[1] = bad
    state = label_frames(frames, tmp_path / "labelled.extxyz", make_labeller("emt_labeller:SlowEMT"))
    assert (state["labelled"], state["failed"], state["retried"], state["done"]) == (3, 1, 1, 4)
    assert state["complete"]
    assert [a.get_chemical_symbols()[0] for a in read_labelled(tmp_path / "labelled.extxyz")] == ["Cu"] * 3
    # labelling again does nothing (resume of a complete state)
    assert label_frames(frames, tmp_path / "labelled.extxyz", make_labeller("emt_labeller:SlowEMT"))["labelled"] == 3
    assert len(read_labelled(tmp_path / "labelled.extxyz")) == 3


def test_labeller_failure_is_retried_with_a_fresh_calculator(tmp_path):
    """A calculator whose state goes bad between frames (tblite's SCF guess on a far-away frame) must not
    cost labels: the failed frame is redone with a fresh calculator, with the same numbers as EMT."""
    frames = cu_frames(4, seed=2)
    state = label_frames(frames, tmp_path / "labelled.extxyz", make_labeller("emt_labeller:WornEMT"))
    assert (state["labelled"], state["failed"], state["retried"]) == (4, 0, 3)
    for frame, labelled in zip(frames, read_labelled(tmp_path / "labelled.extxyz")):
        frame.calc = EMT()
        np.testing.assert_allclose(labelled.get_forces(), frame.get_forces(), atol=1e-7)  # extxyz text


def test_selection_window_and_diversity():
    kinds = classify(np.array([0.01, 0.05, 0.2, 0.5, np.nan]), lo=0.05, hi=0.5)
    assert kinds.tolist() == ["accurate", "candidate", "candidate", "failed", "failed"]
    features = np.array([[0.0], [0.1], [5.0], [5.1], [10.0]])
    assert farthest_point_sampling(features, 3, first=0) == [0, 4, 2]
    assert farthest_point_sampling(np.zeros((4, 2)), 3, first=1) == [1]  # duplicates are not picked twice


def test_atoms_run_into_each_other_are_a_collapse_whatever_the_deviation():
    """Two atoms under half their covalent radii (here across the periodic boundary) are found and named, and a
    frame flagged with them is failed even with a deviation inside the window; the intact box has none."""
    from helpers import water_box

    from nnp.md.criteria import close_contact

    water = water_box(n_side=2)
    assert close_contact(water) is None
    collapsed = water.copy()
    o, h = 0, 4  # the first O and a hydrogen of another molecule: pulled 0.2 Å across the cell's face
    collapsed.positions[h] = collapsed.positions[o] + [0.2, 0.0, 0.0] - collapsed.cell[0]
    reason = close_contact(collapsed)
    assert reason is not None and "0.20 Å" in reason and "(O)" in reason and "(H)" in reason
    frames = [water.copy(), collapsed.copy()]
    for frame in frames:
        frame.info["max_devi_f"] = 0.1
    frames[1].info["close_contact"] = True
    assert classify_frames(frames, lo=0.05, hi=0.5).tolist() == ["candidate", "failed"]


def test_exploration_from_a_collapsed_start_is_a_clear_error(finished):
    """A start structure with atoms run into each other is bad input: an error naming the atoms, no MD."""
    from nnp.errors import UserError
    from nnp.learn.exploration import run_replica

    members = sorted(str(p) for p in (finished / "run" / "iter-000" / "train").glob("member*/model.nnp.pt"))
    start = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    start.positions[1] = start.positions[0] + [0.3, 0.0, 0.0]
    with pytest.raises(UserError, match="start structure is not physical: atoms 0 \\(Cu\\) and 1 \\(Cu\\) 0.30 Å"):
        run_replica(members, ["Cu"], start, 300.0, 10, 0, timestep_fs=1.0, out_freq=10, thermostat_fs=100.0,
                    hi=50.0, vacuum=10.0, output_dir=finished / "contact")
    assert not (finished / "contact" / "result.json").exists()


def test_exploration_frames_carry_the_box_lammps_has(finished, tmp_path):
    """NPT exploration from a sheared, rotated box (a cell LAMMPS must rotate: not lower-triangular): frame 0 is
    the start moved rigidly (same distances, same volume); at the driving member's own pressure of the start the
    volume moves, the shape stays (iso); and the deviation recomputed on the frames as written equals what LAMMPS
    measured (it sees the periodic images, so an unrotated or stale cell would show). A molecule under pressure
    and a box at LAMMPS's tilt limit are errors naming the fix."""
    from ase.units import bar

    from nnp.errors import UserError
    from nnp.learn.exploration import read_frames, run_replica

    members = sorted(str(p) for p in (finished / "run" / "iter-000" / "train").glob("member*/model.nnp.pt"))
    start = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    sheared = start.cell[:].copy()
    sheared[2, 0] += 0.15 * sheared[0, 0]
    start.set_cell(sheared, scale_atoms=True)
    start.rotate(30, "z", rotate_cell=True)
    start.rotate(20, "x", rotate_cell=True)
    assert not np.allclose(np.triu(start.cell[:], 1), 0.0)
    probe = start.copy()
    probe.calc = NNPCalculator(members[0])
    own_pressure = -probe.get_stress()[:3].mean() / bar  # the toy model's, far from 0: it never saw another volume
    run = dict(timestep_fs=1.0, out_freq=10, thermostat_fs=100.0, hi=50.0, vacuum=10.0, barostat_fs=1000.0)
    result = run_replica(members, ["Cu"], start, 300.0, 40, 3, output_dir=tmp_path / "npt", pressure_bar=own_pressure,
                         **run)
    frames = read_frames(tmp_path / "npt")
    assert result.steps == 40 and len(frames) == 5, result.reason
    assert frames[-1].info["pressure_bar"] == pytest.approx(own_pressure)
    np.testing.assert_allclose(np.sort(frames[0].get_all_distances(mic=True).ravel()),
                               np.sort(start.get_all_distances(mic=True).ravel()), atol=1e-6)
    volumes = np.array([f.get_volume() for f in frames])
    assert volumes[0] == pytest.approx(start.get_volume(), rel=1e-9) and np.ptp(volumes) > 1e-4 * volumes[0]
    assert result.volume_ratio == pytest.approx(volumes[-1] / start.get_volume(), rel=1e-12)
    summary = _stable_summary([{**result.__dict__}, {"time_ps": 0.01, "failed": True, "volume_ratio": 2.0}])
    assert summary["volume_ratio"] == [result.volume_ratio, 2.0]  # the loop's row: how far the barostats went
    shape = start.cell.cellpar()
    for frame in frames:
        np.testing.assert_allclose(frame.cell.cellpar()[3:], shape[3:], atol=1e-6)  # angles
        np.testing.assert_allclose(frame.cell.cellpar()[:3] / frame.cell.cellpar()[0], shape[:3] / shape[0], rtol=1e-8)
    for frame in (frames[0], frames[-1]):
        assert frame.info["max_devi_f"] == pytest.approx(max_devi_f(members_forces(members, frame)), abs=1e-6)
    molecule = bulk("Cu", "fcc", a=3.61, cubic=True)
    molecule.pbc = False
    with pytest.raises(UserError, match="needs a structure periodic in x, y and z"):
        run_replica(members, ["Cu"], molecule, 300.0, 10, 0, output_dir=tmp_path / "molecule", pressure_bar=1.0, **run)
    primitive = bulk("Cu", "fcc", a=3.61).repeat((3, 3, 3))  # the 60° cell: LAMMPS tilt xy = lx / 2
    with pytest.raises(UserError, match="tilt xy = .* is half its length lx"):
        run_replica(members, ["Cu"], primitive, 300.0, 10, 0, output_dir=tmp_path / "fcc", pressure_bar=1.0, **run)


def test_bad_config_and_labeller_are_clear_errors():
    base = {"output_dir": "x", "start": "organic-xtb", "initial_data": "d.extxyz",
            "explore": {"systems": [{"structure": "s.xyz"}]}}
    learn_config_from_dict(base)
    with pytest.raises(ConfigError, match="unknown key.*tempratures"):
        learn_config_from_dict({**base, "explore": {"systems": [{"structure": "s.xyz", "tempratures": [300]}]}})
    with pytest.raises(ConfigError, match="lo < hi"):
        learn_config_from_dict({**base, "deviation": {"lo": 0.5, "hi": 0.1}})
    with pytest.raises(ConfigError, match="ensemble must be >= 2"):
        learn_config_from_dict({**base, "ensemble": 1})
    with pytest.raises(ConfigError, match="type_symbols names the elements of a LAMMPS data file"):
        learn_config_from_dict({**base, "explore": {"systems": [{"structure": "s.xyz", "type_symbols": ["Cu"]}]}})
    with pytest.raises(ConfigError, match="pressures is empty"):
        learn_config_from_dict({**base, "explore": {"systems": [{"structure": "s.xyz", "pressures": []}]}})
    with pytest.raises(ConfigError, match="explore.barostat must be one of iso, aniso, tri, not 'npt'"):
        learn_config_from_dict({**base, "explore": {"systems": [{"structure": "s.xyz", "pressures": [1.0]}],
                                                    "barostat": "npt"}})
    with pytest.raises(ConfigError, match="initial_data_keys names the file's keys of energy, forces and stress, not "
                                          r"\['energies'\]"):
        learn_config_from_dict({**base, "initial_data_keys": {"energies": "REF_energy"}})
    with pytest.raises(ValueError, match="cannot be imported"):
        make_labeller("no_such_module:Calc")


def test_initial_data_with_labels_under_other_names(tmp_path):
    """``initial_data_keys`` reads a MACE-style file (REF_energy, REF_forces); data-000 holds the labels under
    ASE's names, as every later data file does."""
    from test_readers import labelled_frames, mace_style_extxyz

    frames = labelled_frames(stress=True)
    source = mace_style_extxyz(tmp_path / "mace.extxyz", frames)
    base = {"output_dir": str(tmp_path / "loop"), "start": "organic-xtb", "initial_data": str(source),
            "explore": {"systems": [{"structure": "s.xyz"}]}}
    (tmp_path / "loop").mkdir()
    with pytest.raises(DatasetError, match="info 'REF_energy', per-atom 'REF_forces'"):
        _start_data(learn_config_from_dict(base))
    data = _start_data(learn_config_from_dict({**base, "initial_data_keys": {"energy": "REF_energy",
                                                                             "forces": "REF_forces"}}))
    back = read_structures(data)
    assert [b.get_potential_energy() for b in back] == pytest.approx([a.get_potential_energy() for a in frames])
    np.testing.assert_allclose(back[2].get_forces(), frames[2].get_forces(), atol=1e-9)


def test_a_window_nothing_falls_into_stops_the_loop_with_the_reason(tmp_path):
    """An ensemble whose every frame is at or above hi has nothing to label: the loop says why, once."""
    config = write_setup(tmp_path, "tight")
    values = yaml.safe_load(config.read_text())
    values["deviation"] = {"lo": 0.0, "hi": 1e-9}  # every deviation is >= hi: all frames failed
    # from a rattled crystal (the perfect one has zero force, so zero deviation, by symmetry)
    ase.io.write(tmp_path / "start.data", cu_frames(1, seed=5)[0], format="lammps-data", atom_style="atomic",
                 masses=False)
    config.write_text(yaml.safe_dump(values))
    out = run_to_end(config)
    summary = json.loads((tmp_path / "tight" / "learn.json").read_text())
    assert len(summary["iterations"]) == 1 and summary["iterations"][0]["failed"] == summary["iterations"][0]["frames"]
    # every replica failed on its start structure (step 0): the reason says that hi cannot work yet
    assert summary["stopped_by"].startswith("no candidates: the deviation at every replica's start structure")
    assert "raise deviation.hi" in out

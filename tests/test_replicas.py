"""Replica-batched MDsim stability in one LAMMPS run: exactness against single runs and against MDsim's integrator."""

import json

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.neighborlist import NeighborList, natural_cutoffs

from nnp.config import ModelConfig
from nnp.data.readers import bundled_dataset, read_structures
from nnp.export import export_model
from nnp.md.criteria import mdsim_bonds, mean_bond_lengths
from nnp.md.protocol import molecule_protocol
from nnp.md.replicas import MDSIM_TTIME, run_replica_stability, run_replicas, start_velocities
from nnp.models import build_potential

MVV2E, FTM2V, BOLTZ = 1.0364269e-4, 1.0 / 1.0364269e-4, 8.617343e-5  # LAMMPS units metal


@pytest.fixture(scope="module")
def aspirin():
    return read_structures(bundled_dataset("aspirin_xtb_test_small"))


def aspirin_model(path, kind="egnn", seed=0):
    """A float64 random-weight H/C/O model (it does not hold aspirin together: collapses come within ~100 steps)."""
    torch.manual_seed(seed)
    config = ModelConfig(kind=kind, cutoff=4.0, hidden=8, layers=2, num_rbf=8, emb_trip=8, emb_rbf=8, emb_cbf=8,
                         num_spherical=4, num_radial=4)
    model = build_potential(config, ["H", "C", "O"], avg_num_neighbors=8.0,
                            reference_energies=torch.tensor([-13.6, -1030.0, -2040.0]), scale=0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return export_model(model.double().eval(), path)


def test_bonds_are_mdsims_ase_neighbor_list_and_reference_lengths_are_dataset_means(aspirin):
    start = aspirin[3]
    nl = NeighborList(natural_cutoffs(start), self_interaction=False)
    nl.update(start)
    a, b = np.asarray(nl.get_connectivity_matrix().todense()).nonzero()
    expected = sorted({(min(p, q), max(p, q)) for p, q in zip(a, b)})
    i, j = mdsim_bonds(start)
    assert list(zip(i.tolist(), j.tolist())) == expected and len(expected) >= 21  # aspirin has 21 bonds
    d_ref = mean_bond_lengths(aspirin, start.get_chemical_symbols(), i, j)
    by_hand = np.mean([np.linalg.norm(f.positions[j[0]] - f.positions[i[0]]) for f in aspirin])
    assert d_ref[0] == pytest.approx(by_hand, rel=1e-12)
    with pytest.raises(ValueError, match="no reference frame"):
        mean_bond_lengths([Atoms("H2", positions=[[0, 0, 0], [0.7, 0, 0]])], start.get_chemical_symbols(), i, j)


@pytest.mark.parametrize("kind", ["egnn", "gemnet_t"])
def test_replicas_equal_single_runs_and_removal_leaves_the_others_alone(tmp_path, aspirin, kind):
    model = aspirin_model(tmp_path / "m.nnp.pt", kind)
    # 120 steps; the random published GemNet-T (fitted-scale architecture) drifts more gently than the EGNN,
    # so its tolerance is tighter to get collapses at different steps
    protocol = molecule_protocol(time_ps=0.06, check_every=10, bond_tolerance=1.0 if kind == "gemnet_t" else 2.0)
    seeds = [11, 12, 13, 14]
    starts = [aspirin[0], aspirin[0], aspirin[5], aspirin[0]]
    batch = run_replicas(model, starts, seeds, protocol, aspirin, record_every=10)
    steps = [o.steps for o in batch.outcomes]
    assert len(set(steps)) > 1 and max(steps) > 100, steps  # replicas removed at different steps, others went on
    for k, (start, seed) in enumerate(zip(starts, seeds)):
        single = run_replicas(model, [start], [seed], protocol, aspirin, record_every=10)
        assert single.outcomes[0].steps == batch.outcomes[k].steps
        assert single.outcomes[0].collapsed == batch.outcomes[k].collapsed
        compared = 0
        for step, frame in single.positions.items():
            if step <= batch.outcomes[k].steps:
                np.testing.assert_allclose(batch.positions[step][k], frame[0], rtol=0, atol=1e-8)
                compared += 1
        assert compared == batch.outcomes[k].steps // 10 + 1


def test_overlapping_replicas_do_not_interact(tmp_path, aspirin):
    """neigh_modify exclude molecule/inter: even replicas 1 Å apart (atoms interleaved) are single runs."""
    model = aspirin_model(tmp_path / "m.nnp.pt")
    protocol = molecule_protocol(time_ps=0.03, check_every=10, bond_tolerance=50.0)
    radius = max(np.linalg.norm(a.positions - a.positions.mean(axis=0), axis=1).max() for a in (aspirin[2], aspirin[4]))
    close = run_replicas(model, [aspirin[2], aspirin[4]], [7, 8], protocol, aspirin, record_every=30,
                         margin=1.0 - 2 * radius - 4.0)
    assert close.spacing == pytest.approx(1.0)
    for k, (start, seed) in enumerate([(aspirin[2], 7), (aspirin[4], 8)]):
        single = run_replicas(model, [start], [seed], protocol, aspirin, record_every=30)
        for step in (30, 60):
            np.testing.assert_allclose(close.positions[step][k], single.positions[step][0], rtol=0, atol=1e-8)


def mdsim_nose_hoover(model, atoms, velocities, temperature, dt, tau, steps):
    """MDsim's NoseHoover step (mdsim/md/integrator.py) in LAMMPS metal units, forces from the ASE calculator."""
    from nnp.calculator import NNPCalculator

    atoms = atoms.copy()
    atoms.calc = NNPCalculator(model)
    m = atoms.get_masses()[:, None]
    n = len(atoms)
    kt = BOLTZ * temperature
    target, q, zeta = 1.5 * n * kt, 3.0 * n * kt * tau ** 2, 0.0
    x, v = atoms.positions.copy(), velocities.copy()
    f = atoms.get_forces()
    out = {0: x.copy()}
    for step in range(1, steps + 1):
        a = FTM2V * f / m - zeta * v
        ke0 = 0.5 * MVV2E * (m * v * v).sum()
        x = x + v * dt + a * (0.5 * dt * dt)
        v = v + 0.5 * dt * a
        ke1 = 0.5 * MVV2E * (m * v * v).sum()
        zeta += 0.5 * dt / q * (ke0 - target)
        zeta += 0.5 * dt / q * (ke1 - target)
        atoms.positions = x
        f = atoms.get_forces()
        v = (v + 0.5 * dt * FTM2V * f / m) / (1.0 + 0.5 * dt * zeta)
        if step % 10 == 0:
            out[step] = x.copy()
    return out, zeta


def test_fix_nvt_mdsim_is_mdsims_nose_hoover(tmp_path, aspirin):
    model = aspirin_model(tmp_path / "m.nnp.pt")
    protocol = molecule_protocol(time_ps=0.03, check_every=10, bond_tolerance=50.0)  # 60 steps, no collapse
    run = run_replicas(model, [aspirin[2]], [7], protocol, aspirin, record_every=10)
    start = aspirin[2].copy()
    start.positions = run.positions[0][0]
    dt = protocol.timestep_fs / 1000.0
    reference, zeta = mdsim_nose_hoover(model, start, start_velocities(aspirin[2], 500.0, 7), 500.0, dt,
                                        MDSIM_TTIME * dt, 60)
    assert abs(zeta) > 1.0  # 1/ps: the thermostat acted (tau = 10 fs), so the comparison tests it
    for step, x in reference.items():
        np.testing.assert_allclose(run.positions[step][0], x, rtol=0, atol=1e-8)
    # and the start velocities are MDsim's Maxwell-Boltzmann draw, without net momentum
    v = start_velocities(aspirin[2], 500.0, 7)
    assert np.abs((aspirin[2].get_masses()[:, None] * v).sum(axis=0)).max() < 1e-10
    assert not np.allclose(v, start_velocities(aspirin[2], 500.0, 8))


def test_summary_has_kaplan_meier_and_censored_runs(tmp_path, aspirin):
    model = aspirin_model(tmp_path / "m.nnp.pt")
    protocol = molecule_protocol(time_ps=0.05, check_every=10, bond_tolerance=1.5, sample_every=20)
    summary = run_replica_stability(model, [aspirin[k] for k in range(6)], protocol, tmp_path / "out", aspirin, seed=3)
    rows = summary["trajectories"]
    assert len(rows) == 6 and {r["seed"] for r in rows} == {3 + 1000 * k + 1 for k in range(6)}
    for r in rows:
        assert r["collapsed"] == (r["stable_ps"] < 0.05)  # censored exactly at the end of the run
    km = summary["kaplan_meier"]
    assert km["n"] == 6 and km["collapses"] == sum(r["collapsed"] for r in rows)
    assert (tmp_path / "out" / "survival.png").stat().st_size > 10_000
    # h(r) over the stable frames only: steps 0, 20, ... before the check that found a replica collapsed
    assert 0 < sum(r["collapsed"] for r in rows) < 6  # both kinds, so the count below tests the cut
    dt_fs = protocol.timestep_fs
    expected = sum(len([s for s in range(0, 101, 20) if (s < round(r["stable_ps"] * 1000 / dt_fs) if r["collapsed"]
                        else True)]) for r in rows)
    assert summary["h_r_frames"] == expected
    assert 0 < summary["h_r_mae"] < 2 and (tmp_path / "out" / "h_r.png").exists()
    with pytest.raises(ValueError, match="one seed per start"):
        run_replicas(model, aspirin[:2], [1], protocol, aspirin)


def test_cli_replicas_and_logrank_comparison(tmp_path, aspirin, capsys):
    import json

    from nnp.cli import main

    model = aspirin_model(tmp_path / "m.nnp.pt")
    first = tmp_path / "a"
    assert main(["stability", "--model", str(model), "--system", "aspirin", "--replicas", "4", "--time", "0.02ps",
                 "--output", str(first)]) == 0
    out = capsys.readouterr().out
    assert "Kaplan-Meier median stable time" in out
    summary = json.loads((first / "stability.json").read_text())
    assert len(summary["trajectories"]) == 4 and summary["kaplan_meier"]["collapses"] == 4  # random weights
    assert main(["stability", "--model", str(model), "--system", "aspirin", "--replicas", "4", "--time", "0.02ps",
                 "--output", str(tmp_path / "b"), "--compare", str(first / "stability.json")]) == 0
    assert "log-rank test against" in capsys.readouterr().out
    assert (tmp_path / "b" / "survival_compare.png").exists()
    assert main(["stability-compare", str(first / "stability.json"), str(tmp_path / "b" / "stability.json"),
                 "--output", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    assert "log-rank: chi2 = " in out and "4/4 collapsed" in out and (tmp_path / "c.png").exists()
    assert "median stable time 0.0" in out  # four collapses: the median is reached
    assert main(["stability-compare", str(tmp_path / "none.json"), str(first / "stability.json")]) == 2
    # water: --replicas N runs N trajectories (one LAMMPS run each) with the same Kaplan-Meier summary
    assert main(["stability", "--model", str(model), "--system", "water", "--replicas", "2", "--time", "0.02ps",
                 "--output", str(tmp_path / "w"), "--compare", str(first / "stability.json")]) == 0
    water = json.loads((tmp_path / "w" / "stability.json").read_text())
    assert water["protocol"]["system"] == "water" and water["kaplan_meier"]["n"] == 2
    assert [t["stable_ps"] for t in water["trajectories"]] == [t["time_ps"] for t in water["trajectories"]]
    assert "logrank_p" in water["comparison"] and (tmp_path / "w" / "survival_compare.png").exists()
    assert main(["stability", "--model", str(model), "--system", "water", "--replicas", "-1"]) == 2
    assert "must be >= 1" in capsys.readouterr().err


def test_an_exploding_replica_does_not_stop_the_run(tmp_path, aspirin):
    """Blown-up weights: atoms fly out of the box between two checks; LAMMPS drops them, the run goes on."""
    torch.manual_seed(1)
    config = ModelConfig(kind="egnn", cutoff=4.0, hidden=8, layers=2, num_rbf=8)
    model = build_potential(config, ["H", "C", "O"], avg_num_neighbors=8.0,
                            reference_energies=torch.tensor([-13.6, -1030.0, -2040.0]), scale=0.5)
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(0.3 * torch.randn_like(p)).mul_(8.0)
    path = export_model(model.double().eval(), tmp_path / "broken.nnp.pt")
    protocol = molecule_protocol(time_ps=0.2, check_every=400)
    run = run_replicas(path, [aspirin[0], aspirin[1]], [1, 2], protocol, aspirin)
    assert all(o.collapsed for o in run.outcomes)
    assert any("left the box" in o.reason for o in run.outcomes), [o.reason for o in run.outcomes]


KILL_AFTER_CHECKPOINT = """
import os, signal, sys
import nnp.md.replicas as replicas
from nnp.data.readers import bundled_dataset, read_structures
from nnp.md.protocol import molecule_protocol

save = replicas.save_checkpoint
def save_then_die(lmp, folder, fingerprint, step, *rest):  # SIGKILL right after the checkpoint at step 100
    save(lmp, folder, fingerprint, step, *rest)
    if step >= 100:
        os.kill(os.getpid(), signal.SIGKILL)
replicas.save_checkpoint = save_then_die
aspirin = read_structures(bundled_dataset("aspirin_xtb_test_small"))
protocol = molecule_protocol(time_ps=0.06, check_every=10, bond_tolerance=2.0)
replicas.run_replicas(sys.argv[1], [aspirin[0], aspirin[0], aspirin[5], aspirin[0]], [11, 12, 13, 14], protocol,
                      aspirin, record_every=10, checkpoint=sys.argv[2], checkpoint_ps=0.025)
"""


def test_a_killed_replica_run_continues_from_its_checkpoint(tmp_path, aspirin):
    """SIGKILL after the checkpoint at step 100 of 120 (replicas collapse at 90-110); called again, the run continues from it (restart file with
    every replica's Nosé–Hoover zeta, outcomes, frames) and ends as the uninterrupted run."""
    import subprocess
    import sys

    model = aspirin_model(tmp_path / "m.nnp.pt")
    protocol = molecule_protocol(time_ps=0.06, check_every=10, bond_tolerance=2.0)
    starts, seeds = [aspirin[0], aspirin[0], aspirin[5], aspirin[0]], [11, 12, 13, 14]
    whole = run_replicas(model, starts, seeds, protocol, aspirin, record_every=10)
    folder = tmp_path / "checkpoint"
    child = subprocess.run([sys.executable, "-c", KILL_AFTER_CHECKPOINT, str(model), str(folder)], timeout=300)
    assert child.returncode == -9  # killed, not finished
    state = json.loads((folder / "state.json").read_text())
    assert state["step"] == 100 and sorted(p.name for p in folder.iterdir()) == [
        "replicas-100.npz", "replicas-100.restart", "replicas-50.npz", "state.json"]  # step 50's restart went
    with np.load(folder / "replicas-100.npz") as chunk:  # each frame is written once: steps 60-100 here
        assert chunk["steps"].tolist() == [60, 70, 80, 90, 100]
    early = {o["index"]: o["steps"] for o in state["outcomes"]}
    assert early and len(early) < 4, early  # a replica had collapsed before the kill, another had not
    resumed = run_replicas(model, starts, seeds, protocol, aspirin, record_every=10, checkpoint=folder,
                           checkpoint_ps=0.025)
    assert resumed.resumed_from_step == 100
    assert [(o.steps, o.collapsed) for o in resumed.outcomes] == [(o.steps, o.collapsed) for o in whole.outcomes]
    assert sorted(resumed.positions) == sorted(whole.positions)
    for step, frame in whole.positions.items():
        np.testing.assert_allclose(resumed.positions[step], frame, rtol=0, atol=1e-8)
    with pytest.raises(ValueError, match="checkpoint of another stability run"):
        run_replicas(model, starts, [1, 2, 3, 4], protocol, aspirin, checkpoint=folder)

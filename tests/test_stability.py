"""Stability protocols in LAMMPS: the bond-deviation compute, fix halt, the RDF criterion."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from helpers import small_model, water_box
from nnp.data.generate.tip3p import box_length, initial_water, setup_lines, write_data_file
from nnp.data.molecules import reference_bonds
from nnp.export import export_model
from nnp.lammps import current_atoms, make_lammps
from nnp.md.observables import max_bond_deviation, rdf, rdf_mae
from nnp.md.protocol import molecule_protocol, water_protocol
from nnp.md.stability import run_stability, run_trajectory


def scrambled_model(tmp_path, scale=8.0):
    """A deliberately broken model: the weights of a small model blown up."""
    model = small_model(cutoff=3.0, layers=2)
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.mul_(scale)
    return export_model(model, tmp_path / "broken.nnp.pt")


def tip3p_lammps(tmp_path, n_molecules=64):
    data = tmp_path / "tip3p.data"
    write_data_file(initial_water(n_molecules, box_length(n_molecules, 0.997), 0), data)
    lmp = make_lammps()
    lmp.commands_list(setup_lines(data))
    return lmp


def test_bond_deviation_compute_equals_python_and_does_not_halt_classical_water(tmp_path):
    lmp = tip3p_lammps(tmp_path)
    lmp.commands_string("""
        compute bd all bond/deviation O H
        variable dev equal c_bd
        fix halt all halt 10 v_dev > 0.5 error continue
        thermo_style custom step temp pe c_bd
        thermo 50
        run 0
        velocity all create 300 5 mom yes rot yes
        fix nvt all nvt temp 300 300 50
        timestep 0.5
    """)

    def snapshot():
        return current_atoms(lmp, ["O", "H"])  # the TIP3P data file's types: 1 O, 2 H

    bonds = reference_bonds(snapshot())
    assert len(bonds[0]) == 128
    lmp.command("run 400")
    assert int(lmp.get_thermo("step")) == 400  # a classical reference run never halts
    assert lmp.extract_compute("bd", 0, 0) == pytest.approx(max_bond_deviation(snapshot(), bonds), abs=1e-9)
    assert 0.01 < lmp.extract_compute("bd", 0, 0) < 0.3
    lmp.close()


def test_halt_triggers_on_a_broken_model(tmp_path):
    broken = scrambled_model(tmp_path, scale=2.0)
    start = water_box(n_side=1, seed=0)[:3]
    start.pbc = False
    traj = run_trajectory(str(broken), start, molecule_protocol(time_ps=2.0, check_every=5, sample_every=20),
                          index=0, seed=1)
    assert traj.collapsed and traj.time_ps < 2.0
    assert "bond deviation" in traj.reason


def test_lammps_rdf_equals_python_rdf_and_self_error_is_zero(tmp_path):
    lmp = tip3p_lammps(tmp_path)
    lmp.commands_string("compute rdf all rdf 120 1 1 1 2 2 2 cutoff 6.0\nfix rdf all ave/time 1 1 1 c_rdf[*] mode vector\nrun 0")
    from nnp.md.stability import fix_rdf_column

    table = np.stack([fix_rdf_column(lmp, "rdf", 120, c) for c in range(7)], axis=1)
    atoms = current_atoms(lmp, ["O", "H"])
    lmp.close()
    for k, pair in enumerate([("O", "O"), ("O", "H"), ("H", "H")]):
        r, g = rdf([atoms], pair, 6.0, 120)
        np.testing.assert_allclose(table[:, 0], r, atol=1e-9)
        # LAMMPS excludes the bonded (special) pairs from its RDF: compare beyond the covalent range
        far = r > 2.0
        np.testing.assert_allclose(table[far, 1 + 2 * k], g[far], rtol=1e-6, atol=1e-6)
        assert rdf_mae(g, g) == 0.0


def test_water_protocol_on_a_broken_model_collapses(tmp_path):
    from nnp.data.readers import bundled_dataset, read_structures

    frames = read_structures(bundled_dataset())
    broken = scrambled_model(tmp_path, scale=3.0)
    protocol = water_protocol(time_ps=0.2, rdf_window_ps=0.05, timestep_fs=0.5, check_every=5)
    summary = run_stability(broken, frames[-1:], protocol, tmp_path / "out", reference=frames, progress=False)
    assert summary["trajectories"][0]["collapsed"]
    assert summary["trajectories"][0]["time_ps"] < 0.2
    assert (tmp_path / "out" / "survival.png").exists() and (tmp_path / "out" / "stability.json").exists()


def test_water_rdf_criterion_keeps_every_window_error(tmp_path):
    """A soft model (nearly no forces: the molecules fly apart at 300 K) keeps its temperature and fails the
    RDF criterion; stability.json keeps each window's errors, the last one above the threshold."""
    from nnp.data.readers import bundled_dataset, read_structures

    frames = read_structures(bundled_dataset())
    soft = scrambled_model(tmp_path, scale=0.05)
    protocol = water_protocol(time_ps=0.05, rdf_window_ps=0.001, timestep_fs=0.25)  # 4-step windows
    summary = run_stability(soft, frames[-1:], protocol, tmp_path / "out", reference=frames, progress=False)
    row = json.loads((tmp_path / "out" / "stability.json").read_text())["trajectories"][0]
    assert row["collapsed"] and row["reason"].startswith("RDF error"), row["reason"]
    windows = row["window_rdf_errors"]
    assert len(windows) == round(row["stable_ps"] / protocol.rdf_window_ps) > 2
    assert all(set(w) == {"O-O", "O-H", "H-H"} for w in windows)
    assert max(windows[-1].values()) > protocol.rdf_threshold
    assert all(max(w.values()) <= protocol.rdf_threshold for w in windows[:-1])
    # the summary's RDF is the mean of the windows that passed: its error is at most their mean error
    for pair in ("O-O", "O-H", "H-H"):
        passed = np.mean([w[pair] for w in windows[:-1]])
        assert 0 < summary[f"rdf_mae_{pair.replace('-', '')}"] <= passed + 1e-9
    assert set(row["closest_A"]) == {"O-O", "O-H", "H-H"}  # of the frames sampled before the collapse


def test_closest_distances_by_element_pair_over_frames_and_periodic_images():
    """nnp.md.observables.closest_distances equals the smallest minimum-image distance of each element pair over
    the frames; an H pair closest across the box's face counts, a pair farther than r_max is left out."""
    from nnp.md.observables import closest_distances

    frames = [water_box(seed=k) for k in range(3)]
    frames[1].positions[2] = frames[1].positions[5] + [0.0, 0.0, 6.2 - 0.4]  # H 2 0.4 Å from H 5 through the face
    frames[1].wrap()
    expected = {}
    for atoms in frames:
        d = atoms.get_all_distances(mic=True)
        symbols = atoms.get_chemical_symbols()
        for a in range(len(atoms)):
            for b in range(a + 1, len(atoms)):
                key = "-".join(sorted((symbols[a], symbols[b]), key=lambda e: e != "O"))
                expected[key] = min(d[a, b], expected.get(key, np.inf))
    got = closest_distances(frames)
    assert got.keys() == expected.keys() == {"O-O", "O-H", "H-H"}
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-12)
    assert got["H-H"] == pytest.approx(0.4, abs=1e-9)
    assert closest_distances(frames, r_max=0.3) == {}


def test_stable_molecule_reports_nve_drift(tmp_path):
    gentle = scrambled_model(tmp_path, scale=0.05)  # nearly the reference energies only: a smooth, soft potential
    start = water_box(n_side=1, seed=0)[:3]
    start.pbc = False
    traj = run_trajectory(str(gentle), start, molecule_protocol(time_ps=0.05, temperature=50.0, nve_ps=0.05,
                                                                bond_tolerance=5.0), index=0, seed=3)
    assert not traj.collapsed and traj.time_ps == pytest.approx(0.05)
    assert traj.nve_drift is not None and 0 <= traj.nve_drift < 1e-2


def test_only_an_exploding_system_counts_as_a_collapse(tmp_path):
    """LAMMPS errors of an exploding system (the model's NaN, lost atoms) are collapses; any other error
    in a stability run is raised, never counted as a collapse."""
    import torch

    from helpers import small_model
    from lammps_helpers import run_lammps
    from nnp.export import export_model
    from nnp.lammps import make_lammps
    from nnp.md.criteria import is_explosion

    model = small_model(cutoff=3.0)
    with torch.no_grad():
        model.reference_energies[1] = float("nan")
    with pytest.raises(Exception) as nan_error:
        run_lammps(water_box(seed=1), export_model(model, tmp_path / "nan.nnp.pt"), tmp_path, ["H", "O"])
    assert is_explosion(nan_error.value)
    lmp = make_lammps()
    lmp.commands_string("units metal\nboundary f f f\nregion b block 0 5 0 5 0 5\ncreate_box 1 b\n"
                        "create_atoms 1 single 1 1 1\nmass 1 1.0\npair_style zero 2.0\npair_coeff * *\n"
                        "velocity all set 1000 0 0\nfix move all nve\nthermo 10\nthermo_modify lost error\nrun 0")
    with pytest.raises(Exception) as lost:
        lmp.command("run 100")
    assert is_explosion(lost.value)
    with pytest.raises(Exception) as typo:
        lmp.command("fix bad all nosuchfix")
    assert not is_explosion(typo.value)
    lmp.close()


KILL_AFTER_FIRST_TRAJECTORY = """
import os, signal, sys
import nnp.md.stability as stability
from nnp.data.readers import bundled_dataset, read_structures
from nnp.md.protocol import water_protocol

save = stability.save_trajectory
def save_then_die(*args):
    save(*args)
    os.kill(os.getpid(), signal.SIGKILL)
stability.save_trajectory = save_then_die
frames = read_structures(bundled_dataset())
protocol = water_protocol(time_ps=0.05, rdf_window_ps=0.001, timestep_fs=0.25)
stability.run_stability(sys.argv[1], frames[-3:], protocol, sys.argv[2], reference=frames, progress=False)
"""


def test_a_killed_water_run_reruns_only_the_unfinished_trajectories(tmp_path):
    """SIGKILL once the first of three trajectories is saved; the same call again runs the other two and gives
    the uninterrupted run's summary (window RDF errors, stable parts' RDF), then removes its checkpoint."""
    import subprocess
    import sys

    from nnp.data.readers import bundled_dataset, read_structures

    frames = read_structures(bundled_dataset())
    soft = scrambled_model(tmp_path, scale=0.05)
    protocol = water_protocol(time_ps=0.05, rdf_window_ps=0.001, timestep_fs=0.25)
    whole = run_stability(soft, frames[-3:], protocol, tmp_path / "whole", reference=frames, progress=False)
    out = tmp_path / "killed"
    child = subprocess.run([sys.executable, "-c", KILL_AFTER_FIRST_TRAJECTORY, str(soft), str(out)], timeout=300)
    assert child.returncode == -9
    assert sorted(p.name for p in (out / "checkpoint").iterdir()) == ["trajectory-0.json", "trajectory-0.npz"]
    resumed = run_stability(soft, frames[-3:], protocol, out, reference=frames, progress=False)
    assert resumed["resumed_trajectories"] == 1 and whole["resumed_trajectories"] == 0
    assert resumed["trajectories"] == whole["trajectories"]
    for key in ("rdf_mae_OO", "rdf_mae_OH", "rdf_mae_HH"):
        assert resumed[key] == pytest.approx(whole[key], rel=1e-12)
    assert not (out / "checkpoint").exists() and (out / "stability.json").exists()
    # killed again, the checkpoint it leaves (seed 0) does not continue a run with another seed
    subprocess.run([sys.executable, "-c", KILL_AFTER_FIRST_TRAJECTORY, str(soft), str(out)], timeout=300)
    with pytest.raises(ValueError, match="checkpoint of another stability run"):
        run_stability(soft, frames[-3:], protocol, out, reference=frames, seed=5, progress=False)


DIE_AFTER_THE_SAVE_AT_STEP_100 = """
import os, signal, sys
import nnp.md.stability as stability

save = stability.save_partial
def save_then_die(lmp, checkpoint, traj, protocol):  # SIGKILL right after the state at step 100 is saved
    save(lmp, checkpoint, traj, protocol)
    if traj.steps >= 100:
        os.kill(os.getpid(), signal.SIGKILL)
stability.save_partial = save_then_die
"""

KILL_INSIDE_A_TRAJECTORY = DIE_AFTER_THE_SAVE_AT_STEP_100 + """
from nnp.data.readers import bundled_dataset, read_structures
from nnp.md.protocol import water_protocol

frames = read_structures(bundled_dataset())
ensemble = dict(ensemble=tuple(sys.argv[3:]), deviation_every=10) if sys.argv[3:] else {}
protocol = water_protocol(time_ps=0.03, rdf_window_ps=0.0025, timestep_fs=0.25, rdf_threshold=1e6,
                          contact_tolerance=None, **ensemble)
stability.run_stability(sys.argv[1], frames[-1:], protocol, sys.argv[2], reference=frames, progress=False,
                        checkpoint_ps=0.0125)
"""


@pytest.mark.parametrize("with_ensemble", [False, True])
def test_a_water_trajectory_killed_inside_continues_from_its_saved_state(tmp_path, with_ensemble):
    """120 steps in 10-step RDF windows, the state saved every 50 steps (restart with fix nvt's thermostat,
    frames, window RDFs and errors, the ensemble's deviation rows); SIGKILL after the save at step 100, the same
    call again continues there and ends with the uninterrupted run's windows, RDF errors and deviation record."""
    import subprocess
    import sys

    from nnp.data.readers import bundled_dataset, read_structures

    frames = read_structures(bundled_dataset())
    model = scrambled_model(tmp_path, scale=0.05)
    members = [str(export_model(small_model(cutoff=3.0, layers=2, seed=1), tmp_path / "m2.nnp.pt"))] if with_ensemble else []
    ensemble = dict(ensemble=tuple(members), deviation_every=10) if members else {}
    protocol = water_protocol(time_ps=0.03, rdf_window_ps=0.0025, timestep_fs=0.25, rdf_threshold=1e6,
                          contact_tolerance=None, **ensemble)
    whole = run_stability(model, frames[-1:], protocol, tmp_path / "whole", reference=frames, progress=False)
    out = tmp_path / "killed"
    child = subprocess.run([sys.executable, "-c", KILL_INSIDE_A_TRAJECTORY, str(model), str(out), *members],
                           timeout=300)
    assert child.returncode == -9
    assert sorted(p.name for p in (out / "checkpoint").iterdir()) == [
        "partial-0-100.npz", "partial-0-100.restart", "partial-0-50.npz", "partial-0.json"]  # step 50's restart went
    with np.load(out / "checkpoint" / "partial-0-100.npz") as chunk:  # each window is written once: 60-100 here
        assert len(chunk["window_rdfs"]) == 5
    resumed = run_stability(model, frames[-1:], protocol, out, reference=frames, progress=False,
                            checkpoint_ps=0.0125)
    row = whole["trajectories"][0]
    assert not row["collapsed"] and len(row["window_rdf_errors"]) == 12
    assert resumed["trajectories"] == whole["trajectories"]  # every window's RDF errors, to the last bit
    for key in ("rdf_mae_OO", "rdf_mae_OH", "rdf_mae_HH"):
        assert resumed[key] == whole[key]
    if with_ensemble:  # the deviation trace: rows before the kill and after it, none twice, as uninterrupted
        before, after = (np.load(d / "deviation.npz") for d in (tmp_path / "whole", out))
        assert sorted(before.files) == sorted(after.files) and len(before["trajectory_0"]) == 120 // 10 + 1
        for key in before.files:
            np.testing.assert_array_equal(after[key], before[key])


KILL_A_MOLECULE_INSIDE = DIE_AFTER_THE_SAVE_AT_STEP_100 + """
sys.path.insert(0, sys.argv[3])
from helpers import water_box
from nnp.md.protocol import molecule_protocol

start = water_box(n_side=1, seed=0)[:3]
start.pbc = False
protocol = molecule_protocol(time_ps=0.1, temperature=20.0, check_every=5, sample_every=10, bond_tolerance=0.3)
stability.run_stability(sys.argv[1], [start], protocol, sys.argv[2], progress=False, checkpoint_ps=0.025)
"""


def test_a_molecule_trajectory_killed_inside_continues_with_its_start_frames_bonds(tmp_path):
    """A soft model lets a water molecule come apart slowly at 20 K: bond deviation 0.3 Å at step 135. The state is
    saved every 50 steps; SIGKILL after the save at step 100, the same call continues there and collapses at the
    uninterrupted run's step, measured against the start frame's bonds (not those of the restored step 100)."""
    import subprocess
    import sys
    from pathlib import Path

    start = water_box(n_side=1, seed=0)[:3]
    start.pbc = False
    model = scrambled_model(tmp_path, scale=0.05)
    protocol = molecule_protocol(time_ps=0.1, temperature=20.0, check_every=5, sample_every=10, bond_tolerance=0.3)
    whole = run_stability(model, [start], protocol, tmp_path / "whole", progress=False, checkpoint_ps=0.025)
    row = whole["trajectories"][0]
    assert row["collapsed"] and 0.05 < row["time_ps"] < 0.1, row  # the collapse comes after the kill
    out = tmp_path / "killed"
    child = subprocess.run([sys.executable, "-c", KILL_A_MOLECULE_INSIDE, str(model), str(out),
                            str(Path(__file__).parent)], timeout=300)
    assert child.returncode == -9
    assert sorted(p.name for p in (out / "checkpoint").iterdir()) == [
        "partial-0-100.npz", "partial-0-100.restart", "partial-0-50.npz", "partial-0.json"]
    before_kill = json.loads((out / "checkpoint" / "partial-0.json").read_text())["md_wall_s"]
    resumed = run_stability(model, [start], protocol, out, progress=False, checkpoint_ps=0.025)
    assert resumed["trajectories"] == whole["trajectories"]
    assert 0 < before_kill < resumed["md_wall_s"]  # the MD time before the kill is counted too
    assert resumed["md_steps_per_s"] == pytest.approx(135 / resumed["md_wall_s"])
    assert resumed["h_r_mae"] == pytest.approx(whole["h_r_mae"], rel=1e-9)  # the frames before and after the kill


def test_bond_deviation_reference_file(tmp_path):
    """``reference FILE`` gives the compute its bonds (IDs and lengths) instead of the first positions it sees;
    a file that does not fit the box is an error naming the line."""
    from nnp.md.criteria import write_bond_reference

    lmp = tip3p_lammps(tmp_path)
    n = lmp.get_natoms()
    atoms = current_atoms(lmp, ["O", "H"])
    stretched = atoms.copy()
    stretched.positions[1] += 0.1 * atoms.get_distance(0, 1, mic=True, vector=True)  # O-H of molecule 0 + 10 %
    write_bond_reference(stretched, tmp_path / "bonds.txt")
    lmp.command(f"compute bd all bond/deviation O H reference {tmp_path / 'bonds.txt'}")
    lmp.command("variable dev equal c_bd")  # evaluating the variable after a run invokes the compute
    lmp.command("run 0")
    deviation = lmp.extract_variable("dev")
    assert deviation == pytest.approx(max_bond_deviation(atoms, reference_bonds(stretched)), abs=1e-12)
    assert deviation == pytest.approx(0.1 * atoms.get_distance(0, 1, mic=True), abs=1e-12)  # the stretched bond
    for text, problem in [("1 2\n", "line 1"), ("# ok\n1 1 0.9\n", "line 2"), (f"1 {n + 1} 0.9\n", "line 1"),
                          ("1 2 -1\n", "line 1")]:
        (tmp_path / "bad.txt").write_text(text)
        lmp.command(f"compute bad{len(text)} all bond/deviation O H reference {tmp_path / 'bad.txt'}")
        with pytest.raises(Exception, match=problem):
            lmp.command("run 0")  # the file is read at the run's setup
        lmp.command(f"uncompute bad{len(text)}")
    with pytest.raises(Exception, match="neither a keyword"):
        lmp.command("compute typo all bond/deviation O H refrence bonds.txt")
    lmp.close()


def ammonia_in_water(seed: int):
    """A periodic box that is not water: 8 water molecules, one of whose O is an N (elements O, N, H)."""
    atoms = water_box(n_side=2, seed=seed)
    atoms.symbols[3] = "N"
    return atoms


def test_a_periodic_box_that_is_not_water_gets_the_rdf_criterion_over_its_element_pairs(tmp_path):
    """``periodic``: the RDF criterion over every pair of the reference's elements. Started from the reference
    itself at 1 K with 1e-4 fs steps (the atoms barely move), every pair's window error is ~0: LAMMPS's RDF
    columns are matched to the right element pairs (a swapped pair would differ at once)."""
    from nnp.md.protocol import element_pairs, periodic_protocol, stability_system

    frames = [ammonia_in_water(seed) for seed in range(3)]
    assert stability_system(frames[0]) == "periodic" and stability_system(water_box()) == "water"
    assert element_pairs(frames) == (("O", "O"), ("O", "N"), ("O", "H"), ("N", "N"), ("N", "H"), ("H", "H"))
    assert element_pairs([water_box()]) == water_protocol(time_ps=1.0).pairs  # water's pairs are H2O's
    model = export_model(small_model(species=("H", "N", "O"), cutoff=3.0, layers=2), tmp_path / "hno.nnp.pt")
    still = periodic_protocol(time_ps=2e-6, timestep_fs=1e-4, rdf_window_ps=1e-6, temperature=1.0)
    summary = run_stability(model, frames[:1], still, tmp_path / "still", reference=frames[:1], progress=False)
    windows = summary["trajectories"][0]["window_rdf_errors"]
    assert len(windows) == 2 and set(windows[0]) == {"O-O", "O-N", "O-H", "N-N", "N-H", "H-H"}
    assert all(error < 1e-6 for w in windows for error in w.values()), windows
    assert {k for k in summary if k.startswith("rdf_mae_")} == {"rdf_mae_OO", "rdf_mae_ON", "rdf_mae_OH",
                                                               "rdf_mae_NN", "rdf_mae_NH", "rdf_mae_HH"}
    # against other frames the same run has errors: the criterion sees structure
    moved = run_stability(model, frames[:1], still, tmp_path / "other", reference=frames[1:], progress=False)
    assert max(moved["trajectories"][0]["window_rdf_errors"][0].values()) > 0.1


def test_stability_refuses_a_system_its_protocol_does_not_fit(tmp_path, capsys):
    """A periodic box never runs as a molecule in vacuum (nor water's protocol on a box that is not water): the
    command names the protocol that fits; ``periodic`` needs a reference; the Python API checks the same."""
    from nnp.cli import main
    from nnp.data.atomic import write_frames
    from nnp.md.protocol import periodic_protocol

    reference = tmp_path / "box.extxyz"
    write_frames(reference, [ammonia_in_water(0)])
    model = export_model(small_model(species=("H", "N", "O"), cutoff=3.0, layers=2), tmp_path / "hno.nnp.pt")
    for system in ("molecule", "water", "aspirin"):
        code = main(["stability", "--model", str(model), "--system", system, "--reference", str(reference),
                     "--trajectories", "1", "--time", "0.001ps", "--output", str(tmp_path / system)])
        assert code == 2 and "give --system periodic" in capsys.readouterr().err
        assert not (tmp_path / system / "stability.json").exists()
    assert main(["stability", "--model", str(model), "--system", "periodic", "--trajectories", "1"]) == 2
    assert "--system periodic needs --reference" in capsys.readouterr().err
    molecule = water_box(n_side=1)[:3]
    molecule.pbc = False
    with pytest.raises(ValueError, match="give --system molecule"):
        run_stability(model, [molecule], periodic_protocol(time_ps=0.001), tmp_path / "mol", progress=False)


def test_periodic_runs_are_whole_rdf_windows():
    """A periodic run shorter than one RDF window is one window of its length (LAMMPS's average of a window is
    only there at the window's end); a longer run that is not a whole number of windows is an error naming two
    lengths that are; molecules have no windows."""
    from nnp.errors import UserError
    from nnp.md.protocol import fit_windows

    assert fit_windows(water_protocol(time_ps=0.25)).rdf_window_ps == 0.25
    assert fit_windows(water_protocol(time_ps=3.0)).rdf_window_ps == 1.0
    with pytest.raises(UserError, match="not a whole number of its 1 ps RDF windows: run 2 or 3 ps"):
        fit_windows(water_protocol(time_ps=2.5))
    assert fit_windows(molecule_protocol(time_ps=2.5)) == molecule_protocol(time_ps=2.5)


def test_two_hydrogens_run_into_each_other_collapse_a_window_whose_rdf_error_is_small(tmp_path, capsys):
    """nnp's closest-approach rule: one water's hydrogen put 0.3 Å from another's, under a nearly force-free
    model at 1 K (it stays there), moves one H-H bin of 500: the RDF error stays far under 3 (MDsim's criterion
    calls it stable), the rule calls the first window collapsed. ``contact_tolerance=None`` (the CLI's
    ``--contact-tolerance off``) is MDsim's criterion alone."""
    from nnp.cli import main
    from nnp.data.readers import bundled_dataset, read_structures
    from nnp.md.criteria import reference_closest

    frames = read_structures(bundled_dataset())
    fused = frames[-1].copy()
    hydrogens = np.flatnonzero(fused.numbers == 1)
    a, b = hydrogens[0], hydrogens[-1]  # first and last molecule
    fused.positions[b] = fused.positions[a] + [0.3, 0.0, 0.0]
    soft = scrambled_model(tmp_path, scale=0.05)
    protocol = water_protocol(time_ps=0.02, rdf_window_ps=0.01, timestep_fs=0.5, temperature=1.0)
    closest = reference_closest(frames, protocol)
    assert set(closest) == {("O", "O"), ("O", "H"), ("H", "H")} and 1.2 < closest["H", "H"] < 1.7
    assert reference_closest(frames, water_protocol(time_ps=1.0, pairs=(("H", "O"),))) == {("H", "O"): closest["O", "H"]}
    assert reference_closest(frames, water_protocol(time_ps=1.0, contact_tolerance=None)) == {}

    summary = run_stability(soft, [fused], protocol, tmp_path / "rule", reference=frames, progress=False)
    row = summary["trajectories"][0]
    assert row["collapsed"] and row["stable_ps"] == pytest.approx(0.01), row
    assert row["reason"].startswith("H-H pair at 0.3") and row["reason"].endswith(  # the bin's centre, 0.306
        f" Å, more than 0.5 Å under its closest distance in the reference ({closest['H', 'H']:.2f} Å)"), row["reason"]
    assert max(row["window_rdf_errors"][0].values()) < protocol.rdf_threshold  # the RDF criterion alone passes it
    assert summary["reference_closest_A"]["H-H"] == pytest.approx(closest["H", "H"])

    off = run_stability(soft, [fused], replace(protocol, contact_tolerance=None), tmp_path / "off", reference=frames,
                        progress=False)["trajectories"][0]
    assert not off["collapsed"] and off["stable_ps"] == pytest.approx(0.02)
    assert off["closest_A"]["H-H"] < 0.35  # it stayed there

    # the command line: a distance, or off; anything else is refused by name
    model_file = str(soft)
    for value, expected in (("off", None), ("0.8", 0.8)):
        out = tmp_path / f"cli-{value}"
        assert main(["stability", "--model", model_file, "--system", "water", "--trajectories", "1", "--time",
                     "0.002ps", "--contact-tolerance", value, "--output", str(out)]) == 0
        assert json.loads((out / "stability.json").read_text())["protocol"]["contact_tolerance"] == expected
    with pytest.raises(SystemExit):
        main(["stability", "--model", model_file, "--system", "water", "--contact-tolerance", "near"])
    assert "'near' is not a distance in Å (or 'off')" in capsys.readouterr().err
    # --zbl: the run's pair style is the model with LAMMPS's ZBL overlaid (tests/test_lammps_workflows.py)
    out = tmp_path / "cli-zbl"
    assert main(["stability", "--model", model_file, "--system", "water", "--trajectories", "1", "--time", "0.002ps",
                 "--zbl", "0.5", "0.8", "--output", str(out)]) == 0
    assert json.loads((out / "stability.json").read_text())["protocol"]["zbl"] == [0.5, 0.8]
    assert main(["stability", "--model", model_file, "--system", "water", "--zbl", "0.8", "0.5"]) == 2
    assert "give INNER OUTER with 0 < INNER < OUTER" in capsys.readouterr().err


def test_window_contact_names_every_pair_under_its_limit():
    """The closest-approach rule on LAMMPS-shaped window RDFs: g(r) > 0 in a bin whose centre is more than the
    tolerance under the reference's closest distance; every such element pair is named, the others not."""
    from nnp.md.criteria import window_contact
    from nnp.md.observables import rdf_bin_centres

    protocol = water_protocol(time_ps=1.0)
    r = rdf_bin_centres(protocol.rdf_r_max, protocol.rdf_bins)
    closest = {("O", "O"): 2.4, ("O", "H"): 0.9, ("H", "H"): 1.4}

    def window(first: dict) -> dict:  # each pair's g(r) zero under its first populated distance
        return {pair: np.where(r >= first[pair], 1.0, 0.0) for pair in closest}

    assert window_contact(window({("O", "O"): 1.95, ("O", "H"): 0.45, ("H", "H"): 0.95}), closest, protocol) is None
    reason = window_contact(window({("O", "O"): 1.5, ("O", "H"): 0.9, ("H", "H"): 0.33}), closest, protocol)
    assert reason.split("; ") == [
        "O-O pair at 1.51 Å, more than 0.5 Å under its closest distance in the reference (2.40 Å)",
        "H-H pair at 0.33 Å, more than 0.5 Å under its closest distance in the reference (1.40 Å)"]
    assert window_contact(window({("O", "O"): 0.1, ("O", "H"): 0.1, ("H", "H"): 0.1}), {}, protocol) is None

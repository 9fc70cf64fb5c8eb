"""MD stability in LAMMPS with pair_style nnp: the MDsim protocols (Fu et al. 2023).

* molecules: Nosé–Hoover NVT at 500 K, 0.5 fs, up to 300 ps from test-set frames; a trajectory
  collapses when a covalent bond of the first frame deviates by more than 0.5 Å (checked inside LAMMPS
  by ``compute bond/deviation`` + ``fix halt``);
* water: Nosé–Hoover NVT at 300 K, 1 fs, up to 500 ps; collapses when, over a 1 ps window, the largest
  of the O–O, O–H, H–H RDF errors against the reference exceeds 3.0 (RDF from LAMMPS's ``compute rdf``
  averaged over the window, checked after each window), or (nnp's addition, ``contact_tolerance``) when the
  window's RDF shows a pair more than 0.5 Å closer than that pair ever is in the reference; any other periodic
  box the same over every pair of its elements (``periodic``);
* both stop when the temperature leaves (0.1 K, 1e5 K).

Independent trajectories run in separate processes (LAMMPS instances) in parallel. Each finished trajectory is
kept in ``output_dir/checkpoint`` until ``stability.json`` is written, and a running trajectory saves its state
there every ``checkpoint_ps`` (periodic: at the end of an RDF window): the same call after an interruption runs only
the trajectories that had not finished, each from its last saved state.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms

from ..data.atomic import write_npz, write_text
from .checkpoint import CHECKPOINT_PS, check_fingerprint, load_state, previous_state, run_fingerprint, save_state
from .criteria import (is_explosion, reference_closest, temperature_in_range, window_contact,
                       write_bond_reference)
from .observables import closest_distances, diffusivity, distance_histogram, h_r_mae, rdf, rdf_bin_centres, rdf_mae
from .protocol import Protocol, check_system, element_pairs, fit_windows
from .report import record_deviation
from .survival import summarize


@dataclass
class Trajectory:
    index: int
    steps: int
    time_ps: float
    collapsed: bool
    reason: str
    frames: list = field(default_factory=list, repr=False)  # sampled Atoms of the stable part
    window_errors: list = field(default_factory=list)  # periodic: RDF error of every window
    window_rdfs: list = field(default_factory=list, repr=False)  # periodic: {pair: g(r)} of every passed window
    nve_drift: float | None = None  # eV/atom/ps, |E_end - E_start| over the NVE segment
    deviation: list = field(default_factory=list, repr=False)  # ensemble: model_devi.out rows
    md_wall_s: float = 0.0  # inside LAMMPS's `run` commands (MD only, over every resumed part; no setup, no NVE)


def _setup(lmp, atoms: Atoms, model: str, species: list[str], protocol: Protocol, seed: int,
           deviation_file: Path | None = None, restart: Path | None = None) -> list[str]:
    """The system (``atoms``, or the state in ``restart``: positions, velocities, step and ``fix nvt``'s
    thermostat), the model, the thermostat and the temperature halts; the element of each atom type."""
    from .deviation import ensemble_arguments
    from ..lammps import load_atoms, nnp_lines, nvt_lines, system_lines

    present = [s for s in species if s in set(atoms.get_chemical_symbols())]
    if protocol.system == "water":
        present = ["O", "H"]
    if protocol.system == "molecule":
        atoms = atoms.copy()
        atoms.center(vacuum=50.0)
        atoms.pbc = False
    boundary = "p p p" if protocol.periodic else "f f f"  # molecules: 50 Å of vacuum
    if restart:
        lmp.commands_list(system_lines(restart, boundary, restart=True))
    else:
        load_atoms(lmp, atoms, present, boundary=boundary)
    style = ""
    if protocol.ensemble:
        style = ensemble_arguments(protocol.ensemble, protocol.deviation_every, deviation_file)
    for line in (*nnp_lines(model, present, style, protocol.zbl), "neighbor 1.0 bin",
                 f"comm_modify cutoff {protocol.rdf_r_max + 2.0}",
                 *nvt_lines(protocol.temperature, None if restart else seed, protocol.timestep_fs,
                            protocol.damping_fs),  # a restart has its velocities
                 "variable temp equal temp",
                 f"fix hot all halt {protocol.check_every} v_temp > {protocol.t_max} error continue",
                 f"fix cold all halt {protocol.check_every} v_temp < {protocol.t_min} error continue",
                 "thermo_style custom step temp pe", f"thermo {max(protocol.sample_every, 1000)}"):
        lmp.command(line)
    return present


def fix_rdf_column(lmp, fix_id: str, rows: int, column: int) -> np.ndarray:
    """One column of a global array fix (``fix ave/time ... mode vector`` over ``compute rdf``)."""
    return np.array([lmp.extract_fix(fix_id, 0, 2, row, column) for row in range(rows)])


def _snapshot(lmp, symbols: list[str], unwrap: bool) -> Atoms:
    from ..lammps import current_atoms, unwrapped_positions

    atoms = current_atoms(lmp, symbols, pbc=unwrap)
    if unwrap:
        atoms.info["unwrapped"] = unwrapped_positions(lmp, atoms)
    return atoms


@dataclass
class TrajectoryCheckpoint:
    """Where a running trajectory saves its state every ``every_steps`` (periodic: at the end of an RDF window), and
    the run's fingerprint, which a saved state must carry to be continued."""
    folder: Path
    fingerprint: str
    every_steps: int


def run_trajectory(model: str, start: Atoms, protocol: Protocol, index: int, seed: int,
                   reference_rdfs: dict | None = None, checkpoint: TrajectoryCheckpoint | None = None,
                   reference_closest: dict | None = None) -> Trajectory:
    """One trajectory in its own LAMMPS instance; stops at collapse or after ``protocol.time_ps``.

    Periodic: ``reference_rdfs`` (``{pair: g(r)}``) and ``reference_closest`` (``{pair: Å}``,
    criteria.reference_closest) are the reference's, what each window is judged against. ``checkpoint``: save the
    state there and continue from a state saved before (a molecule keeps its start frame's bonds: ``compute
    bond/deviation`` reads them from a file)."""
    from ..evaluator import load_evaluator
    from ..lammps import make_lammps

    species = load_evaluator(model).species
    total_steps = int(round(protocol.time_ps * 1000.0 / protocol.timestep_fs))
    resumed = load_partial(checkpoint, index, protocol) if checkpoint else None
    lmp = make_lammps()
    traj = resumed[0] if resumed else Trajectory(index=index, steps=0, time_ps=0.0, collapsed=False,
                                                 reason="stable for the full run")
    saved = traj.steps
    work = tempfile.TemporaryDirectory()  # the bond reference, the ensemble's model_devi.out
    deviation_file = Path(work.name) / "model_devi.out" if protocol.ensemble else None
    earlier = list(traj.deviation)  # a resumed trajectory's rows from before its saved state

    def deviation_rows() -> list:
        from .deviation import read_model_devi

        rows = read_model_devi(deviation_file).tolist()  # flushed row by row: complete at any time
        return earlier + [row for row in rows if not earlier or row[0] > earlier[-1][0]]  # setup repeats a step

    try:
        types = _setup(lmp, start, str(model), species, protocol, seed, deviation_file,
                       restart=resumed[1] if resumed else None)
        if protocol.system == "molecule":
            bonds = Path(work.name) / "bonds.txt"
            write_bond_reference(start, bonds)
            lmp.command(f"compute bd all bond/deviation {' '.join(types)} reference {bonds}")
            lmp.command("variable dev equal c_bd")
            lmp.command(f"fix broken all halt {protocol.check_every} v_dev > {protocol.bond_tolerance} error continue")
            chunk = protocol.sample_every
        else:
            chunk = int(round(protocol.rdf_window_ps * 1000.0 / protocol.timestep_fs))
            pair_args = " ".join(f"{types.index(a) + 1} {types.index(b) + 1}" for a, b in protocol.pairs)
            lmp.command(f"compute rdf all rdf {protocol.rdf_bins} {pair_args} cutoff {protocol.rdf_r_max}")
            # ~100 samples per window; LAMMPS wants the window a multiple of the sampling interval
            every = max(d for d in range(1, max(1, chunk // 100) + 1) if chunk % d == 0)
            lmp.command(f"fix rdf all ave/time {every} {chunk // every} {chunk} c_rdf[*] mode vector")
        lmp.command("run 0 post no")
        while traj.steps < total_steps:
            n = min(chunk, total_steps - traj.steps)
            tick = time.perf_counter()
            try:
                lmp.command(f"run {n} post no")
            except Exception as err:
                if not is_explosion(err):  # a broken setup, device or model is an error, never a collapse
                    raise RuntimeError(f"trajectory {index} stopped at step {lmp.get_thermo('step'):.0f} by an "
                                       f"error that is not a collapse: {str(err).splitlines()[0]}") from err
                traj.steps = int(lmp.get_thermo("step"))
                traj.collapsed, traj.reason = True, "LAMMPS stopped: " + str(err).splitlines()[0][:120]
                break
            finally:
                traj.md_wall_s += time.perf_counter() - tick
            now = int(lmp.get_thermo("step"))
            halted = now - traj.steps < n
            traj.steps = now
            temperature = lmp.get_thermo("temp")
            if protocol.system == "molecule":
                if halted or lmp.extract_variable("dev") > protocol.bond_tolerance:
                    traj.collapsed, traj.reason = True, "bond deviation > %.2f Å" % protocol.bond_tolerance
            if not traj.collapsed and not temperature_in_range(temperature, protocol):
                traj.collapsed, traj.reason = True, f"temperature {temperature:.3g} K out of range"
            if protocol.periodic and not traj.collapsed and not halted:
                window = {pair: fix_rdf_column(lmp, "rdf", protocol.rdf_bins, 1 + 2 * k)
                          for k, pair in enumerate(protocol.pairs)}
                errors = {f"{a}-{b}": rdf_mae(window[a, b], reference_rdfs[a, b], protocol.rdf_r_max)
                          for a, b in protocol.pairs}
                traj.window_errors.append(errors)
                reasons = []
                if max(errors.values()) > protocol.rdf_threshold:
                    reasons.append(f"RDF error {max(errors.values()):.2f} > {protocol.rdf_threshold}")
                contact = window_contact(window, reference_closest or {}, protocol)
                if contact:  # nnp's closest-approach rule, beside MDsim's RDF criterion
                    reasons.append(contact)
                if reasons:
                    traj.collapsed, traj.reason = True, "; ".join(reasons)
                else:
                    traj.window_rdfs.append(window)
            if traj.collapsed or halted:
                if halted and not traj.collapsed:
                    traj.collapsed, traj.reason = True, "halted (temperature out of range)"
                break
            traj.frames.append(_snapshot(lmp, types, unwrap=protocol.periodic))
            if checkpoint and traj.steps < total_steps and traj.steps - saved >= checkpoint.every_steps:
                if deviation_file:
                    traj.deviation = deviation_rows()
                save_partial(lmp, checkpoint, traj, protocol)
                saved = traj.steps
        traj.time_ps = traj.steps * protocol.timestep_fs / 1000.0
        if protocol.nve_ps > 0 and not traj.collapsed:
            traj.nve_drift = _nve_drift(lmp, protocol)
    finally:
        lmp.close()
        if deviation_file:
            traj.deviation = deviation_rows()
        work.cleanup()
    return traj


def _nve_drift(lmp, protocol: Protocol) -> float:
    """Switch the thermostat off, run ``nve_ps`` and return |E_total(end) - E_total(start)| per atom per ps."""
    from ..lammps import nve_energy_trace

    steps = int(round(protocol.nve_ps * 1000.0 / protocol.timestep_fs))
    lmp.command("unfix nvt")
    _, energy, _ = nve_energy_trace(lmp, steps, protocol.timestep_fs, every=steps)
    return abs(energy[-1] - energy[0]) / lmp.get_natoms() / protocol.nve_ps


def _worker_init(threads: int) -> None:
    os.environ["OMP_NUM_THREADS"] = str(threads)


def _run_one(args) -> Trajectory:
    return run_trajectory(*args)


RECORD_FIELDS = ("index", "steps", "time_ps", "collapsed", "reason", "window_errors", "nve_drift", "md_wall_s")


def _arrays(traj: Trajectory, protocol: Protocol, since: Sequence[int] = (0, 0, 0)) -> dict[str, np.ndarray]:
    """The trajectory's frames, window RDFs and deviation rows from the counts ``since`` on, as arrays."""
    frames, windows, deviation = traj.frames[since[0]:], traj.window_rdfs[since[1]:], traj.deviation[since[2]:]
    arrays = {}
    if frames:
        arrays.update(numbers=frames[0].numbers, pbc=frames[0].pbc, positions=np.array([f.positions for f in frames]),
                      cells=np.array([f.cell.array for f in frames]))
        if "unwrapped" in frames[0].info:
            arrays["unwrapped"] = np.array([f.info["unwrapped"] for f in frames])
    if windows:
        arrays["window_rdfs"] = np.array([[w[pair] for pair in protocol.pairs] for w in windows])
    if deviation:
        arrays["deviation"] = np.array(deviation)
    return arrays


def _counts(traj: Trajectory) -> list[int]:
    return [len(traj.frames), len(traj.window_rdfs), len(traj.deviation)]


def _read(record: dict, array_files: Sequence[Path], protocol: Protocol) -> Trajectory:
    traj = Trajectory(**{key: record[key] for key in RECORD_FIELDS if key in record})  # older records: no md_wall_s
    for path in array_files:
        with np.load(path) as arrays:
            for k, x in enumerate(arrays["positions"] if "positions" in arrays else []):
                atoms = Atoms(numbers=arrays["numbers"], positions=x, cell=arrays["cells"][k], pbc=arrays["pbc"])
                if "unwrapped" in arrays:
                    atoms.info["unwrapped"] = arrays["unwrapped"][k]
                traj.frames.append(atoms)
            if "window_rdfs" in arrays:
                traj.window_rdfs += [dict(zip(protocol.pairs, w)) for w in arrays["window_rdfs"]]
            if "deviation" in arrays:
                traj.deviation += arrays["deviation"].tolist()
    return traj


def save_trajectory(folder: Path, fingerprint: str, traj: Trajectory, protocol: Protocol) -> None:
    """A finished trajectory in ``folder``: its arrays (frames, window RDFs, deviation rows), then its JSON,
    whose presence marks it done; its partial state, if any, goes."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"trajectory-{traj.index}"
    write_npz(folder / f"{name}.npz", **_arrays(traj, protocol))
    record = {"fingerprint": fingerprint, **{key: getattr(traj, key) for key in RECORD_FIELDS}}
    write_text(folder / f"{name}.json", json.dumps(record))
    for partial in folder.glob(f"partial-{traj.index}[.-]*"):
        partial.unlink()


def load_trajectories(folder: Path, fingerprint: str, protocol: Protocol) -> dict[int, Trajectory]:
    """The finished trajectories :func:`save_trajectory` left in ``folder``, by index."""
    done = {}
    for path in sorted(folder.glob("trajectory-*.json")):
        record = json.loads(path.read_text())
        check_fingerprint(folder, record.get("fingerprint"), fingerprint)
        done[record["index"]] = _read(record, [path.with_suffix(".npz")], protocol)
    return done


def save_partial(lmp, checkpoint: TrajectoryCheckpoint, traj: Trajectory, protocol: Protocol) -> None:
    """A running trajectory's state at the end of a window (:func:`nnp.md.checkpoint.save_state`): the restart,
    the frames, windows and deviation rows recorded since the last save, and ``partial-<index>.json``."""
    path = checkpoint.folder / f"partial-{traj.index}.json"
    since = previous_state(path).get("counts", [0, 0, 0])
    save_state(lmp, path, f"partial-{traj.index}", traj.steps, _arrays(traj, protocol, since),
               {"fingerprint": checkpoint.fingerprint, "counts": _counts(traj),
                **{key: getattr(traj, key) for key in RECORD_FIELDS}})


def load_partial(checkpoint: TrajectoryCheckpoint, index: int, protocol: Protocol) -> tuple[Trajectory, Path] | None:
    """The trajectory so far and its restart file, from :func:`save_partial`; None when there is none."""
    record = load_state(checkpoint.folder / f"partial-{index}.json", checkpoint.fingerprint)
    if record is None:
        return None
    if "chunks" not in record:  # saved by nnp before chunks: one file with everything, named by its stem
        record.update(chunks=[record["stem"] + ".npz"], restart=record["stem"] + ".restart")
    traj = _read(record, [checkpoint.folder / chunk for chunk in record["chunks"]], protocol)
    return traj, checkpoint.folder / record["restart"]


def reference_rdf_table(frames: Sequence[Atoms], protocol: Protocol) -> dict:
    return {pair: rdf(frames, pair, protocol.rdf_r_max, protocol.rdf_bins)[1] for pair in protocol.pairs}


def run_stability(model: str | Path, starts: Sequence[Atoms], protocol: Protocol, output_dir: str | Path,
                  reference: Sequence[Atoms] | None = None, seed: int = 0, workers: int = 1,
                  progress: bool = True, checkpoint_ps: float = CHECKPOINT_PS) -> dict:
    """Run ``len(starts)`` trajectories; write ``stability.json`` and plots; return the summary."""
    from tqdm.auto import tqdm

    from ..export import load_exported
    from ..plotting import plot_overlay, plot_survival

    load_exported(model)  # a missing or foreign model file fails here, before any trajectory starts
    if protocol.ensemble:
        from .deviation import check_members

        check_members(model, protocol.ensemble)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    reference = list(reference or starts)
    check_system(protocol.system, starts)  # never a periodic box in vacuum, nor a molecule in a box
    protocol = fit_windows(protocol)  # whole RDF windows only
    ref_rdfs, ref_closest = None, None
    if protocol.periodic:
        if not protocol.pairs:  # every pair of the reference's elements
            protocol = replace(protocol, pairs=element_pairs(reference))
        missing = {e for pair in protocol.pairs for e in pair} - {e for a in starts for e in a.get_chemical_symbols()}
        if missing:
            raise ValueError(f"the RDF pairs {protocol.pairs} name elements no start frame has ({sorted(missing)}): "
                             "start from frames with every element of the reference")
        ref_rdfs, ref_closest = reference_rdf_table(reference, protocol), reference_closest(reference, protocol)
    checkpoint = output_dir / "checkpoint"
    fingerprint = run_fingerprint(model, {"runner": "trajectories", "protocol": asdict(protocol), "seed": seed},
                                  starts, reference)
    done = load_trajectories(checkpoint, fingerprint, protocol)
    resumed = len(done)
    every = max(1, int(round(checkpoint_ps * 1000.0 / protocol.timestep_fs)))
    within = TrajectoryCheckpoint(checkpoint, fingerprint, every)
    jobs = [(str(model), start, protocol, k, seed + 1000 * k + 1, ref_rdfs, within, ref_closest)
            for k, start in enumerate(starts) if k not in done]
    bar = tqdm(total=len(starts), initial=len(done), desc="trajectories", disable=not progress)

    def keep(traj: Trajectory) -> None:  # saved as soon as it ends: a later interruption does not lose it
        save_trajectory(checkpoint, fingerprint, traj, protocol)
        done[traj.index] = traj
        bar.update()

    if workers > 1 and len(jobs) > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_worker_init,
                                 initargs=(threads,)) as pool:
            for future in as_completed([pool.submit(_run_one, job) for job in jobs]):
                keep(future.result())
    else:
        for job in jobs:
            keep(run_trajectory(*job))
    bar.close()
    trajectories = [done[k] for k in range(len(starts))]

    times = np.array([t.time_ps for t in trajectories])
    md_wall = float(sum(t.md_wall_s for t in trajectories))  # summed (with workers in parallel: above the elapsed time)
    summary = {
        "model": str(model),
        "protocol": asdict(protocol),
        "trajectories": [{"index": t.index, "time_ps": t.time_ps, "stable_ps": t.time_ps, "collapsed": t.collapsed,
                          "reason": t.reason, "nve_drift_eV_per_atom_ps": t.nve_drift,
                          "closest_A": closest_distances(t.frames),  # of its sampled frames, by element pair
                          **({"window_rdf_errors": t.window_errors} if protocol.periodic else {})}
                         for t in trajectories],
        "median_time_ps": float(np.median(times)),
        "min_time_ps": float(times.min()),
        "max_time_ps": float(times.max()),
        "stable_fraction": float(np.mean([not t.collapsed for t in trajectories])),
        "kaplan_meier": summarize(times.tolist(), [t.collapsed for t in trajectories]),
        "resumed_trajectories": resumed,  # read back from an interrupted run's checkpoint, not run by this call
        "md_wall_s": md_wall,
        "md_steps_per_s": sum(t.steps for t in trajectories) / md_wall if md_wall > 0 else None,
    }
    if ref_closest:  # the closest-approach rule's reference distances (a window under them - tolerance collapses)
        summary["reference_closest_A"] = {f"{a}-{b}": d for (a, b), d in ref_closest.items()}
    stable_frames = [f for t in trajectories for f in t.frames]
    name = Path(model).name
    plots = [plot_survival({name: times.tolist()}, protocol.time_ps, output_dir / "survival.png")]
    if protocol.ensemble:
        plots.append(record_deviation(trajectories, protocol, summary, output_dir))
    if stable_frames and protocol.system == "molecule":
        r, h = distance_histogram(stable_frames)
        _, h_ref = distance_histogram(reference)
        summary["h_r_mae"] = h_r_mae(h, h_ref)
        plots.append(plot_overlay(r, {name: h, "reference": h_ref}, "r (Å)", "h(r)", output_dir / "h_r.png"))
    windows = [w for t in trajectories for w in t.window_rdfs]
    if windows and protocol.periodic:
        # the stable part's RDF: the mean of the windows that passed (each LAMMPS's average of ~100 samples),
        # not of the one snapshot per window kept in frames (too few for 500 bins on a short run)
        r = rdf_bin_centres(protocol.rdf_r_max, protocol.rdf_bins)
        rdfs = {pair: np.mean([w[pair] for w in windows], axis=0) for pair in protocol.pairs}
        for pair, g in rdfs.items():
            summary[f"rdf_mae_{pair[0]}{pair[1]}"] = rdf_mae(g, ref_rdfs[pair], protocol.rdf_r_max)
        plots.append(plot_overlay(r, {f"{a}-{b} {who}": g for (a, b) in protocol.pairs
                                      for who, g in ((name, rdfs[(a, b)]), ("reference", ref_rdfs[(a, b)]))},
                                  "r (Å)", "g(r)", output_dir / "rdf.png"))
        longest = max(trajectories, key=lambda t: len(t.frames))
        dt_ps = protocol.rdf_window_ps
        if protocol.system == "water" and longest.time_ps >= 100.0 and len(longest.frames) > 10:
            oxygen = np.array([a.get_chemical_symbols() for a in longest.frames[:1]][0]) == "O"
            unwrapped = np.array([f.info["unwrapped"][oxygen] for f in longest.frames])
            summary["oxygen_diffusivity_A2_per_ps"] = diffusivity(unwrapped, dt_ps)
    summary["plots"] = [str(p) for p in plots]
    (output_dir / "stability.json").write_text(json.dumps(summary, indent=2))
    shutil.rmtree(checkpoint, ignore_errors=True)
    return summary



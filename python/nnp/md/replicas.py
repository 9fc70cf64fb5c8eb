"""Many independent replicas of a molecule in one LAMMPS run: MDsim's molecular stability protocol, batched.

Replica ``k`` is a copy of its start frame centred in cell ``k`` of a cubic lattice whose spacing is the
molecule's diameter + the model's cutoff + a margin, in an open box (``f f f``, 20 Å of padding). Its atoms
carry molecule ID ``k + 1`` and ``neigh_modify exclude molecule/inter all`` removes every pair of atoms of two
different replicas from the neighbour list, so replicas are disconnected components of the model's graph
whatever their distance (the spacing keeps them apart as well): each gets the forces of a single run of that
molecule (to round-off). Atoms of an exploding replica that leave the box are dropped (``thermo_modify lost
ignore``) and that replica counts as collapsed at the next check.

Per replica, as MDsim (Fu et al. 2023, ``simulate.py``, ``mdsim/md/integrator.py``, ``observable.ipynb``):

* thermostat: its own Nosé–Hoover variable (``fix nvt/mdsim``, one per molecule ID) with MDsim's integrator
  and mass ``Q = 3 N kT tau^2``, ``tau = ttime * dt`` (``ttime = 20``: 10 fs at 0.5 fs), 500 K, 0.5 fs;
* start velocities: ASE's ``thermalize_momenta`` (Maxwell–Boltzmann) at the target temperature from ``seed``;
* collapse: max over bonds ``|d - d_ref| > 0.5 Å``, with bonds found in the start frame as MDsim does
  (ASE ``NeighborList(natural_cutoffs(atoms))``, whose 0.3 Å skin per atom makes the criterion
  ``d < r_cov,i + r_cov,j + 0.6 Å``) and ``d_ref`` the mean length of each bond over the reference dataset;
  or the replica's temperature ``KE / (1.5 N k)`` leaving (0.1 K, 1e5 K).

A collapsed replica is deleted (``delete_atoms``, IDs kept) and the others go on; the run ends when all
have collapsed or after ``protocol.time_ps``; replicas still stable then are censored at that time.

With a ``checkpoint`` folder the run saves its state there every ``checkpoint_ps`` of MD (a LAMMPS restart with
positions, velocities and every replica's thermostat variable; the outcomes so far; the frames recorded since the
last checkpoint; a fingerprint of the model file, starts, seeds, reference and protocol), and a later call with the same arguments
continues from it instead of starting over; a checkpoint of another run is an error. The continued trajectory
is the uninterrupted one to round-off (forces are recomputed from the restored positions, which can sum in
another order): chaotic MD amplifies that, so a resumed run is a valid continuation, not a bitwise replay.

Differences from MDsim kept (also in docs/stability.md):

* the collapse check runs every ``protocol.check_every`` steps (20 = 10 fs) on the live trajectory;
  MDsim checks the frames it saved every 100 steps (50 fs): collapse times here are finer-grained;
* the start velocities have their centre-of-mass momentum and angular momentum removed (ASE ``Stationary``
  and ``ZeroRotation``, not rescaled), MDsim keeps both: a drifting molecule (≈ 1.5 Å/ps for aspirin at
  500 K) would leave the box in a long run;
* MDsim's molecule sits in a periodic 30 Å-ish cell it never feels (its graph has no periodic edges for
  a molecule); here the box is open. Same forces.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms, units
from ase.data import atomic_masses

from ..pretrained import resolve_file
from .checkpoint import CHECKPOINT_PS, load_state, previous_state, run_fingerprint, save_state
from .criteria import mdsim_bonds, mean_bond_lengths, molecule_collapse
from .protocol import Protocol

MDSIM_TTIME = 20.0  # MDsim's configs/simulate/*.yml: Nosé–Hoover ttime, in units of the timestep


@dataclass
class ReplicaOutcome:
    index: int
    seed: int
    steps: int
    stable_ps: float
    collapsed: bool
    reason: str


@dataclass
class ReplicaRun:
    outcomes: list[ReplicaOutcome]
    spacing: float
    wall_s: float
    steps: int  # MD steps of the run (of the longest-lived replica)
    md_wall_s: float = 0.0  # inside LAMMPS's `run` commands (MD only: no setup, no collapse checks)
    positions: dict = field(default_factory=dict, repr=False)  # step -> (replicas, atoms, 3), NaN once removed
    resumed_from_step: int = 0  # the checkpoint's step this call continued from (0: it started the run)


def start_velocities(atoms: Atoms, temperature: float, seed: int) -> np.ndarray:
    """Maxwell–Boltzmann velocities (ASE, as MDsim) without net momentum and rotation; Å/ps."""
    from ase.md.velocitydistribution import Stationary, ZeroRotation, thermalize_momenta

    atoms = atoms.copy()
    # MDsim calls MaxwellBoltzmannDistribution, which ASE 3.29 deprecates and implements as this (the same numbers)
    thermalize_momenta(atoms, temperature, rng=np.random.default_rng(seed))
    Stationary(atoms)
    ZeroRotation(atoms)
    return atoms.get_velocities() * 1000.0 * units.fs  # ASE velocity unit -> Å/ps


def lattice(n: int, spacing: float) -> np.ndarray:
    """Centres of ``n`` cells of a cubic lattice (row-major)."""
    side = max(1, math.ceil(round(n ** (1.0 / 3.0), 9)))
    cells = np.array([(a, b, c) for a in range(side) for b in range(side) for c in range(side)][:n], dtype=float)
    return (cells + 0.5) * spacing


def _write_data(path: Path, starts: Sequence[Atoms], centres: np.ndarray, velocities: Sequence[np.ndarray],
                species: list[str], half_box: float) -> None:
    lines = ["nnp replicas", "", f"{sum(len(a) for a in starts)} atoms", f"{len(species)} atom types", ""]
    hi = float(centres.max()) + half_box
    lines += [f"{-half_box + float(centres.min()):.17g} {hi:.17g} {ax}lo {ax}hi" for ax in "xyz"] + ["", "Masses", ""]
    from ase.data import atomic_numbers

    lines += [f"{t + 1} {atomic_masses[atomic_numbers[s]]:.17g}" for t, s in enumerate(species)]
    atoms_lines, velocity_lines, tag = [], [], 0
    for k, (atoms, centre, v) in enumerate(zip(starts, centres, velocities)):
        x = atoms.positions - atoms.positions.mean(axis=0) + centre
        for symbol, xi, vi in zip(atoms.get_chemical_symbols(), x, v):
            tag += 1
            atoms_lines.append(f"{tag} {k + 1} {species.index(symbol) + 1} {xi[0]:.17g} {xi[1]:.17g} {xi[2]:.17g}")
            velocity_lines.append(f"{tag} {vi[0]:.17g} {vi[1]:.17g} {vi[2]:.17g}")
    lines += ["", "Atoms # molecular", ""] + atoms_lines + ["", "Velocities", ""] + velocity_lines
    path.write_text("\n".join(lines) + "\n")


def save_checkpoint(lmp, folder: Path, fingerprint: str, step: int, outcomes: dict, record: dict,
                    wall_s: float, md_wall_s: float) -> None:
    """The run's state at ``step`` (:func:`nnp.md.checkpoint.save_state`): the restart, the frames recorded since
    the last checkpoint, and ``state.json`` with the outcomes so far."""
    path = folder / "state.json"
    since = previous_state(path).get("step", -1)
    steps = [k for k in sorted(record) if k > since]
    save_state(lmp, path, "replicas", step,
               {"steps": np.array(steps, dtype=np.int64), "positions": np.array([record[k] for k in steps])},
               {"fingerprint": fingerprint, "step": step, "wall_s": wall_s, "md_wall_s": md_wall_s,
                "outcomes": [asdict(o) for o in outcomes.values()]})


def load_checkpoint(folder: Path, fingerprint: str) -> dict | None:
    """``state.json`` of ``folder`` with its outcomes and frames read back, or None when there is none."""
    state = load_state(folder / "state.json", fingerprint)
    if state is None:
        return None
    state["record"] = {}
    for name in state["chunks"]:
        with np.load(folder / name) as frames:
            state["record"].update({int(k): x for k, x in zip(frames["steps"], frames["positions"])})
    state["outcomes"] = {o["index"]: ReplicaOutcome(**o) for o in state["outcomes"]}
    state["restart"] = folder / state["restart"]
    return state


def run_replicas(model: str | Path, starts: Sequence[Atoms], seeds: Sequence[int], protocol: Protocol,
                 reference: Sequence[Atoms], margin: float = 10.0, record_every: int = 0,
                 progress: bool = False, checkpoint: str | Path | None = None,
                 checkpoint_ps: float = CHECKPOINT_PS) -> ReplicaRun:
    """Run ``len(starts)`` replicas in one LAMMPS instance, one MPI rank (see the module docstring).

    ``record_every``: keep every replica's positions (relative to its cell centre) every that many steps.
    ``checkpoint``: a folder to save the run's state in every ``checkpoint_ps`` and to continue from.
    """
    from tqdm.auto import tqdm

    from ..evaluator import load_evaluator
    from ..lammps import make_lammps, nnp_lines, system_lines

    if protocol.system != "molecule":
        raise ValueError("replicas run the molecular protocol (bond-deviation collapse), not " + protocol.system)
    if len(starts) != len(seeds) or not starts:
        raise ValueError(f"need one seed per start frame, got {len(starts)} starts and {len(seeds)} seeds")
    evaluator = load_evaluator(model)
    unknown = sorted({s for a in starts for s in a.get_chemical_symbols()} - set(evaluator.species))
    if unknown:
        raise ValueError(f"elements {unknown} are not known to {model}, which knows {' '.join(evaluator.species)}")
    species = [s for s in evaluator.species if any(s in a.get_chemical_symbols() for a in starts)]
    radius = max(float(np.linalg.norm(a.positions - a.positions.mean(axis=0), axis=1).max()) for a in starts)
    spacing = 2.0 * radius + evaluator.cutoff + margin
    if spacing <= 0:
        raise ValueError(f"margin {margin} Å leaves no room between replicas (spacing {spacing:.2f} Å)")
    centres = lattice(len(starts), spacing)
    bonds = [mdsim_bonds(a) for a in starts]
    d_ref = [mean_bond_lengths(reference, a.get_chemical_symbols(), i, j) for a, (i, j) in zip(starts, bonds)]
    masses = [a.get_masses() for a in starts]
    velocities = [start_velocities(a, protocol.temperature, s) for a, s in zip(starts, seeds)]
    offsets = np.cumsum([0] + [len(a) for a in starts])
    dt_ps = protocol.timestep_fs / 1000.0
    total_steps = int(round(protocol.time_ps / dt_ps))
    padding = max(radius, 20.0)  # around the lattice: room for an intact molecule to drift
    folder = Path(checkpoint) if checkpoint is not None else None
    fingerprint = run_fingerprint(model, {"runner": "replicas", "protocol": asdict(protocol), "margin": margin,
                                          "seeds": [int(s) for s in seeds], "record_every": record_every},
                                  starts, reference) if folder else ""
    resumed = load_checkpoint(folder, fingerprint) if folder else None
    checkpoint_steps = max(1, int(round(checkpoint_ps / dt_ps)))

    lmp = make_lammps()
    outcomes: dict[int, ReplicaOutcome] = resumed["outcomes"] if resumed else {}
    record: dict[int, np.ndarray] = resumed["record"] if resumed else {}
    start_wall = time.perf_counter() - (resumed["wall_s"] if resumed else 0.0)
    md_wall = resumed["md_wall_s"] if resumed else 0.0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "replicas.data"
            if resumed:  # positions, velocities, step, box and each replica's zeta (fix nvt/mdsim's restart)
                system = system_lines(resumed["restart"], "f f f", atom_style="molecular",
                                      atom_map="array sort 0 0.0", restart=True)
            else:
                _write_data(data, starts, centres, velocities, species, spacing / 2.0 + padding)
                system = system_lines(data, "f f f", atom_style="molecular", atom_map="array sort 0 0.0")
            for line in (*system,
                         *nnp_lines(resolve_file(model).resolve(), species, zbl=protocol.zbl), "neighbor 1.0 bin",
                         "neigh_modify exclude molecule/inter all",  # no edge between two replicas, ever
                         f"timestep {dt_ps}",
                         f"fix nvt all nvt/mdsim {protocol.temperature} {MDSIM_TTIME * dt_ps}",
                         "thermo_style custom step pe", "thermo 0",
                         "thermo_modify lost ignore",  # atoms of an exploding replica leave the box, the run goes on
                         "run 0 post no"):
                lmp.command(line)
        step, pre = (resumed["step"], "no") if resumed else (0, "no")
        saved = step
        alive = set(range(len(starts))) - set(outcomes)
        bar = tqdm(total=total_steps, initial=step, desc="replica MD steps", unit="step", disable=not progress)

        def positions_and_ke() -> tuple[np.ndarray, np.ndarray]:
            n = lmp.extract_global("nlocal")
            ids = lmp.numpy.extract_atom("id")[:n]
            x = np.full((offsets[-1], 3), np.nan)
            v = np.zeros((offsets[-1], 3))
            x[ids - 1] = lmp.numpy.extract_atom("x")[:n]
            v[ids - 1] = lmp.numpy.extract_atom("v")[:n]
            return x, v

        def store(x: np.ndarray) -> None:
            width = max(len(a) for a in starts)
            frame = np.full((len(starts), width, 3), np.nan)
            for k in alive:
                frame[k, : len(starts[k])] = x[offsets[k]:offsets[k + 1]] - centres[k]
            record[step] = frame

        if record_every and not resumed:  # a resumed run has its frames up to the checkpoint's step
            store(positions_and_ke()[0])
        while step < total_steps and alive:
            n = min(protocol.check_every, total_steps - step)
            if record_every:
                n = min(n, record_every - step % record_every)
            tick = time.perf_counter()
            lmp.command(f"run {n} pre {pre} post no")
            md_wall += time.perf_counter() - tick
            step, pre = step + n, "no"
            bar.update(n)
            bar.set_postfix(stable=len(alive), refresh=False)
            x, v = positions_and_ke()
            finished = []
            for k in sorted(alive):
                xk = x[offsets[k]:offsets[k + 1]]
                ke = 0.5 * (masses[k][:, None] * v[offsets[k]:offsets[k + 1]] ** 2).sum() * units._amu * 1e4 / units._e
                temperature = ke / (1.5 * len(xk) * units.kB)  # MDsim's temperature (3N degrees of freedom)
                reason = molecule_collapse(xk, bonds[k], d_ref[k], temperature, protocol)
                if reason:
                    outcomes[k] = ReplicaOutcome(k, int(seeds[k]), step, step * dt_ps, True, reason)
                    finished.append(k)
            if record_every and step % record_every == 0:
                store(x)
            if finished:
                alive -= set(finished)
                if alive:  # remove them; atom IDs of the others are kept
                    ids = " ".join(str(k + 1) for k in finished)
                    lmp.command(f"group gone molecule {ids}")
                    lmp.command("delete_atoms group gone compress no")
                    lmp.command("group gone delete")
                    pre = "yes"
            if folder and alive and step < total_steps and step - saved >= checkpoint_steps:
                save_checkpoint(lmp, folder, fingerprint, step, outcomes, record, time.perf_counter() - start_wall,
                                md_wall)
                saved = step
        bar.close()
        for k in alive:
            outcomes[k] = ReplicaOutcome(k, int(seeds[k]), step, step * dt_ps, False, "stable for the full run")
    finally:
        lmp.close()
    return ReplicaRun([outcomes[k] for k in range(len(starts))], spacing, time.perf_counter() - start_wall,
                      step, md_wall, record, resumed["step"] if resumed else 0)


def stable_frames(run: ReplicaRun, starts: Sequence[Atoms]) -> list[Atoms]:
    """Every recorded frame of every replica before the check that found it collapsed (MDsim's h(r) is
    taken over the stable part of each trajectory)."""
    frames = []
    for step, frame in sorted(run.positions.items()):
        for k, (start, outcome) in enumerate(zip(starts, run.outcomes)):
            x = frame[k, : len(start)]
            if (outcome.collapsed and step >= outcome.steps) or np.isnan(x).any():
                continue
            frames.append(Atoms(start.get_chemical_symbols(), positions=x))
    return frames


def run_replica_stability(model: str | Path, starts: Sequence[Atoms], protocol: Protocol, output_dir: str | Path,
                          reference: Sequence[Atoms], seed: int = 0, progress: bool = False) -> dict:
    """Replicas of ``starts`` (seed ``seed + 1000 k + 1`` for replica k); write stability.json, survival.png
    and h_r.png (the distance distribution of the stable frames, every ``protocol.sample_every`` steps,
    against ``reference``; its error ``h_r_mae`` as MDsim's). The run checkpoints in ``output_dir/checkpoint``
    (removed once stability.json is written): called again after an interruption, it continues there."""
    from ..plotting import plot_kaplan_meier, plot_overlay
    from .observables import distance_histogram, h_r_mae
    from .survival import kaplan_meier, summarize

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    seeds = [seed + 1000 * k + 1 for k in range(len(starts))]
    checkpoint = output_dir / "checkpoint"
    run = run_replicas(model, starts, seeds, protocol, reference, record_every=protocol.sample_every,
                       progress=progress, checkpoint=checkpoint)
    durations = [o.stable_ps for o in run.outcomes]
    collapsed = [o.collapsed for o in run.outcomes]
    summary = {
        "model": str(model),
        "protocol": {**asdict(protocol), "thermostat": f"fix nvt/mdsim, tau = {MDSIM_TTIME} x timestep",
                     "runner": "replicas in one LAMMPS run"},
        "replica_spacing_A": run.spacing,
        "wall_s": run.wall_s,
        "resumed_from_step": run.resumed_from_step,
        "md_wall_s": run.md_wall_s,
        "md_steps_per_s": run.steps / run.md_wall_s if run.md_wall_s > 0 else None,
        "trajectories": [{"index": o.index, "seed": o.seed, "stable_ps": o.stable_ps, "collapsed": o.collapsed,
                          "reason": o.reason} for o in run.outcomes],
        "kaplan_meier": summarize(durations, collapsed),
    }
    name = Path(model).name
    summary["plots"] = [str(plot_kaplan_meier({name: kaplan_meier(durations, collapsed)}, protocol.time_ps,
                                              output_dir / "survival.png"))]
    frames = stable_frames(run, starts)
    if frames:
        r, h = distance_histogram(frames)
        _, h_ref = distance_histogram(reference)
        summary["h_r_mae"] = h_r_mae(h, h_ref)
        summary["h_r_frames"] = len(frames)
        summary["plots"].append(str(plot_overlay(r, {name: h, "reference": h_ref}, "r (Å)", "h(r)",
                                                 output_dir / "h_r.png")))
    (output_dir / "stability.json").write_text(json.dumps(summary, indent=2))
    shutil.rmtree(checkpoint, ignore_errors=True)
    return summary



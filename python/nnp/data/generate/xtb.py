"""Quantum-labelled datasets with GFN2-xTB (tblite): MD sampling of molecules and relabelling of frames.

* ``aspirin-xtb``: Langevin NVT MD of aspirin (built from SMILES with RDKit) at 500 K, 0.5 fs, a frame
  every 10 steps -- the role of MD17 aspirin.
* ``g2-xtb``: short MD trajectories of the small molecules of ASE's G2 collection at several
  temperatures -- a diverse pretraining set in the role of OC20.
* ``water-xtb``: classical TIP3P configurations relabelled with periodic GFN2-xTB -- the role of DFT water.

Every generator is resumable (frames already written are kept; the MD continues from the saved
positions, velocities and random state), checks a few frames' forces against finite differences of
the energy, and drops frames with a failed SCF or an exploded geometry, counting them in the card.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator
from tqdm.auto import tqdm

from ..molecules import reference_bonds
from .resumable import ResumableTrajectory

LEVEL_OF_THEORY = "GFN2-xTB (tblite), electronic temperature 300 K, SCF accuracy 0.01"
FD_STEP = 1e-3  # Å
FD_TOLERANCE = 5e-3  # eV/Å: SCF convergence noise of xTB forces is far below this


def xtb_calculator():
    from tblite.ase import TBLite

    # accuracy 0.01 (100x tighter than the default) keeps SCF noise in the forces near 1e-5 eV/Å
    return TBLite(method="GFN2-xTB", verbosity=0, accuracy=0.01)


def molecule(smiles: str, seed: int = 42) -> Atoms:
    """A molecule from SMILES (hydrogens added), embedded with RDKit's ETKDG and MMFF-relaxed."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"invalid SMILES {smiles!r}")
    mol = Chem.AddHs(mol)
    AllChem.EmbedMolecule(mol, randomSeed=seed)
    AllChem.MMFFOptimizeMolecule(mol)
    return Atoms([a.GetSymbol() for a in mol.GetAtoms()], positions=mol.GetConformer().GetPositions())


def aspirin() -> Atoms:
    """Aspirin (21 atoms) from SMILES, embedded with RDKit's ETKDG."""
    return molecule("CC(=O)OC1=CC=CC=C1C(=O)O")


def g2_molecules(min_atoms: int = 2) -> list[tuple[str, Atoms]]:
    """Neutral closed-shell-friendly molecules of ASE's G2 set with at least ``min_atoms`` atoms."""
    from ase.collections import g2

    out = []
    for name in g2.names:
        atoms = g2[name]
        if len(atoms) >= min_atoms and sum(atoms.numbers) % 2 == 0:  # even electron count: singlet
            out.append((name, atoms))
    return out


@dataclass
class Segment:
    """One MD trajectory to sample; ``atoms`` may be a function building the start (called when reached).

    ``displacement`` > 0: no MD; each frame is the start with Gaussian noise on every coordinate, its
    standard deviation drawn per frame uniformly in [0.2, 1] x ``displacement`` (Å): strained geometries,
    high forces and short contacts that thermal MD rarely visits.
    """

    label: str
    atoms: Atoms | Callable[[], Atoms]
    temperature: float
    frames: int
    displacement: float = 0.0

    def start(self) -> Atoms:
        return self.atoms() if callable(self.atoms) else self.atoms


def segments_digest(segments: Sequence[Segment]) -> dict:
    """Count, total frames and SHA-256 of (label, temperature, frames) of every segment: a compact resume key."""
    listing = json.dumps([(s.label, s.temperature, s.frames) + ((s.displacement,) if s.displacement else ())
                          for s in segments]).encode()
    return {"count": len(segments), "frames": sum(s.frames for s in segments),
            "sha256": hashlib.sha256(listing).hexdigest()}


def exploded(atoms: Atoms, reference_bonds: tuple[np.ndarray, np.ndarray, np.ndarray], tolerance: float = 1.0) -> bool:
    """A bond of the starting structure stretched/compressed by more than ``tolerance`` Å, or atoms overlapping."""
    i, j, lengths = reference_bonds
    now = np.linalg.norm(atoms.positions[j] - atoms.positions[i], axis=1)
    if len(lengths) and np.abs(now - lengths).max() > tolerance:
        return True
    distances = atoms.get_all_distances()
    np.fill_diagonal(distances, np.inf)
    return bool(distances.min() < 0.5)


def finite_difference_error(atoms: Atoms, forces: np.ndarray, rng: np.random.Generator, n_atoms: int = 2) -> float:
    """Max |F + dE/dx| (central differences) over a few random atoms and all three axes."""
    probe = atoms.copy()
    probe.calc = xtb_calculator()
    worst = 0.0
    for a in rng.choice(len(atoms), size=min(n_atoms, len(atoms)), replace=False):
        for axis in range(3):
            energies = []
            for sign in (1, -1):
                probe.positions = atoms.positions
                probe.positions[a, axis] += sign * FD_STEP
                energies.append(probe.get_potential_energy())
            numeric = -(energies[0] - energies[1]) / (2 * FD_STEP)
            worst = max(worst, abs(numeric - forces[a, axis]))
    return worst


def sample_md(
    output: str | Path,
    segments: Sequence[Segment],
    name: str,
    timestep_fs: float = 0.5,
    interval: int = 10,
    equilibration_steps: int = 200,
    seed: int = 0,
    friction_per_fs: float = 0.01,
    check_every: int = 100,
    progress: bool = True,
    calculator: Callable = xtb_calculator,
    compact_parameters: bool = False,
    extra_parameters: dict | None = None,
    max_failures: int = 20,
) -> Path:
    """Langevin NVT MD with xTB over ``segments``, one frame every ``interval`` steps, resumable.

    ``compact_parameters``: record the segments in the resume key by count and digest instead of listing
    them (thousands of segments); ``extra_parameters`` are added to the resume key. A segment whose frames
    fail ``max_failures`` times in a row (SCF failure or broken geometry) is given up and counted in the card;
    an equilibration that fails restarts the frames from the starting structure.
    """
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import Stationary, ZeroRotation, thermalize_momenta

    listed = segments_digest(segments) if compact_parameters else [(s.label, s.temperature, s.frames) for s in segments]
    parameters = {"name": name, "segments": listed, **(extra_parameters or {}),
                  "timestep_fs": timestep_fs, "interval": interval, "equilibration_steps": equilibration_steps,
                  "seed": seed, "friction_per_fs": friction_per_fs}
    out = ResumableTrajectory(output, parameters)
    state = out.resume_state()
    if state is None:
        out.start()
        state = {"segment": 0, "segment_frames": 0, "frames": 0, "dropped_scf": 0, "dropped_geometry": 0,
                 "fd_checked": 0, "fd_max_error": 0.0, "positions": None, "velocities": None, "rng": None,
                 "seconds": 0.0}
    for key in ("failed_equilibrations", "skipped_segments", "skipped_frames"):  # absent in older state files
        state.setdefault(key, 0)
    total = sum(s.frames for s in segments)
    bar = tqdm(total=total, initial=state["frames"], desc=name, unit="frame", disable=not progress)
    tick = time.monotonic()
    rng = np.random.default_rng(seed)
    if state["rng"] is not None:
        rng.bit_generator.state = state["rng"]
    while state["segment"] < len(segments):
        segment = segments[state["segment"]]
        start = segment.start()
        if segment.displacement > 0:
            _displaced_frames(segment, start, state, rng, calculator, out, bar, max_failures)
            state.update(segment=state["segment"] + 1, segment_frames=0, positions=None, velocities=None)
            tick = time.monotonic()
            continue
        atoms = start.copy()
        atoms.set_constraint(FixCom())
        atoms.calc = calculator()
        reference = reference_bonds(start)
        if state["positions"] is not None:
            atoms.positions = np.array(state["positions"])
            atoms.set_velocities(np.array(state["velocities"]))
        else:
            thermalize_momenta(atoms, segment.temperature, rng=rng)
            Stationary(atoms)
            with np.errstate(invalid="ignore", divide="ignore"):  # linear molecules have a zero moment
                ZeroRotation(atoms)
        dyn = Langevin(atoms, timestep_fs * units.fs, temperature_K=segment.temperature,
                       friction=friction_per_fs / units.fs, rng=rng, fixcm=False)
        if state["positions"] is None and equilibration_steps:
            try:
                dyn.run(equilibration_steps)
                broken = exploded(atoms, reference)
            except Exception:  # SCF failure while equilibrating
                broken = True
            if broken:  # start the frames from the starting structure instead, with fresh velocities
                state["failed_equilibrations"] += 1
                atoms.positions = start.positions
                thermalize_momenta(atoms, segment.temperature, rng=rng)
        good = (atoms.positions.copy(), atoms.get_velocities().copy())
        failures = 0  # in a row: a molecule that keeps breaking apart is given up after max_failures
        while state["segment_frames"] < segment.frames:
            if failures >= max_failures:
                _give_up(segment, state, bar)
                break
            try:
                dyn.run(interval)
                energy, forces = atoms.get_potential_energy(), atoms.get_forces(apply_constraint=False)
                failed = exploded(atoms, reference) or not np.all(np.isfinite(forces))
                if failed:
                    state["dropped_geometry"] += 1
            except Exception:  # SCF did not converge (tblite raises) or the integrator blew up
                state["dropped_scf"] += 1
                failed = True
            if failed:  # restart from the last good frame with fresh velocities
                failures += 1
                atoms.positions, _ = good
                thermalize_momenta(atoms, segment.temperature, rng=rng)
                continue
            if state["frames"] % check_every == 0:
                error = finite_difference_error(atoms, forces, rng)
                state["fd_checked"] += 1
                state["fd_max_error"] = max(state["fd_max_error"], error)
                if error > FD_TOLERANCE:
                    raise RuntimeError(f"{name}: xTB forces differ from the energy gradient by {error:.2e} eV/Å "
                                       f"at frame {state['frames']}: labels are not trustworthy")
            frame = Atoms(atoms.symbols, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
            frame.info.update({"system": segment.label, "temperature_K": segment.temperature})
            frame.calc = SinglePointCalculator(frame, energy=energy, forces=forces)
            good = (atoms.positions.copy(), atoms.get_velocities().copy())
            failures = 0
            state["segment_frames"] += 1
            state["frames"] += 1
            state.update(positions=good[0].tolist(), velocities=good[1].tolist(), rng=rng.bit_generator.state,
                         seconds=state["seconds"] + time.monotonic() - tick)
            tick = time.monotonic()
            out.append(frame, state)
            bar.update(1)
        state.update(segment=state["segment"] + 1, segment_frames=0, positions=None, velocities=None)
    bar.close()
    out.write_card({
        "dataset": name,
        "level_of_theory": LEVEL_OF_THEORY,
        "sampling": "Langevin NVT (ASE), frames every `interval` steps after `equilibration_steps`",
        "equilibration_steps": equilibration_steps,
        "friction_per_fs": friction_per_fs,
        "temperatures_K": sorted({s.temperature for s in segments}),
        "timestep_fs": timestep_fs,
        "sampling_interval_steps": interval,
        "seed": seed,
        "frames": state["frames"],
        "systems": len(segments),
        "dropped_failed_scf": state["dropped_scf"],
        "dropped_exploded_geometry": state["dropped_geometry"],
        "failed_equilibrations": state["failed_equilibrations"],
        "skipped_segments": state["skipped_segments"],
        "skipped_frames": state["skipped_frames"],
        "finite_difference_check": {"frames_checked": state["fd_checked"],
                                    "max_abs_error_eV_per_A": state["fd_max_error"]},
        "generation_seconds": state["seconds"],
    })
    return out.path


def _give_up(segment: Segment, state: dict, bar) -> None:
    """Count the rest of a segment whose frames kept failing as skipped."""
    state["skipped_segments"] += 1
    state["skipped_frames"] += segment.frames - state["segment_frames"]
    bar.update(segment.frames - state["segment_frames"])


def _displaced_frames(segment: Segment, start: Atoms, state: dict, rng: np.random.Generator, calculator: Callable,
                      out: ResumableTrajectory, bar, max_failures: int) -> None:
    """The frames of a displaced segment: single points of the start with Gaussian noise (see Segment)."""
    atoms = start.copy()
    atoms.calc = calculator()
    reference = reference_bonds(start)
    failures = 0
    while state["segment_frames"] < segment.frames:
        if failures >= max_failures:
            _give_up(segment, state, bar)
            return
        tick = time.monotonic()
        sigma = float(rng.uniform(0.2, 1.0)) * segment.displacement
        atoms.positions = start.positions + rng.normal(scale=sigma, size=start.positions.shape)
        try:
            if exploded(atoms, reference):
                state["dropped_geometry"] += 1
                failures += 1
                continue
            energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        except Exception:  # SCF did not converge
            state["dropped_scf"] += 1
            failures += 1
            atoms.calc = calculator()
            continue
        if not np.all(np.isfinite(forces)):
            state["dropped_scf"] += 1
            failures += 1
            continue
        frame = Atoms(atoms.symbols, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        frame.info.update({"system": segment.label, "temperature_K": segment.temperature,
                           "displacement_sigma_A": sigma})
        frame.calc = SinglePointCalculator(frame, energy=energy, forces=forces)
        failures = 0
        state["segment_frames"] += 1
        state["frames"] += 1
        state.update(positions=None, velocities=None, rng=rng.bit_generator.state,
                     seconds=state["seconds"] + time.monotonic() - tick)
        out.append(frame, state)
        bar.update(1)


def generate_aspirin_xtb(output: str | Path, n_frames: int = 10000, temperature: float = 500.0, seed: int = 0,
                         interval: int = 10, progress: bool = True) -> Path:
    """MD17-like aspirin trajectory (use a different ``seed`` for the separate test trajectory)."""
    segments = [Segment("aspirin", aspirin(), temperature, n_frames)]
    return sample_md(output, segments, "aspirin-xtb", timestep_fs=0.5, interval=interval, seed=seed,
                     progress=progress)


def generate_molecule_xtb(output: str | Path, name: str, n_frames: int = 1000, temperature: float = 500.0,
                          seed: int = 0, interval: int = 10, progress: bool = True) -> Path:
    """MD17-like trajectory of any molecule: a revised-MD17 name (``ethanol``, ``uracil``...) or a SMILES."""
    from .molecule_graphs import HELD_OUT

    smiles = HELD_OUT.get(name, name)
    label = name if name in HELD_OUT else smiles
    segments = [Segment(label.replace(" ", "_"), molecule(smiles), temperature, n_frames)]
    return sample_md(output, segments, f"{label.replace(' ', '_')}-xtb", timestep_fs=0.5, interval=interval,
                     seed=seed, progress=progress)


def generate_g2_xtb(output: str | Path, frames_per_system: int = 50, temperatures: Sequence[float] = (300.0, 600.0, 1000.0),
                    max_molecules: int | None = None, seed: int = 0, interval: int = 10,
                    progress: bool = True) -> Path:
    """Diverse pretraining set: every G2 molecule at every temperature, ``frames_per_system`` frames each."""
    molecules = g2_molecules()[:max_molecules]
    segments = [Segment(f"{name}@{int(t)}K", atoms, t, frames_per_system) for name, atoms in molecules for t in temperatures]
    return sample_md(output, segments, "g2-xtb", timestep_fs=0.5, interval=interval, equilibration_steps=100,
                     seed=seed, progress=progress)


def relabel_xtb(input_path: str | Path, output: str | Path, max_frames: int | None = None, progress: bool = True,
                name: str = "water-xtb", calculator: Callable = xtb_calculator, stress: bool = False) -> Path:
    """Recompute energies and forces of existing frames with (periodic) GFN2-xTB, resumable.

    ``stress``: also the stress (periodic frames; ASE's convention, eV/Å³, without the kinetic part), which
    tblite computes with the forces at no extra cost: the label NPT runs and ``train.stress_weight`` need."""
    import ase.io

    frames = ase.io.read(input_path, index=":")[:max_frames]
    parameters = {"name": name, "source": str(input_path), "frames": len(frames), **({"stress": True} if stress else {})}
    out = ResumableTrajectory(output, parameters)
    state = out.resume_state()
    if state is None:
        out.start()
        state = {"next": 0, "frames": 0, "dropped_scf": 0, "seconds": 0.0}
    calc = calculator()
    tick = time.monotonic()
    for k in tqdm(range(state["next"], len(frames)), desc=name, unit="frame", disable=not progress,
                  initial=state["next"], total=len(frames)):
        atoms = frames[k]
        probe = Atoms(atoms.symbols, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        probe.calc = calc
        try:
            labels = {"energy": probe.get_potential_energy(), "forces": probe.get_forces(),
                      **({"stress": probe.get_stress()} if stress else {})}
            frame = probe.copy()
            frame.info["source_frame"] = k
            frame.calc = SinglePointCalculator(frame, **labels)
            state["frames"] += 1
            state["next"] = k + 1
            state["seconds"] += time.monotonic() - tick
            tick = time.monotonic()
            out.append(frame, state)
        except Exception:
            state["dropped_scf"] += 1
            state["next"] = k + 1
            calc = calculator()
    out.write_card({"dataset": name, "level_of_theory": LEVEL_OF_THEORY + ", periodic",
                    "source": str(input_path), "frames": state["frames"],
                    "labels": "energy, forces" + (", stress (eV/Å³, virial only)" if stress else ""),
                    "dropped_failed_scf": state["dropped_scf"], "generation_seconds": state["seconds"]})
    return out.path

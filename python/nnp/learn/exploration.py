"""Exploration: NVT (or NPT) MD in LAMMPS driven by ensemble member 0, the deviation measured every out_freq steps.

``pair_style nnp ensemble`` evaluates the other members on the driver's graph every ``out_freq`` steps
(docs/pair_style.md); after each such step the frame and its ``max_devi_f`` are kept. A replica stops
when ``max_devi_f`` reaches the upper trust level (the members disagree so much that what follows is
not worth simulating), when two atoms run into each other (nnp.md.criteria.close_contact: members
trained on the same few frames can agree on that; such a frame carries ``info['close_contact']`` and is
never a candidate) or when the system explodes; its stable time is the time of the last frame before.
Frames are read back with LAMMPS's box (``nnp.lammps.current_atoms``): under NPT each has its own cell, and a
structure whose cell LAMMPS had to rotate keeps positions and cell in one frame.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import ase.io
from ase import Atoms

from ..data.atomic import write_frames, write_text
from ..md.deviation import ensemble_arguments
from ..errors import UserError
from ..md.criteria import close_contact, is_explosion


@dataclass
class ReplicaResult:
    frames: int  # frames written (one per deviation step)
    steps: int  # steps run
    time_ps: float  # stable time: up to the last frame below the upper trust level and without a close contact
    failed: bool  # stopped early (deviation >= hi, a close contact, or an explosion)
    reason: str
    cpu_seconds: float
    volume_ratio: float | None = None  # NPT: the last frame's box volume over the start's (None under NVT)


def _deck(members: Sequence[str], species: list[str], out_freq: int, devi_file: Path, dynamics: list[str]) -> list[str]:
    """Everything after the system: member 0 drives, the others give the deviation every out_freq steps."""
    from ..lammps import nnp_lines

    return [*nnp_lines(members[0], species, ensemble_arguments(members[1:], out_freq, devi_file)),
            "neighbor 1.0 bin", "compute dev all nnp/deviation", *dynamics,
            "thermo_style custom step temp pe vol c_dev[1]", f"thermo {out_freq * 100}"]


def _check_tilts(lmp) -> None:
    """A barostat cannot change a box whose tilt is already half its length (LAMMPS's limit): fcc's 60° primitive
    cell is one. Say so before the run, with the fix, rather than let the first step fail."""
    from ..lammps import box_cell

    cell = box_cell(lmp)  # rows a = (lx, 0, 0), b = (xy, ly, 0), c = (xz, yz, lz)
    for name, (row, column), along in (("xy", (1, 0), "lx"), ("xz", (2, 0), "lx"), ("yz", (2, 1), "ly")):
        tilt, length = cell[row, column], cell[column, column]
        if abs(tilt) >= 0.5 * length - 1e-6:
            raise UserError(f"the exploration box's tilt {name} = {tilt:.4g} Å is half its length {along} = "
                            f"{length:.4g} Å, as far as LAMMPS lets a box tilt, so a barostat cannot change it: give "
                            "a less skewed cell of the same crystal (e.g. the conventional cubic cell), or remove "
                            "pressures for this system")


def run_replica(members: Sequence[str], model_species: Sequence[str], start: Atoms, temperature: float, steps: int,
                seed: int, *, timestep_fs: float, out_freq: int, thermostat_fs: float, hi: float, vacuum: float,
                output_dir: str | Path, pressure_bar: float | None = None, barostat_fs: float = 1000.0,
                barostat: str = "iso") -> ReplicaResult:
    """One replica into ``output_dir`` (frames.extxyz, model_devi.out, result.json); result.json last.

    ``model_species``: the elements of the members, in their order. ``pressure_bar``: NPT at that pressure
    (a structure periodic in all three directions), the box coupled as ``barostat`` says (``iso``, ``aniso``,
    ``tri``: ``nnp.lammps.npt_lines``); None: NVT. A replica whose result.json exists is not run
    again (resume): its result is read back.
    """
    from ..lammps import current_atoms, load_atoms, make_lammps, npt_lines, nvt_lines

    output_dir = Path(output_dir)
    result_path = output_dir / "result.json"
    if result_path.exists():
        return ReplicaResult(**json.loads(result_path.read_text()))
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.process_time()
    atoms = start.copy()
    if pressure_bar is not None and not atoms.pbc.all():
        raise UserError(f"exploration at a pressure ({pressure_bar:g} bar) needs a structure periodic in x, y and z; "
                        f"this one has pbc={atoms.pbc.tolist()}: remove pressures for it, or give a periodic box")
    if not atoms.pbc.any():
        atoms.center(vacuum=vacuum)
    contact = close_contact(atoms)
    if contact is not None:
        raise UserError(f"the exploration start structure is not physical: {contact}; give a relaxed or "
                        "equilibrated structure (explore.systems[].structure)")
    species = [s for s in model_species if s in set(atoms.get_chemical_symbols())]
    frames_path, devi_path = output_dir / "frames.extxyz", output_dir / "model_devi.out"
    frames, devis = [], []
    steps_done, stable_step, failed, reason = 0, 0, False, "ran every step below the upper trust level"
    lmp = make_lammps()
    try:
        load_atoms(lmp, atoms, species)
        if pressure_bar is not None:
            _check_tilts(lmp)
        dynamics = (nvt_lines(temperature, seed, timestep_fs, thermostat_fs) if pressure_bar is None else
                    npt_lines(temperature, pressure_bar, seed, timestep_fs, thermostat_fs, barostat_fs, barostat))
        lmp.commands_list(_deck(members, species, out_freq, devi_path, dynamics))
        lmp.command("run 0 post no")  # the deviation of the start (step 0) is measured too
        while True:
            devi = float(lmp.numpy.extract_compute("dev", 0, 1)[0])
            frame = current_atoms(lmp, species, atoms.get_pbc())
            frame.info.update({"step": steps_done, "max_devi_f": devi, "temperature": float(temperature)})
            if pressure_bar is not None:
                frame.info["pressure_bar"] = float(pressure_bar)
            contact = close_contact(frame)
            if contact is not None:
                frame.info["close_contact"] = True
            frames.append(frame)
            devis.append(devi)
            if not (devi < hi):
                failed, reason = True, f"max_devi_f {devi:.3g} >= hi {hi:g} eV/Å at step {steps_done}"
                break
            if contact is not None:
                failed, reason = True, f"{contact} at step {steps_done} (max_devi_f {devi:.3g} eV/Å)"
                break
            stable_step = steps_done
            if steps_done >= steps:
                break
            try:
                lmp.command(f"run {out_freq} post no")
            except Exception as err:  # noqa: BLE001 - classified just below
                if not is_explosion(err):
                    raise RuntimeError(f"exploration replica {output_dir} stopped by an error that is not a "
                                       f"collapse: {str(err).splitlines()[0]}") from err
                failed, reason = True, "LAMMPS stopped: " + str(err).splitlines()[0][:120]
                break
            steps_done = int(lmp.get_thermo("step"))
            temperature_now = lmp.get_thermo("temp")
            if not math.isfinite(temperature_now):
                failed, reason = True, "temperature is not finite"
                break
    finally:
        lmp.close()
    write_frames(frames_path, frames)
    volume_ratio = frames[-1].get_volume() / frames[0].get_volume() if pressure_bar is not None else None
    result = ReplicaResult(frames=len(frames), steps=steps_done, time_ps=stable_step * timestep_fs / 1000.0,
                           failed=failed, reason=reason, cpu_seconds=time.process_time() - started,
                           volume_ratio=volume_ratio)
    write_text(result_path, json.dumps(asdict(result)))
    return result


def read_frames(output_dir: str | Path) -> list[Atoms]:
    """The frames of a finished replica, each with ``info['max_devi_f']`` and ``info['step']``."""
    return ase.io.read(Path(output_dir) / "frames.extxyz", index=":", format="extxyz")

"""The lines every nnp deck starts with, and the NVE energy trace; the runners compose them.

A deck here is a list of LAMMPS commands (``lmp.command(line)`` for each, or joined into an input file).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms

BAROSTAT_COUPLINGS = ("iso", "aniso", "tri")


def boundary(atoms: Atoms) -> str:
    """``p``/``f`` per direction from the structure's periodicity."""
    return " ".join("p" if periodic else "f" for periodic in atoms.get_pbc())


def system_lines(source: str | Path, boundary: str = "p p p", atom_style: str = "atomic",
                 atom_map: str = "yes", units: str = "metal", restart: bool = False) -> list[str]:
    """Units, atom style, atom map, boundary and the system: ``read_data source``, or ``read_restart source``
    when ``restart`` (metal units: nnp models are eV and Å; ``pair_style nnp`` also converts for ``real``)."""
    read = "read_restart" if restart else "read_data"
    return [f"units {units}", f"atom_style {atom_style}", f"atom_modify map {atom_map}", f"boundary {boundary}",
            f"{read} {source}"]


def nnp_lines(model: str | Path, species: Sequence[str], style_args: str = "",
              zbl: Sequence[float] | None = None) -> list[str]:
    """``pair_style nnp [style_args]`` and ``pair_coeff * * model elements...`` (``species[k]`` is type k+1).

    ``zbl=(inner, outer)``: the model overlaid with LAMMPS's ZBL screened nuclear repulsion for every pair of types,
    switched off smoothly between ``inner`` and ``outer`` Å (``pair_style hybrid/overlay nnp ... zbl inner outer``):
    a floor against nuclear overlap under the distances a model was trained on (it does not replace labels near the
    closest distances the MD reaches: RESULTS §14.8). ``outer`` must stay under the shortest distance the system
    really has."""
    style = f"nnp {style_args}".strip()
    if not zbl:
        return [f"pair_style {style}", f"pair_coeff * * {model} {' '.join(species)}"]
    inner, outer = zbl
    if not 0.0 < inner < outer:
        raise ValueError(f"zbl=({inner}, {outer}): the switching distances must satisfy 0 < inner < outer (Å)")
    return [f"pair_style hybrid/overlay {style} zbl {inner:g} {outer:g}",
            f"pair_coeff * * nnp {model} {' '.join(species)}", *zbl_coeff_lines(species, substyle="zbl")]


def zbl_coeff_lines(species: Sequence[str], substyle: str = "") -> list[str]:
    """``pair_coeff i j [substyle] Z_i Z_j`` for every pair of types (``species[k]`` is type k+1): LAMMPS's
    ``pair_style zbl`` coefficients, alone or as a sub-style of ``hybrid/overlay``."""
    from ase.data import atomic_numbers

    z = [atomic_numbers[s] for s in species]
    prefix = f"{substyle} " if substyle else ""
    return [f"pair_coeff {i + 1} {j + 1} {prefix}{z[i]} {z[j]}" for i in range(len(z)) for j in range(i, len(z))]


def _start_lines(temperature: float, seed: int | None, timestep_fs: float) -> list[str]:
    """Timestep, and velocities from ``seed`` at ``temperature`` (no net momentum or rotation); ``seed`` None keeps
    the velocities the system has (read from a restart)."""
    velocities = [] if seed is None else [f"velocity all create {temperature} {seed} mom yes rot yes dist gaussian"]
    return [f"timestep {timestep_fs / 1000.0}", *velocities]


def nvt_lines(temperature: float, seed: int | None, timestep_fs: float, damping_fs: float = 100.0) -> list[str]:
    """Velocities from ``seed`` (no net momentum or rotation; None: keep the system's), timestep, Nosé–Hoover
    NVT."""
    return [*_start_lines(temperature, seed, timestep_fs),
            f"fix nvt all nvt temp {temperature} {temperature} {damping_fs / 1000.0}"]


def npt_lines(temperature: float, pressure_bar: float, seed: int | None, timestep_fs: float, damping_fs: float = 100.0,
              barostat_fs: float = 1000.0, coupling: str = "iso") -> list[str]:
    """As :func:`nvt_lines`, with a Nosé–Hoover barostat at ``pressure_bar`` (metal units' pressure) on a box
    periodic in all three directions. ``coupling``: ``iso`` dilates the box uniformly (a triclinic box keeps its
    shape: LAMMPS scales the tilts with the lengths), ``aniso`` each length on its own, ``tri`` lengths and tilts
    (DP-GEN's npt, npt-aniso, npt-tri)."""
    if coupling not in BAROSTAT_COUPLINGS:
        raise ValueError(f"barostat coupling must be one of {BAROSTAT_COUPLINGS}, not {coupling!r}")
    return [*_start_lines(temperature, seed, timestep_fs),
            f"fix npt all npt temp {temperature} {temperature} {damping_fs / 1000.0} "
            f"{coupling} {pressure_bar} {pressure_bar} {barostat_fs / 1000.0}"]


def nve_energy_trace(lmp, steps: int, timestep_fs: float, every: int = 10) -> tuple[np.ndarray, np.ndarray, float]:
    """``steps`` of NVE (velocity Verlet) from the current state, the caller having removed any thermostat.

    Returns (time in ps, total energy every ``every`` steps from the start, wall seconds inside ``run``).
    The energy is read between runs of ``every`` steps, so the start need not be a multiple of ``every``.
    """
    lmp.command("fix nnp_nve all nve")
    lmp.command("run 0 post no")
    energies, seconds = [lmp.get_thermo("etotal")], 0.0
    for done in range(0, steps, every):
        tick = time.perf_counter()
        lmp.command(f"run {min(every, steps - done)} pre no post no")
        seconds += time.perf_counter() - tick
        energies.append(lmp.get_thermo("etotal"))
    lmp.command("unfix nnp_nve")
    times = np.minimum(np.arange(len(energies)) * every, steps) * timestep_fs / 1000.0
    return times, np.array(energies), seconds

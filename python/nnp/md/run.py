"""Short LAMMPS runs with ``pair_style nnp`` driven from Python."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import ase.io
from ase import Atoms

from .lammps import make_lammps


def write_lammps_data(atoms: Atoms, path: Path, species: list[str]) -> None:
    """Atomic-style LAMMPS data file with one type per element of ``species`` (in that order)."""
    ase.io.write(path, atoms, format="lammps-data", specorder=species, atom_style="atomic", masses=True,
                 units="metal")


def quick_md(model_path: str | Path, structure: str | Path | Atoms, steps: int = 200, temperature: float = 300.0,
             timestep_fs: float = 0.5, seed: int = 12345) -> dict:
    """NVT (Nosé–Hoover) MD of ``structure`` with the model; returns speed and final thermodynamics."""
    from ..evaluator import load_evaluator
    from ..pretrained import resolve_file

    species = load_evaluator(model_path).species
    atoms = structure if isinstance(structure, Atoms) else ase.io.read(structure, index=0)
    present = [s for s in species if s in set(atoms.get_chemical_symbols())]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "start.data"
        write_lammps_data(atoms, data, present)
        lmp = make_lammps()
        try:
            for line in (
                "units metal", "atom_style atomic", "atom_modify map array", "boundary p p p",
                f"read_data {data}",
                "pair_style nnp",
                f"pair_coeff * * {resolve_file(model_path).resolve()} {' '.join(present)}",
                f"velocity all create {temperature} {seed} mom yes rot yes dist gaussian",
                f"timestep {timestep_fs / 1000.0}",
                f"fix nvt all nvt temp {temperature} {temperature} $(100.0*dt)",
                "thermo 50",
                "run 0",
            ):
                lmp.command(line)
            tick = time.perf_counter()
            lmp.command(f"run {steps}")
            seconds = time.perf_counter() - tick
            return {
                "natoms": lmp.get_natoms(),
                "steps": steps,
                "steps_per_second": steps / seconds,
                "temperature": lmp.get_thermo("temp"),
                "potential_energy": lmp.get_thermo("pe"),
            }
        finally:
            lmp.close()

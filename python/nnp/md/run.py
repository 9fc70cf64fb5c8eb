"""Short LAMMPS runs with ``pair_style nnp`` driven from Python."""

from __future__ import annotations

import time
from pathlib import Path

import ase.io
from ase import Atoms

from ..lammps import load_atoms, make_lammps, nnp_lines, nvt_lines


def quick_md(model_path: str | Path, structure: str | Path | Atoms, steps: int = 200, temperature: float = 300.0,
             timestep_fs: float = 0.5, seed: int = 12345) -> dict:
    """NVT (Nosé–Hoover) MD of ``structure`` with the model; returns speed and final thermodynamics. The boundary
    follows the structure's periodicity (a molecule without pbc: open, ``f f f``)."""
    from ..evaluator import load_evaluator
    from ..pretrained import resolve_file

    species = load_evaluator(model_path).species
    atoms = structure if isinstance(structure, Atoms) else ase.io.read(structure, index=0)
    present = [s for s in species if s in set(atoms.get_chemical_symbols())]
    lmp = make_lammps()
    try:
        load_atoms(lmp, atoms, present, atom_map="array")
        for line in (*nnp_lines(resolve_file(model_path).resolve(), present),
                     *nvt_lines(temperature, seed, timestep_fs, damping_fs=100.0 * timestep_fs),
                     "thermo 50", "run 0"):
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

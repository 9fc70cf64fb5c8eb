"""Drive LAMMPS with pair_style nnp from the tests, and evaluate the same model file in Python."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

from nnp.data.graph import atoms_to_graph, edge_vectors
from nnp.export import load_exported
from nnp.lammps import lmp_executable, make_lammps, mpirun_executable, subprocess_env
from nnp.lammps import nnp_lines, system_lines, write_lammps_data

NKTV2P = {"metal": 1.6021765e6, "real": 68568.415}  # LAMMPS pressure*volume -> energy units


def setup_lines(data: Path, model: Path, elements: list[str], boundary: str = "p p p", units: str = "metal",
                style: str = "nnp") -> list[str]:
    """The package's deck lines (nnp.lammps.deck) for ``model`` on ``data``; ``style``: nnp and its arguments."""
    style_args = style.split(None, 1)[1] if " " in style else ""
    return (system_lines(data, boundary, units=units) + nnp_lines(model, elements, style_args)
            + ["neighbor 1.0 bin"])


def run_lammps(atoms: Atoms, model: Path, tmp: Path, elements: list[str] | None = None, boundary: str = "p p p",
               units: str = "metal", extra: list[str] | None = None):
    """One LAMMPS instance evaluating ``atoms``; returns (lmp, atoms as LAMMPS holds them)."""
    elements = elements or sorted(set(atoms.get_chemical_symbols()))
    data = tmp / "system.data"
    write_lammps_data(atoms, data, elements)
    lmp = make_lammps()
    for line in setup_lines(data, model, elements, boundary, units) + (extra or []) + [
        "compute pe_atom all pe/atom", "compute virial all pressure NULL virial",
        "compute stress all stress/atom NULL pair", "thermo_style custom step pe press", "run 0",
    ]:
        lmp.command(line)
    return lmp, lammps_atoms(lmp, elements)


def lammps_atoms(lmp, elements: list[str]) -> Atoms:
    """The configuration held by LAMMPS (sorted by atom ID) as ASE atoms, box included."""
    n = lmp.get_natoms()
    order = np.argsort(lmp.numpy.extract_atom("id")[:n])
    x = np.array(lmp.numpy.extract_atom("x")[:n][order])
    types = np.array(lmp.numpy.extract_atom("type")[:n][order])
    boxlo, boxhi, xy, yz, xz, periodicity, _ = lmp.extract_box()
    lengths = np.array(boxhi) - np.array(boxlo)
    cell = np.array([[lengths[0], 0, 0], [xy, lengths[1], 0], [xz, yz, lengths[2]]])
    return Atoms([elements[t - 1] for t in types], positions=x, cell=cell, pbc=[bool(p) for p in periodicity])


def lammps_results(lmp, units: str = "metal") -> dict:
    n = lmp.get_natoms()
    order = np.argsort(lmp.numpy.extract_atom("id")[:n])
    volume = lmp.get_thermo("vol")
    pressure = np.array(lmp.numpy.extract_compute("virial", 0, 1))  # pxx pyy pzz pxy pxz pyz
    stress = np.array(lmp.numpy.extract_compute("stress", 1, 2)[:n][order])
    return {
        "energy": lmp.get_thermo("pe"),
        "atom_energy": np.array(lmp.numpy.extract_compute("pe_atom", 1, 1)[:n][order]),
        "forces": np.array(lmp.numpy.extract_atom("f")[:n][order]),
        "virial_voigt": pressure * volume / NKTV2P[units],
        "atom_virial_voigt": -stress / NKTV2P[units],
    }


def python_results(model: Path, atoms: Atoms) -> dict:
    """The exported file evaluated through torch.jit in Python on a vesin graph (images -> owners)."""
    module, metadata = load_exported(model)
    dtype = getattr(torch, metadata["dtype"])
    graph = atoms_to_graph(atoms, metadata["species"].split(), float(metadata["cutoff"]), torch.float64,
                           with_labels=False)
    out = module(graph.species, graph.edge_index, edge_vectors(graph).to(dtype), graph.num_nodes)
    out = {k: v.detach().double().numpy() for k, v in out.items()}
    w = out["virial"]
    out["virial_voigt"] = np.array([w[0, 0], w[1, 1], w[2, 2], 0.5 * (w[0, 1] + w[1, 0]), 0.5 * (w[0, 2] + w[2, 0]),
                                    0.5 * (w[1, 2] + w[2, 1])])
    aw = out["atom_virial"]
    out["atom_virial_voigt"] = np.stack([aw[:, 0, 0], aw[:, 1, 1], aw[:, 2, 2], 0.5 * (aw[:, 0, 1] + aw[:, 1, 0]),
                                         0.5 * (aw[:, 0, 2] + aw[:, 2, 0]), 0.5 * (aw[:, 1, 2] + aw[:, 2, 1])], 1)
    return out


def run_deck(deck: str, tmp: Path, ranks: int = 1, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run an input deck with the environment's ``lmp`` (plugin auto-loaded), optionally under mpirun."""
    path = tmp / f"in.deck{ranks}"
    path.write_text(deck)
    command = [lmp_executable(), "-in", str(path), "-log", str(tmp / f"log.{ranks}")]
    if ranks > 1:
        command = [mpirun_executable(), "-np", str(ranks)] + command
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=tmp, env=subprocess_env())


def read_dump_forces(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(ids, forces) of the last frame of a ``dump custom ... id fx fy fz`` file, sorted by id."""
    text = path.read_text().split("ITEM: TIMESTEP")[-1]
    rows = text.split("ITEM: ATOMS")[1].strip().splitlines()[1:]
    data = np.array([[float(v) for v in row.split()] for row in rows])
    order = np.argsort(data[:, 0])
    return data[order, 0].astype(int), data[order, 1:4]


def final_thermo(log: str, column: str) -> float:
    """Value of ``column`` on the last thermo line of a LAMMPS log text."""
    blocks = re.findall(r"^\s*Step.*?(?=^Loop time)", log, flags=re.S | re.M)
    header = blocks[-1].splitlines()[0].split()
    last = blocks[-1].strip().splitlines()[-1].split()
    return float(last[header.index(column)])

"""pair_style nnp speed: LAMMPS steps/s against the bare model, ASE MD, and 1 vs 2 MPI ranks.

    python benchmarks/lammps_speed.py [--model FILE] [--sizes 192 1536 12288] [--device cpu|cuda]

Without --model, an EGNN of the quickstart size (3 layers, 48 wide, cutoff 4.5 Å, float32) is exported
with random weights: speed does not depend on the weights. Water boxes are replicas of the bundled TIP3P
frame. "bare" is the TorchScript forward (energy + forces + virials through autograd) on the same graph
in Python; "ratio" = LAMMPS time per step / bare time (the pair style's own overhead plus integration).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from nnp.config import ModelConfig
from nnp.data.graph import atoms_to_graph, edge_vectors
from nnp.data.readers import bundled_dataset, read_structures
from nnp.export import export_model, load_exported
from nnp.md.lammps import lmp_executable, make_lammps, mpirun_executable, subprocess_env
from nnp.md.run import write_lammps_data
from nnp.models import build_potential

REPLICAS = {192: (1, 1, 1), 1536: (2, 2, 2), 12288: (4, 4, 4)}


def default_model(path: Path, dtype: str) -> Path:
    torch.manual_seed(0)
    config = ModelConfig(kind="egnn", cutoff=4.5, hidden=48, layers=3)
    return export_model(build_potential(config, ["H", "O"], avg_num_neighbors=30.0), path, dtype=dtype)


def water(n_atoms: int):
    frame = read_structures(bundled_dataset())[-1]
    atoms = frame.repeat(REPLICAS[n_atoms])
    atoms.calc = None
    return atoms


def lammps_steps_per_second(model: Path, atoms, device: str, steps: int, tmp: Path) -> float:
    data = tmp / "w.data"
    write_lammps_data(atoms, data, ["O", "H"])
    lmp = make_lammps()
    for line in ("units metal", "atom_style atomic", "boundary p p p", f"read_data {data}",
                 f"pair_style nnp device {device}", f"pair_coeff * * {model} O H", "neighbor 1.0 bin",
                 "velocity all create 300 1", "fix nve all nve", "timestep 0.0005", "thermo 1000", "run 3"):
        lmp.command(line)
    tick = time.perf_counter()
    lmp.command(f"run {steps} pre no post no")  # no setup: it would add one more force evaluation
    seconds = time.perf_counter() - tick
    lmp.close()
    return steps / seconds


def bare_seconds(model: Path, atoms, device: str, repeats: int) -> float:
    torch._C._set_graph_executor_optimize(False)  # as the C++ evaluator does (pair_nnp/evaluator.cpp)
    module, metadata = load_exported(model, device)
    dtype = getattr(torch, metadata["dtype"])
    graph = atoms_to_graph(atoms, metadata["species"].split(), float(metadata["cutoff"]), torch.float64,
                           with_labels=False)
    args = (graph.species.to(device), graph.edge_index.to(device), edge_vectors(graph).to(device, dtype), len(atoms))
    times = []
    for k in range(repeats + 2):
        if device == "cuda":
            torch.cuda.synchronize()
        tick = time.perf_counter()
        module(*args)["forces"].sum().item()
        if k >= 2:
            times.append(time.perf_counter() - tick)
    return float(np.median(times))


def ase_steps_per_second(model: Path, atoms, steps: int) -> float:
    from ase import units
    from ase.md.verlet import VelocityVerlet

    from nnp.calculator import NNPCalculator

    atoms = atoms.copy()
    atoms.calc = NNPCalculator(model)
    dyn = VelocityVerlet(atoms, 0.5 * units.fs)
    dyn.run(2)
    tick = time.perf_counter()
    dyn.run(steps)
    return steps / (time.perf_counter() - tick)


def mpi_steps_per_second(model: Path, atoms, ranks: int, steps: int, tmp: Path) -> float:
    data = tmp / "w.data"
    write_lammps_data(atoms, data, ["O", "H"])
    deck = tmp / "in.bench"
    deck.write_text(f"""units metal
atom_style atomic
boundary p p p
read_data {data}
pair_style nnp device cpu
pair_coeff * * {model} O H
neighbor 1.0 bin
velocity all create 300 1
fix nve all nve
timestep 0.0005
thermo 1000
run 3
run {steps}
""")
    env = subprocess_env()
    env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // ranks))
    command = [mpirun_executable(), "-np", str(ranks), lmp_executable(), "-in", str(deck), "-log", "none"]
    out = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp, check=True).stdout
    loop = [line for line in out.splitlines() if line.startswith("Loop time")][-1]
    return steps / float(loop.split()[3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[192, 1536, 12288])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--no-mpi", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = Path(args.model) if args.model else default_model(tmp / "egnn.nnp.pt", args.dtype)
        _, meta = load_exported(model)
        print(f"model {model.name}: {meta['model_kind']}, {meta['dtype']}, cutoff {meta['cutoff']} Å, "
              f"{meta['num_interactions']} layers; device {args.device}; torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads")
        print(f"{'atoms':>7}{'LAMMPS steps/s':>16}{'bare ms':>10}{'ratio':>8}{'ASE MD steps/s':>16}"
              f"{'MPI 1 steps/s':>15}{'MPI 2 steps/s':>15}")
        for n in args.sizes:
            atoms = water(n)
            steps = max(3, args.steps * 192 // n * 4) if n > 192 else args.steps
            lmp_rate = lammps_steps_per_second(model, atoms, args.device, steps, tmp)
            bare = bare_seconds(model, atoms, args.device, repeats=3 if n > 2000 else 5)
            ratio = (1.0 / lmp_rate) / bare
            ase_rate = ase_steps_per_second(model, atoms, max(2, steps // 2)) if n <= 1536 else float("nan")
            mpi = ["", ""]
            if not args.no_mpi and n == 1536 and args.device == "cpu":
                mpi = [f"{mpi_steps_per_second(model, atoms, r, steps, tmp):.2f}" for r in (1, 2)]
            print(f"{n:>7}{lmp_rate:>16.2f}{1000 * bare:>10.1f}{ratio:>8.2f}{ase_rate:>16.2f}{mpi[0]:>15}{mpi[1]:>15}",
                  flush=True)


if __name__ == "__main__":
    main()

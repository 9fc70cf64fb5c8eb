"""pair_style nnp speed: LAMMPS steps/s against the bare model, ASE MD, and 1 vs 2 MPI ranks.

    python benchmarks/lammps_speed.py [--model FILE] [--sizes 192 1536 12288] [--device cpu|cuda]
    python benchmarks/lammps_speed.py --mpi-only --sizes 1536 12288 --steps 5   # the multi-rank table
    python benchmarks/lammps_speed.py --format both --sizes 192 1536 --dtype float64  # TorchScript vs .pt2

Without --model, an EGNN of the quickstart size (3 layers, 48 wide, cutoff 4.5 Å, float32) is exported
with random weights: speed does not depend on the weights. Water boxes are replicas of the bundled TIP3P
frame. "bare" is the TorchScript forward (energy + forces + virials through autograd) on the same graph
in Python; "ratio" = LAMMPS time per step / bare time (the pair style's own overhead plus integration).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from nnp import contract
from nnp.config import ModelConfig
from nnp.data.graph import atoms_to_graph, edge_vectors
from nnp.data.readers import bundled_dataset, read_structures
from nnp.export import export_model, load_exported
from nnp.lammps import lmp_executable, make_lammps, mpirun_executable, subprocess_env
from nnp.lammps import nnp_lines, system_lines, write_lammps_data
from nnp.models import build_potential

REPLICAS = {192: (1, 1, 1), 1536: (2, 2, 2), 12288: (4, 4, 4), 98304: (8, 8, 8)}


THREADS_PER_RANK: int | None = None  # --threads-per-rank

def default_model(path: Path, dtype: str, device: str = "cpu") -> Path:
    """The quickstart-size EGNN with seeded random weights; the format (TorchScript / .pt2) by suffix; a .pt2
    is compiled for ``device``."""
    torch.manual_seed(0)
    config = ModelConfig(kind="egnn", cutoff=4.5, hidden=48, layers=3)
    pt2 = str(path).endswith(contract.PT2_SUFFIX)
    return export_model(build_potential(config, ["H", "O"], avg_num_neighbors=30.0), path, dtype=dtype,
                        device=torch.device(device).type if pt2 else None)


def formats_table(sizes: list[int], dtype: str, device: str, steps: int, repeats: int, tmp: Path) -> None:
    """LAMMPS steps/s of the same model as TorchScript and as a compiled .pt2 package (best of `repeats`)."""
    files = {}
    for name, suffix in (("torchscript", contract.MODEL_SUFFIX), ("pt2", contract.PT2_SUFFIX)):
        tick = time.perf_counter()
        files[name] = default_model(tmp / f"egnn{suffix}", dtype, device)
        print(f"export {name}: {time.perf_counter() - tick:.1f} s", flush=True)
    print(f"{'atoms':>7}{'dtype':>9}{'TorchScript steps/s':>21}{'pt2 steps/s':>13}{'pt2 / TorchScript':>19}")
    for n in sizes:
        atoms = water(n)
        n_steps = max(3, steps * 192 // n * 4) if n > 192 else steps
        rates = {name: max(lammps_steps_per_second(path, atoms, device, n_steps, tmp) for _ in range(repeats))
                 for name, path in files.items()}
        print(f"{n:>7}{dtype:>9}{rates['torchscript']:>21.2f}{rates['pt2']:>13.2f}"
              f"{rates['pt2'] / rates['torchscript']:>19.2f}", flush=True)


def water(n_atoms: int):
    frame = read_structures(bundled_dataset())[-1]
    atoms = frame.repeat(REPLICAS[n_atoms])
    atoms.calc = None
    return atoms


def lammps_steps_per_second(model: Path, atoms, device: str, steps: int, tmp: Path) -> float:
    """Velocity-Verlet steps/s of ``pair_style nnp`` on ``atoms`` (periodic, or molecules in a fixed vacuum box)."""
    from nnp.evaluator import load_evaluator

    present = [s for s in load_evaluator(model).species if s in set(atoms.get_chemical_symbols())]
    periodic = bool(atoms.pbc.all())
    if not periodic:  # a molecule or cluster: fixed boundaries, 20 Å of vacuum
        atoms = atoms.copy()
        atoms.center(vacuum=20.0)
        atoms.pbc = False
    data = tmp / "w.data"
    write_lammps_data(atoms, data, present)
    log = tmp / "log.speed"
    lmp = make_lammps(["-log", str(log), "-screen", "none"])
    for line in (*system_lines(data, "p p p" if periodic else "f f f"), *nnp_lines(model, present, f"device {device}"),
                 "neighbor 1.0 bin", "velocity all create 300 1", "fix nve all nve", "timestep 0.0005",
                 "thermo 1000", "run 3"):
        lmp.command(line)
    tick = time.perf_counter()
    lmp.command(f"run {steps} pre no post no")  # no setup: it would add one more force evaluation
    seconds = time.perf_counter() - tick
    lmp.close()
    global LAST_TIMERS
    LAST_TIMERS = [line for line in log.read_text().splitlines() if "seconds over" in line or "per rank and" in line]
    return steps / seconds


LAST_TIMERS: list[str] = []  # the pair style's graph sizes and timer breakdown of the last LAMMPS run


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


def deep_shell_copy(model: Path, tmp: Path) -> Path:
    """The same model declared without per-layer halo: LAMMPS falls back to the deep ghost shell (the
    behaviour before contract version 2), for the "ghosts per rank before" column."""
    module, meta = load_exported(model)
    meta = dict(meta, halo=contract.HALO_NONE)
    path = tmp / "deep_shell.nnp.pt"
    torch.jit.save(module, str(path), _extra_files=meta)
    return path


GRAPH_LINE = re.compile(r"nodes ([\d.]+) \(max [\d.]+\), local ([\d.]+), ghost nodes ([\d.]+), edges ([\d.]+)")


def mpi_run(model: Path, atoms, ranks: int, steps: int, tmp: Path) -> dict:
    """steps/s of `run steps` (after 3 warm-up steps) under mpirun, and the graph size per rank.

    With steps = 0 only the graph is built and evaluated once (for the ghost counts)."""
    data = tmp / "w.data"
    write_lammps_data(atoms, data, ["O", "H"])
    deck = tmp / "in.bench"
    timed = f"run 3\nrun {steps}\n" if steps else "run 0\n"
    deck.write_text("\n".join(system_lines(data) + nnp_lines(model, ["O", "H"], "device cpu")) + f"""
neighbor 1.0 bin
velocity all create 300 1
fix nve all nve
timestep 0.0005
thermo 1000
{timed}""")
    env = subprocess_env()
    env["OMP_NUM_THREADS"] = str(THREADS_PER_RANK or max(1, (os.cpu_count() or 1) // ranks))
    command = [mpirun_executable(), "-np", str(ranks), lmp_executable(), "-in", str(deck), "-log", "none"]
    out = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp, check=True).stdout
    nodes, local, ghosts, edges = (float(v) for v in GRAPH_LINE.findall(out)[-1])
    result = {"nodes": nodes, "local": local, "ghosts": ghosts, "edges": edges}
    if steps:
        loop = [line for line in out.splitlines() if line.startswith("Loop time")][-1]
        result["steps_per_s"] = steps / float(loop.split()[3])
        result["timers"] = [line for line in out.splitlines() if "seconds over" in line][-1]
    return result


def mpi_table(model: Path, sizes: list[int], steps: int, tmp: Path) -> None:
    """1 vs 2 ranks with per-layer halo exchange; ghost nodes per rank before (deep shell) and after."""
    deep = deep_shell_copy(model, tmp)
    print(f"{'atoms':>7}{'ranks':>6}{'ghosts/rank deep shell':>24}{'ghosts/rank halo':>18}{'nodes/local':>13}"
          f"{'steps/s':>10}{'speed-up':>10}")
    for n in sizes:
        atoms = water(n)
        base = None
        for ranks in (1, 2):
            before = mpi_run(deep, atoms, ranks, 0, tmp)
            after = mpi_run(model, atoms, ranks, steps, tmp)
            base = base or after["steps_per_s"]
            print(f"{n:>7}{ranks:>6}{before['ghosts']:>24.0f}{after['ghosts']:>18.0f}"
                  f"{after['nodes'] / after['local']:>13.2f}{after['steps_per_s']:>10.3f}"
                  f"{after['steps_per_s'] / base:>10.2f}", flush=True)
            print(f"        {after['timers']}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[192, 1536, 12288])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--no-mpi", action="store_true")
    parser.add_argument("--mpi-only", action="store_true", help="only the 1 vs 2 ranks table")
    parser.add_argument("--format", default="torchscript", choices=["torchscript", "pt2", "both"],
                        help="format of the default model; both: only the TorchScript vs .pt2 LAMMPS table")
    parser.add_argument("--repeats", type=int, default=1, help="--format both: best of this many LAMMPS runs")
    parser.add_argument("--json", default=None, help="also write the rows (with the timer lines) to this file")
    parser.add_argument("--threads-per-rank", type=int, default=None,
                        help="torch threads per rank (default: cores / ranks, so every run uses every core)")
    args = parser.parse_args()
    global THREADS_PER_RANK
    THREADS_PER_RANK = args.threads_per_rank
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.format == "both":
            print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
            formats_table(args.sizes, args.dtype, args.device, args.steps, args.repeats, tmp)
            return
        suffix = contract.PT2_SUFFIX if args.format == "pt2" else contract.MODEL_SUFFIX
        model = Path(args.model) if args.model else default_model(tmp / f"egnn{suffix}", args.dtype, args.device)
        _, meta = load_exported(model, args.device if str(model).endswith(contract.PT2_SUFFIX) else "cpu")
        print(f"model {model.name}: {meta['model_kind']}, {meta['dtype']}, cutoff {meta['cutoff']} Å, "
              f"{meta['num_interactions']} layers; device {args.device}; torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads")
        if args.mpi_only:
            mpi_table(model, args.sizes, args.steps, tmp)
            return
        print(f"{'atoms':>7}{'LAMMPS steps/s':>16}{'bare ms':>10}{'ratio':>8}{'ASE MD steps/s':>16}")
        rows = []
        for n in args.sizes:
            atoms = water(n)
            steps = max(3, args.steps * 192 // n * 4) if n > 192 else args.steps
            lmp_rate = lammps_steps_per_second(model, atoms, args.device, steps, tmp)
            bare = bare_seconds(model, atoms, args.device, repeats=3 if n > 2000 else 5)
            ratio = (1.0 / lmp_rate) / bare
            ase_rate = ase_steps_per_second(model, atoms, max(2, steps // 2)) if n <= 1536 else float("nan")
            print(f"{n:>7}{lmp_rate:>16.2f}{1000 * bare:>10.1f}{ratio:>8.2f}{ase_rate:>16.2f}", flush=True)
            for line in LAST_TIMERS:
                print(f"        {line}", flush=True)
            rows.append({"atoms": n, "steps": steps, "lammps_steps_per_s": lmp_rate, "bare_ms": 1000 * bare,
                         "ratio": ratio, "ase_steps_per_s": None if ase_rate != ase_rate else ase_rate,
                         "pair_nnp_timers": list(LAST_TIMERS)})
            if args.json:
                import json

                Path(args.json).write_text(json.dumps({"model": meta, "device": args.device, "format": args.format,
                                                       "torch": torch.__version__, "rows": rows}, indent=1))
        if not args.no_mpi and args.device == "cpu" and not str(model).endswith(".pt2"):  # deep-shell copy: TorchScript
            mpi_table(model, [n for n in args.sizes if n >= 1536], max(3, args.steps // 4), tmp)


if __name__ == "__main__":
    main()

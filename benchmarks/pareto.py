"""Accuracy against cost: train nnp models for a fixed wall-clock budget, then time them in LAMMPS and ASE.

    python benchmarks/pareto.py                                   # README water, 20 min per model
    python benchmarks/pareto.py --models egnn painn --minutes 20 --json results/pareto_water.json
    python benchmarks/pareto.py --data md17_aspirin.npz --sizes 21 168 --structure aspirin.xyz

Protocol (issue 16): one dataset and split (default: the README's 300 flexible-TIP3P frames, split
240/30/30 with split seed 0), every model trained for the same wall-clock budget on this machine from
its recipe in ``training/``, test-set energy and force RMSE of the best checkpoint; then the exported
file (``--md-dtype``) is timed: LAMMPS steps/s with ``pair_style nnp`` (velocity Verlet, no output)
and one energy+forces through the ASE calculator, at two system sizes made of replicas of a test frame.

Peers (NequIP, MACE, DeePMD) need their own environments; points measured elsewhere can be drawn beside
nnp's from ``--peers FILE`` (JSON list of {"label", "force_rmse_meV_A", "ms_per_step_small"}).
Prints one table and writes a plot of force RMSE against ms per MD step.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lammps_speed import lammps_steps_per_second  # noqa: E402

RECIPES = {  # model name -> recipe under training/
    "egnn": "water/quickstart.yaml",
    "painn": "water/painn.yaml",
    "gns": "water/gns.yaml",
    "gemnet_t": "water/gemnet_t.yaml",
}


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def readme_water(cache: Path) -> Path:
    """The README job's data: 300 flexible TIP3P frames (seed 0), generated once into ``cache``."""
    from nnp.data.generate.tip3p import generate_tip3p

    path = cache / "water_tip3p.extxyz"
    if not path.exists():
        generate_tip3p(path, n_frames=300, seed=0)
    return path


def train(name: str, data: Path, minutes: float, out: Path, seed: int, reuse: bool) -> dict:
    """Train ``name`` for ``minutes``; with ``reuse``, read an earlier run's results.json instead."""
    from nnp.config import load_config
    from nnp.quickstart import find_recipe
    from nnp.train.trainer import run_training

    config = load_config(find_recipe(RECIPES[name]), [
        f"data.path={data}", f"output_dir={out / name}", f"train.time_limit_minutes={minutes}",
        "train.epochs=100000", "train.early_stopping_patience=100000", f"train.seed={seed}",
        "data.split_seed=0", "data.val_fraction=0.1", "data.test_fraction=0.1"])
    results = out / name / "results.json"
    tick = time.monotonic()
    if reuse and results.exists():
        summary = json.loads(results.read_text())
    else:
        summary = run_training(config, progress=False, export_dtype="float64")
    test = summary["metrics"]["test"]
    return {"model": name, "epochs": summary["epochs"], "train_minutes": (time.monotonic() - tick) / 60,
            "parameters": summary["num_parameters"], "checkpoint": str(out / name / "best.ckpt"),
            "energy_rmse_meV_atom": 1000 * test["energy_per_atom_rmse"],
            "force_rmse_meV_A": 1000 * test["forces_rmse"]}


def structures(data: Path, sizes: list[int]):
    """Replicas of the dataset's last frame with about the requested numbers of atoms."""
    from nnp.data.readers import read_structures

    frame = read_structures(data)[-1]
    frame.calc = None
    out = []
    for n in sizes:
        k = max(1, round((n / len(frame)) ** (1 / 3)))
        out.append(frame.repeat((k, k, k)) if frame.pbc.all() else frame)
    return out


def ase_ms(model: Path, atoms, repeats: int = 5) -> float:
    """Median ms of one energy+forces through the ASE calculator (neighbour list included)."""
    from nnp.calculator import NNPCalculator

    atoms = atoms.copy()
    calc = NNPCalculator(model)
    times = []
    for k in range(repeats + 2):
        atoms.positions[0, 0] += 1e-6  # a new configuration each time: no cached result
        tick = time.perf_counter()
        calc.get_forces(atoms)
        if k >= 2:
            times.append(time.perf_counter() - tick)
    return 1000 * float(np.median(times))


def time_model(row: dict, atoms_list, md_dtype: str, md_format: str, out: Path, steps: int) -> None:
    from nnp.export import export_model
    from nnp.train.checkpoint import load_checkpoint, model_from_checkpoint

    model = model_from_checkpoint(load_checkpoint(row["checkpoint"]))
    suffix = ".nnp.pt2" if md_format == "pt2" else ".nnp.pt"
    path = export_model(model, out / f"{row['model']}.{md_dtype}{suffix}", dtype=md_dtype, format=md_format)
    for atoms in atoms_list:
        n = len(atoms)
        rate = lammps_steps_per_second(path, atoms, "cpu", max(3, steps * 192 // n), out)
        row[f"lammps_ms_per_step_{n}"] = 1000 / rate
        row[f"ase_ms_{n}"] = ase_ms(path, atoms)


def plot(rows: list[dict], peers: list[dict], small: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    points = [(f"nnp {r['model']}", r[f"lammps_ms_per_step_{small}"], r["force_rmse_meV_A"], "C0", "o") for r in rows]
    points += [(p["label"], p["ms_per_step_small"], p["force_rmse_meV_A"], "C1", "s") for p in peers]
    for label, x, y, color, marker in points:
        ax.scatter(x, y, color=color, marker=marker)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
    xs = [p[1] for p in points]
    ax.set_xscale("log")
    ax.set_xlim(min(xs) / 1.5, max(xs) * 4)
    ax.xaxis.set_major_locator(FixedLocator([10, 20, 50, 100, 200, 500, 1000]))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"ms per MD step (nnp: LAMMPS), {small} atoms, CPU 2 cores")
    ax.set_ylabel("test force RMSE (meV/Å)")
    ax.set_title("accuracy against cost (lower left is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="dataset file (default: the README's TIP3P water)")
    parser.add_argument("--models", nargs="+", default=["egnn", "painn"], choices=list(RECIPES))
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget per model")
    parser.add_argument("--sizes", type=int, nargs=2, default=[192, 1536])
    parser.add_argument("--md-dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--md-format", default="torchscript", choices=["torchscript", "pt2"],
                        help="model file format timed in LAMMPS and ASE")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/pareto")
    parser.add_argument("--peers", default=None, help="JSON list of peer points measured elsewhere")
    parser.add_argument("--reuse", action="store_true", help="time the models an earlier run trained")
    parser.add_argument("--json", default=None)
    parser.add_argument("--plot", default=None)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data) if args.data else readme_water(out)
    atoms_list = structures(data, args.sizes)
    sizes = [len(a) for a in atoms_list]
    rows = []
    for name in args.models:
        row = train(name, data, args.minutes, out, args.seed, args.reuse)
        time_model(row, atoms_list, args.md_dtype, args.md_format, out, args.steps)
        rows.append(row)
        print(json.dumps(row), flush=True)
    small, large = sizes
    print(f"\ndata {data}, {args.minutes:g} min training per model, MD files {args.md_dtype} {args.md_format}, "
          f"{torch_threads()} torch threads")
    print(f"{'model':<10}{'params':>9}{'epochs':>8}{'E meV/atom':>12}{'F meV/Å':>10}"
          f"{f'LAMMPS ms {small}/{large}':>22}{f'ASE ms {small}/{large}':>20}")
    for r in rows:
        print(f"{r['model']:<10}{r['parameters']:>9}{r['epochs']:>8}{r['energy_rmse_meV_atom']:>12.2f}"
              f"{r['force_rmse_meV_A']:>10.1f}"
              f"{r[f'lammps_ms_per_step_{small}']:>11.1f} /{r[f'lammps_ms_per_step_{large}']:>8.1f}"
              f"{r[f'ase_ms_{small}']:>10.1f} /{r[f'ase_ms_{large}']:>8.1f}")
    peers = json.loads(Path(args.peers).read_text()) if args.peers else []
    if args.json:
        Path(args.json).write_text(json.dumps({"command": " ".join(sys.argv), "data": str(data),
                                               "minutes": args.minutes, "md_dtype": args.md_dtype,
                                               "md_format": args.md_format, "torch_threads": torch_threads(),
                                               "rows": rows, "peers": peers}, indent=2))
    plot(rows, peers, small, Path(args.plot or out / "pareto.png"))


if __name__ == "__main__":
    main()

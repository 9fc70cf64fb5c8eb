"""Accuracy against cost: train nnp models for a fixed wall-clock budget, then time them in LAMMPS and ASE.

    python benchmarks/pareto.py                                   # README water, 20 min per model
    python benchmarks/pareto.py --models egnn painn --minutes 20 --json results/pareto_water.json
    python benchmarks/pareto.py --data aspirin.npz --test aspirin_test.npz --sizes 21 168   # MD17 format

Protocol (issue 16): one dataset and split (default: the README's 300 flexible-TIP3P frames, split
240/30/30 with split seed 0; with ``--test FILE``, 90/10 train/validation and that file as the test set),
every model trained for the same wall-clock budget on this machine from its recipe in ``training/``
(periodic data: ``RECIPES["periodic"]``, molecules: ``RECIPES["molecule"]``), test-set energy and force
RMSE of the best checkpoint; then the exported file (``--md-dtype``) is timed: LAMMPS steps/s with
``pair_style nnp`` (velocity Verlet, no output) and one energy+forces through the ASE calculator, at two
system sizes: replicas of the last frame (periodic) or copies of the molecule 10 Å apart (molecules).

Peers (NequIP, MACE, DeePMD) need their own environments: ``--write-split DIR`` writes the exact
train/val/test frames and the two timed structures as extxyz, ``benchmarks/peer_eval.py`` measures any ASE
calculator on them with the same two functions that measure nnp here, and ``--peers FILE...`` draws those
points (or any JSON list of {"label", "force_rmse_meV_A", "ms_per_step_small"}) beside nnp's.
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
from peer_eval import calculator_ms, test_errors  # noqa: E402

RECIPES = {  # data kind -> model name -> recipe under training/
    "periodic": {"egnn": "water/quickstart.yaml", "painn": "water/painn.yaml", "gns": "water/gns.yaml",
                 "gemnet_t": "water/gemnet_t.yaml"},
    "molecule": {"egnn": "aspirin/scratch.yaml", "painn": "aspirin/painn.yaml",
                 "gemnet_t": "aspirin/gemnet_t_scratch.yaml"},
}
MODELS = sorted({m for recipes in RECIPES.values() for m in recipes})
VAL_FRACTION, TEST_FRACTION, SPLIT_SEED = 0.1, 0.1, 0  # the engine's split of --data (no test part with --test)


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


def data_kind(frames) -> str:
    return "periodic" if frames[-1].pbc.all() else "molecule"


def train(name: str, kind: str, data: Path, held_out_test: bool, minutes: float, out: Path, seed: int,
          reuse: bool) -> dict:
    """Train ``name`` for ``minutes``; with ``reuse``, read an earlier run's results.json instead."""
    from nnp.config import load_config
    from nnp.quickstart import find_recipe
    from nnp.train.trainer import run_training

    if name not in RECIPES[kind]:
        raise SystemExit(f"no {kind} recipe for {name}; choose from {sorted(RECIPES[kind])}")
    config = load_config(find_recipe(RECIPES[kind][name]), [
        f"data.path={data}", f"output_dir={out / name}", f"train.time_limit_minutes={minutes}",
        "train.epochs=100000", "train.early_stopping_patience=100000", f"train.seed={seed}",
        f"data.split_seed={SPLIT_SEED}", f"data.val_fraction={VAL_FRACTION}",
        f"data.test_fraction={0.0 if held_out_test else TEST_FRACTION}"])
    results = out / name / "results.json"
    tick = time.monotonic()
    if reuse and results.exists():
        summary = json.loads(results.read_text())
    else:
        summary = run_training(config, progress=False, export_dtype="float64")
    return {"model": name, "recipe": RECIPES[kind][name], "epochs": summary["epochs"],
            "train_minutes": (time.monotonic() - tick) / 60, "parameters": summary["num_parameters"],
            "checkpoint": str(out / name / "best.ckpt")}


def split(frames, held_out_test: bool) -> dict:
    """The engine's train/val/test indices of ``frames`` for this protocol (no test part with ``--test``)."""
    from nnp.data.dataset import split_indices

    return split_indices(len(frames), VAL_FRACTION, 0.0 if held_out_test else TEST_FRACTION, SPLIT_SEED)


def test_frames(frames, test: Path | None) -> list:
    """The test set: the frames of ``test`` if given, else the engine's test part of ``frames``."""
    from nnp.data.readers import read_structures

    if test is not None:
        return read_structures(test)
    return [frames[k] for k in split(frames, False)["test"]]


def structures(frames, sizes: list[int]):
    """Two timed systems of about ``sizes`` atoms: replicas of the last frame, or copies of the molecule."""
    frame = frames[-1].copy()
    frame.calc = None
    out = []
    for n in sizes:
        if frame.pbc.all():
            k = max(1, round((n / len(frame)) ** (1 / 3)))
            out.append(frame.repeat((k, k, k)))
        else:
            out.append(molecule_copies(frame, max(1, round(n / len(frame)))))
    return out


def molecule_copies(molecule, copies: int):
    """``copies`` copies of a molecule on a cubic grid, 10 Å apart (beyond any cutoff): a non-periodic cluster."""
    from ase import Atoms

    step = np.ptp(molecule.positions, axis=0).max() + 10.0
    side = int(np.ceil(copies ** (1 / 3) - 1e-9))
    cluster = Atoms()
    for k in range(copies):
        shifted = molecule.copy()
        shifted.positions += step * np.array([k % side, (k // side) % side, k // side**2])
        cluster += shifted
    cluster.pbc = False
    return cluster


def write_split(directory: Path, frames, held_out_test: bool, tests, atoms_list) -> None:
    """The exact frames nnp trained, validated and tested on, and the timed structures, for the peers."""
    import ase.io

    from nnp.data.readers import write_extxyz

    parts = split(frames, held_out_test)
    for name in ("train", "val"):
        write_extxyz(directory / f"{name}.extxyz", [frames[k] for k in parts[name]])
    write_extxyz(directory / "test.extxyz", tests)
    for atoms in atoms_list:
        ase.io.write(directory / f"size_{len(atoms)}.extxyz", atoms, format="extxyz")


def time_model(row: dict, atoms_list, tests, md_dtype: str, md_format: str, out: Path, steps: int) -> None:
    from nnp.calculator import NNPCalculator
    from nnp.export import export_model
    from nnp.train.checkpoint import load_checkpoint, model_from_checkpoint

    model = model_from_checkpoint(load_checkpoint(row["checkpoint"]))
    reference = export_model(model, out / f"{row['model']}.float64.nnp.pt", dtype="float64")
    row.update(test_errors(NNPCalculator(reference), tests))  # the float64 file on the test frames
    suffix = ".nnp.pt2" if md_format == "pt2" else ".nnp.pt"
    path = export_model(model, out / f"{row['model']}.{md_dtype}{suffix}", dtype=md_dtype, format=md_format)
    for atoms in atoms_list:
        n = len(atoms)
        rate = lammps_steps_per_second(path, atoms, "cpu", max(3, steps * 192 // n), out)
        row[f"lammps_ms_per_step_{n}"] = 1000 / rate
        row[f"ase_ms_{n}"] = calculator_ms(NNPCalculator(path), atoms)


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
    ax.xaxis.set_major_locator(FixedLocator([1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"ms per MD step (nnp: LAMMPS), {small} atoms, CPU")
    ax.set_ylabel("test force RMSE (meV/Å)")
    ax.set_title("accuracy against cost (lower left is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="dataset file, any format nnp reads (default: the README's "
                        "TIP3P water)")
    parser.add_argument("--test", default=None, help="separate test file (default: 10 %% of --data)")
    parser.add_argument("--models", nargs="+", default=["egnn", "painn"], choices=MODELS)
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget per model")
    parser.add_argument("--sizes", type=int, nargs=2, default=None, help="atoms of the two timed systems "
                        "(default: 192 1536 for periodic data, 1 and 8 molecules otherwise)")
    parser.add_argument("--md-dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--md-format", default="torchscript", choices=["torchscript", "pt2"],
                        help="model file format timed in LAMMPS and ASE")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/pareto")
    parser.add_argument("--write-split", default=None, help="write train/val/test and the timed structures here "
                        "(extxyz) for the peers, then go on")
    parser.add_argument("--peers", nargs="+", default=[], help="JSON files of peer points (peer_eval.py output)")
    parser.add_argument("--reuse", action="store_true", help="time the models an earlier run trained")
    parser.add_argument("--json", default=None)
    parser.add_argument("--plot", default=None)
    args = parser.parse_args()
    from nnp.data.readers import read_structures

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data) if args.data else readme_water(out)
    test = Path(args.test) if args.test else None
    frames = read_structures(data)
    kind = data_kind(frames)
    sizes = args.sizes or ([192, 1536] if kind == "periodic" else [len(frames[-1]), 8 * len(frames[-1])])
    atoms_list = structures(frames, sizes)
    tests = test_frames(frames, test)
    if args.write_split:
        write_split(Path(args.write_split), frames, test is not None, tests, atoms_list)
    small, large = (len(a) for a in atoms_list)
    rows = []
    for name in args.models:
        row = train(name, kind, data, test is not None, args.minutes, out, args.seed, args.reuse)
        time_model(row, atoms_list, tests, args.md_dtype, args.md_format, out, args.steps)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\ndata {data} ({kind}), test {test or 'split of --data'} ({len(tests)} frames), {args.minutes:g} min "
          f"training per model, MD files {args.md_dtype} {args.md_format}, {torch_threads()} torch threads")
    print(f"{'model':<10}{'params':>9}{'epochs':>8}{'E meV/atom':>12}{'F meV/Å':>10}"
          f"{f'LAMMPS ms {small}/{large}':>22}{f'ASE ms {small}/{large}':>20}")
    for r in rows:
        print(f"{r['model']:<10}{r['parameters']:>9}{r['epochs']:>8}{r['energy_rmse_meV_atom']:>12.2f}"
              f"{r['force_rmse_meV_A']:>10.1f}"
              f"{r[f'lammps_ms_per_step_{small}']:>11.1f} /{r[f'lammps_ms_per_step_{large}']:>8.1f}"
              f"{r[f'ase_ms_{small}']:>10.1f} /{r[f'ase_ms_{large}']:>8.1f}")
    peers = []
    for path in args.peers:
        doc = json.loads(Path(path).read_text())
        peers += doc if isinstance(doc, list) else [doc]
    for p in peers:
        print(f"{p['label']:<34}{p.get('energy_rmse_meV_atom', float('nan')):>12.2f}{p['force_rmse_meV_A']:>10.1f}"
              f"{'':>22}{p['ms_per_step_small']:>10.1f} /{p.get('ms_per_step_large', float('nan')):>8.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"command": " ".join(sys.argv), "data": str(data), "kind": kind,
                                               "test": str(test) if test else None, "test_frames": len(tests),
                                               "minutes": args.minutes, "md_dtype": args.md_dtype,
                                               "md_format": args.md_format, "torch_threads": torch_threads(),
                                               "sizes": [small, large], "rows": rows, "peers": peers}, indent=2))
    plot(rows, peers, small, Path(args.plot or out / "pareto.png"))


if __name__ == "__main__":
    main()

"""Issue 13: the first seed reproduced faithfully, masked pretraining of the potential itself.

    .venv/bin/python training/experiments/seed1_water.py --scale cpu [--models egnn gns] [--sizes 10 40 160]
        [--seeds 0 1 2] [--methods scratch masked masked_vh denoise_paper denoise_0.04 denoise_0.2]

Data (generated once, reused; under --data, default runs/seed1_water/data):
  * pretraining: flexible TIP3P water from LAMMPS, positions only (``--pretrain-frames``, default 1000
    frames of 32 molecules at CPU scale; the paper: 10 trajectories x 1000 frames of 258 molecules);
  * finetuning pool and test set: GFN2-xTB (periodic) relabelling of two *separate* TIP3P trajectories
    (different seeds): ``--test-frames`` (>= 40) for the one fixed test set, ``--pool-frames`` for the
    train/validation pool.
Protocol, paired by seed: for seed s and size N, the training frames are the first N of a permutation of
the pool drawn from s, the validation frames the next ``max(4, N // 4)``; every method finetunes with
the same schedule (``FINETUNE``) from the same initialisation seed (scratch starts from
``train.seed = s``; pretrained runs start from the pretraining of seed s, trained with ``train.seed = s``).
Scratch gets its own tuned learning rate (``--scratch-lr``, picked on validation over ``--scratch-lr-grid``
with seed 0). Methods:
  scratch          no pretraining
  masked           the paper: target force (-dE/dx of the potential), mask embedding, ratio 0.5
  masked_vh        nnp's earlier variant: separate vector head, readout re-initialised
  denoise_paper    the paper's water denoising: sigma 1 Å, the force regresses the noise displacement
  denoise_0.04/0.2 denoising, the force regresses the unit noise, sigma 0.04 / 0.2 Å
Writes results/seed1_water.json (per-run rows; summary with means and 95 % t-intervals of the paired
difference against scratch) and results/seed1_water.png (test force RMSE vs N per method). Resumable:
finished runs are read back from their results.json.

``--scale gpu`` takes the paper's sizes (EGNN 128 x 5 layers, cutoff 3.5 Å... see SCALES); it needs a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

SCALES = {
    # CPU box (2 cores): small models, short schedules
    "cpu": {"molecules": 32, "pretrain_frames": 1000,
            "egnn": {"kind": "egnn", "cutoff": 4.0, "hidden": 32, "layers": 3, "num_rbf": 16},
            "gns": {"kind": "gns", "cutoff": 4.0, "hidden": 32, "layers": 3, "num_rbf": 16},
            "pretrain": {"epochs": 25, "batch_size": 8, "lr": 1e-3, "min_lr": 1e-6, "time_limit_minutes": 3.0},
            "finetune": {"epochs": 150, "batch_size": 4, "lr": 1e-3, "min_lr_ratio": 0.5, "time_limit_minutes": 5.0}},
    # the paper's sizes (GPU): EGNN 128 wide x 5 layers; 258 molecules (2 nm box); 25 epochs 1e-4 -> 1e-7;
    # finetuning 300 epochs 1e-4 -> 5e-5
    "gpu": {"molecules": 258, "pretrain_frames": 10000,
            "egnn": {"kind": "egnn", "cutoff": 3.5, "hidden": 128, "layers": 5, "num_rbf": 16},
            "gns": {"kind": "gns", "cutoff": 3.5, "hidden": 128, "layers": 10, "num_rbf": 16},
            "pretrain": {"epochs": 25, "batch_size": 16, "lr": 1e-4, "min_lr": 1e-7, "time_limit_minutes": None},
            "finetune": {"epochs": 300, "batch_size": 16, "lr": 1e-4, "min_lr_ratio": 0.5, "time_limit_minutes": None}},
}
PRETRAIN = {
    "masked": {"task": "masked", "target": "force", "mask_embedding": True, "mask_ratio": 0.5},
    "masked_vh": {"task": "masked", "target": "vector_head", "mask_ratio": 0.5},
    "denoise_paper": {"task": "denoise", "target": "force", "noise_sigma": 1.0, "noise_target": "displacement"},
    "denoise_0.04": {"task": "denoise", "target": "force", "noise_sigma": 0.04},
    "denoise_0.2": {"task": "denoise", "target": "force", "noise_sigma": 0.2},
}


def make_data(root: Path, molecules: int, pretrain_frames: int, test_frames: int, pool_frames: int,
              pool: str | None = None) -> dict:
    from nnp.data.generate.tip3p import generate_tip3p
    from nnp.data.generate.xtb import relabel_xtb

    root.mkdir(parents=True, exist_ok=True)
    paths = {"pretrain": generate_tip3p(root / "tip3p_pretrain.extxyz", n_frames=pretrain_frames,
                                        n_molecules=molecules, seed=11, positions_only=True, progress=True)}
    for name, n, seed in (("test", test_frames, 23), ("pool", pool_frames, 37)):
        if name == "pool" and pool:  # an existing labelled set (another trajectory) as the train/val pool
            from nnp.data.readers import bundled_dataset

            paths[name] = bundled_dataset(pool.split(":", 1)[1]) if pool.startswith("bundled:") else Path(pool)
            continue
        md = generate_tip3p(root / f"tip3p_{name}.extxyz", n_frames=n, n_molecules=molecules, seed=seed,
                            interval=200, progress=True)  # 100 fs apart: nearly independent frames
        paths[name] = relabel_xtb(md, root / f"xtb_{name}.extxyz", progress=True, name=f"water-xtb-{name}")
    return {k: str(v) for k, v in paths.items()}


def split_files(data: dict, root: Path, n_train: int, seed: int) -> Path:
    """train + val (from the pool, drawn by seed) + the fixed test set, as one file with fixed positions."""
    import ase.io

    from nnp.data.dataset import split_indices

    out = root / f"split-n{n_train}-s{seed}.extxyz"
    if out.exists():
        return out
    pool = ase.io.read(data["pool"], ":")
    test = ase.io.read(data["test"], ":")
    n_val = max(4, n_train // 4)
    order = np.random.default_rng(1000 + seed).permutation(len(pool))
    if n_train + n_val > len(pool):
        raise SystemExit(f"the pool has {len(pool)} frames; N={n_train} needs {n_train + n_val}")
    total = n_train + n_val + len(test)
    # place the frames where the engine's seeded split (split_seed 0) will look for them
    slots = split_indices(total, n_val / total, len(test) / total, 0)
    assert [len(slots[k]) for k in ("train", "val", "test")] == [n_train, n_val, len(test)]
    frames = [None] * total
    for name, chosen in (("train", [pool[k] for k in order[:n_train]]),
                         ("val", [pool[k] for k in order[n_train:n_train + n_val]]), ("test", test)):
        for slot, atoms in zip(slots[name], chosen):
            frames[slot] = atoms
    partial = out.with_suffix(f".{os.getpid()}.partial")
    ase.io.write(partial, frames, format="extxyz")
    partial.replace(out)  # atomic: runs of other models in parallel processes share these files
    return out


def base_config(scale: dict, model: str, name: str, output: Path) -> dict:
    return {"name": name, "output_dir": str(output), "model": dict(scale[model]), "train": {"dtype": "float32"}}


def finetune_config(scale, model, data_file, n_train, n_test, seed, output, lr, pretrained=None, method=None):
    n_val = max(4, n_train // 4)
    total = n_train + n_val + n_test
    cfg = base_config(scale, model, output.name, output)
    f = scale["finetune"]
    cfg["data"] = {"path": str(data_file), "val_fraction": n_val / total, "test_fraction": n_test / total,
                   "split_seed": 0}  # split_files placed the frames where this split takes them
    cfg["train"].update({"epochs": f["epochs"], "batch_size": min(f["batch_size"], n_train), "lr": lr,
                         "optimizer": "adam", "weight_decay": 0.0, "scheduler": "cosine",
                         "min_lr": lr * f["min_lr_ratio"],  # the paper's 1e-4 -> 5e-5 shape at any lr
                         "energy_weight": 1.0, "force_weight": 100.0, "early_stopping_patience": 10_000,
                         "time_limit_minutes": f["time_limit_minutes"], "seed": seed})
    if pretrained:
        cfg["finetune"] = {"from_checkpoint": pretrained}
    return cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    parser.add_argument("--models", nargs="+", default=["egnn", "gns"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 40, 160])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["scratch", "masked", "masked_vh", "denoise_paper",
                                                         "denoise_0.04", "denoise_0.2"])
    parser.add_argument("--pretrain-frames", type=int, default=None)
    parser.add_argument("--test-frames", type=int, default=40)
    parser.add_argument("--pool-frames", type=int, default=200)
    parser.add_argument("--pool", default=None, help="labelled train/val pool to use instead of generating one "
                        "(e.g. bundled:water_xtb_small: 24 GFN2-xTB frames of another TIP3P trajectory)")
    parser.add_argument("--scratch-lr", type=float, default=None, help="skip the scratch learning-rate search")
    parser.add_argument("--scratch-lr-grid", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2, 3e-2])
    parser.add_argument("--at-scratch-lr", action="store_true",
                        help="also finetune every pretrained method at scratch's tuned lr (method@scratch-lr)")
    parser.add_argument("--fixed-lr-sizes", type=int, nargs="+", default=None,
                        help="sizes at which pretrained methods run at the fixed schedule lr (default: all)")
    parser.add_argument("--pretrain-minutes", type=float, default=None)
    parser.add_argument("--pretrain-epochs", type=int, default=None)
    parser.add_argument("--finetune-lr", type=float, default=None, help="learning rate of the pretrained methods")
    parser.add_argument("--tag", default="", help="appended to the finetuning method names (e.g. @lr3e-3)")
    parser.add_argument("--finetune-minutes", type=float, default=None)
    parser.add_argument("--output", default="runs/seed1_water")
    parser.add_argument("--results", default="results/seed1_water.json")
    parser.add_argument("--data-only", action="store_true")
    parser.add_argument("--use-existing-data", action="store_true",
                        help="use the data files as they are (e.g. a test set whose labelling was stopped early)")
    parser.add_argument("--pretrain-only", action="store_true", help="only the pretraining runs (no xTB data needed)")
    parser.add_argument("--pretrain-seeds", type=int, nargs="+", default=None,
                        help="pretrain only with these seeds (default: --seeds); finetuning seeds without their own "
                             "pretraining start from the first of these (reduced protocol)")
    parser.add_argument("--table", default=None, help="print the markdown table of a results JSON and exit")
    parser.add_argument("--merge", nargs="+", default=None,
                        help="merge the JSON files of several invocations (e.g. one per N run side by side) into --results")
    args = parser.parse_args()
    if args.table:
        print(markdown_table(json.loads(Path(args.table).read_text())))
        return
    if args.merge:
        docs = [json.loads(Path(f).read_text()) for f in args.merge]
        unique = {}  # a run shared by two invocations (e.g. scratch reused as the pair) counts once
        for r in (r for d in docs for r in d["runs"]):
            unique.setdefault((r["model"], r["method"], r["n_train"], r["seed"]), r)
        runs = list(unique.values())
        merged = {"command": [d["command"] for d in docs], "merged_from": args.merge, "scale": docs[0]["scale"],
                  "settings": docs[0]["settings"], "data": docs[0]["data"],
                  "scratch_lr": [d["scratch_lr"] for d in docs], "complete": all(d["complete"] for d in docs),
                  "pretraining": [p for d in docs for p in d["pretraining"]], "runs": runs, "summary": paired_summary(runs)}
        Path(args.results).write_text(json.dumps(merged, indent=1))
        plot(Path(args.results).with_suffix(".png"), runs)
        return
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", *sys.argv])

    from nnp.config import config_from_dict
    from nnp.train.trainer import run_pretraining, run_training

    scale = json.loads(json.dumps(SCALES[args.scale]))
    if args.pretrain_minutes is not None:
        scale["pretrain"]["time_limit_minutes"] = args.pretrain_minutes
    if args.finetune_lr is not None:
        scale["finetune"]["lr"] = args.finetune_lr
    if args.pretrain_epochs is not None:
        scale["pretrain"]["epochs"] = args.pretrain_epochs
    if args.finetune_minutes is not None:
        scale["finetune"]["time_limit_minutes"] = args.finetune_minutes
    out = Path(args.output)
    pretrain_seeds = args.pretrain_seeds or args.seeds
    if args.pretrain_only:
        import nnp.data.generate.tip3p as tip3p

        data = {"pretrain": str(tip3p.generate_tip3p(out / "data" / "tip3p_pretrain.extxyz",
                                                     n_frames=args.pretrain_frames or scale["pretrain_frames"],
                                                     n_molecules=scale["molecules"], seed=11, positions_only=True))}
    elif args.use_existing_data:
        d = out / "data"
        data = {"pretrain": str(d / "tip3p_pretrain.extxyz"), "test": str(d / "xtb_test.extxyz")}
        if args.pool:
            from nnp.data.readers import bundled_dataset

            data["pool"] = str(bundled_dataset(args.pool.split(":", 1)[1]) if args.pool.startswith("bundled:")
                               else args.pool)
        else:
            data["pool"] = str(d / "xtb_pool.extxyz")
    else:
        data = make_data(out / "data", scale["molecules"], args.pretrain_frames or scale["pretrain_frames"],
                         args.test_frames, args.pool_frames, args.pool)
    if args.data_only:
        return
    import ase.io

    n_test = 0 if args.pretrain_only else len(ase.io.read(data["test"], ":"))

    def finetune(model, method, n, seed, lr, pretrained=None):
        run = out / model / f"{method}-n{n}-s{seed}"
        if (run / "results.json").exists():
            return json.loads((run / "results.json").read_text())
        cfg = finetune_config(scale, model, split_files(data, out / "data", n, seed), n, n_test, seed, run, lr,
                              pretrained)
        return run_training(config_from_dict(cfg), progress=False)

    def pretrain(model, method, seed):
        run = out / model / f"pretrain-{method}-s{seed}"
        if (run / "results.json").exists():
            return json.loads((run / "results.json").read_text())
        p = scale["pretrain"]
        cfg = base_config(scale, model, run.name, run)
        cfg["data"] = {"path": data["pretrain"], "val_fraction": 0.05, "test_fraction": 0.0}
        cfg["pretrain"] = PRETRAIN[method]
        cfg["train"].update({"epochs": p["epochs"], "batch_size": p["batch_size"], "lr": p["lr"], "optimizer": "adam",
                             "weight_decay": 0.0, "scheduler": "cosine", "min_lr": p["min_lr"],
                             "early_stopping_patience": 10_000, "time_limit_minutes": p["time_limit_minutes"],
                             "seed": seed})
        return run_pretraining(config_from_dict(cfg), progress=False)

    results_path = Path(args.results)
    runs, lrs, pretrain_rows = [], {}, []
    jobs = []
    for model in args.models:
        for seed in pretrain_seeds:
            jobs += [("pretrain", model, method, None, seed) for method in args.methods if method != "scratch"]
        if args.pretrain_only:
            continue
        jobs.append(("lr", model, None, None, None))
        for n in args.sizes:  # smallest N first, every seed and method: an interrupted run is still paired
            for seed in args.seeds:
                for method in args.methods:
                    if method == "scratch" or args.fixed_lr_sizes is None or n in args.fixed_lr_sizes:
                        jobs.append(("finetune", model, method, n, seed))
                    if method != "scratch" and args.at_scratch_lr:
                        jobs.append(("finetune", model, method + "@scratch-lr", n, seed))
    bar = tqdm(jobs, desc="seed1_water", unit="run")
    for kind, model, method, n, seed in bar:
        bar.set_postfix_str(f"{kind} {model} {method or ''} N={n} s={seed}")
        if kind == "lr":
            if args.scratch_lr is not None:
                lrs[model] = args.scratch_lr
                continue
            n0 = args.sizes[0]
            scores = {lr: finetune(model, f"lrsearch{lr:g}", n0, 0, lr)["metrics"]["val"]["forces_rmse"]
                      for lr in args.scratch_lr_grid}
            lrs[model] = min(scores, key=scores.get)
            print(f"{model}: scratch lr {lrs[model]:g} (validation force RMSE {scores})", flush=True)
        elif kind == "pretrain":
            summary = pretrain(model, method, seed)
            pretrain_rows.append({"model": model, "method": method, "seed": seed, "epochs": summary["epochs"],
                                  "stopped_by": summary.get("stopped_by"), "best_val_loss": summary.get("best_val_loss")})
        else:
            source = seed if seed in pretrain_seeds else pretrain_seeds[0]
            base, _, variant = method.partition("@")
            ckpt = None if method == "scratch" else str(out / model / f"pretrain-{base}-s{source}" / "best.ckpt")
            lr = lrs[model] if method == "scratch" or variant == "scratch-lr" else scale["finetune"]["lr"]
            summary = finetune(model, method + args.tag, n, seed, lr, ckpt)
            test = summary["metrics"]["test"]
            runs.append({"model": model, "method": method + args.tag, "n_train": n, "seed": seed, "lr": lr,
                         "pretrain_seed": None if method == "scratch" else source,
                         "test_force_rmse_meV_A": 1000 * test["forces_rmse"],
                         "test_energy_rmse_meV_atom": 1000 * test["energy_per_atom_rmse"],
                         "epochs": summary["epochs"], "n_test": n_test})
        if not args.pretrain_only:
            write(results_path, command, args, scale, data, lrs, runs, pretrain_rows)
    if args.pretrain_only:
        return
    write(results_path, command, args, scale, data, lrs, runs, pretrain_rows, final=True)


def paired_summary(runs: list[dict]) -> list[dict]:
    """Per model/method/N: means, and the mean and 95 % t-interval of (method - scratch) paired by seed."""
    from scipy import stats

    rows = []
    keys = sorted({(r["model"], r["method"], r["n_train"]) for r in runs})
    for model, method, n in keys:
        mine = {r["seed"]: r for r in runs if (r["model"], r["method"], r["n_train"]) == (model, method, n)}
        base = {r["seed"]: r for r in runs if (r["model"], r["method"], r["n_train"]) == (model, "scratch", n)}
        row = {"model": model, "method": method, "n_train": n, "seeds": sorted(mine)}
        for metric in ("test_force_rmse_meV_A", "test_energy_rmse_meV_atom"):
            values = np.array([mine[s][metric] for s in sorted(mine)])
            row[metric + "_mean"] = float(values.mean())
            row[metric + "_std_ddof1"] = float(values.std(ddof=1)) if len(values) > 1 else None
            common = sorted(set(mine) & set(base))
            if method != "scratch" and common:
                d = np.array([mine[s][metric] - base[s][metric] for s in common])
                rel = np.array([(mine[s][metric] - base[s][metric]) / base[s][metric] for s in common])
                half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else None
                row[metric + "_diff_vs_scratch"] = float(d.mean())
                row[metric + "_diff_ci95"] = None if half is None else [float(d.mean() - half), float(d.mean() + half)]
                row[metric + "_rel_diff_vs_scratch"] = float(rel.mean())
        rows.append(row)
    return rows


def markdown_table(doc: dict) -> str:
    """Per model/method/N: per-seed test errors, means and the paired difference to scratch with its 95 % interval."""
    def diff(row: dict, metric: str) -> str:
        if row["method"] == "scratch" or metric + "_diff_vs_scratch" not in row:
            return "—"
        ci, rel = row[metric + "_diff_ci95"], 100 * row[metric + "_rel_diff_vs_scratch"]
        digits = 2 if metric.startswith("test_energy") else 1
        interval = f" [{ci[0]:+.{digits}f}, {ci[1]:+.{digits}f}]" if ci else ""
        return f"{row[metric + '_diff_vs_scratch']:+.{digits}f} ({rel:+.0f} %){interval}"

    lines = ["| model | method | N | seeds | F RMSE (meV/Å) per seed | F mean | ΔF vs scratch [95 % CI] | "
             "E RMSE (meV/atom) per seed | E mean | ΔE vs scratch [95 % CI] |", "|---" * 10 + "|"]
    for row in sorted(doc["summary"], key=lambda r: (r["model"], r["n_train"], r["method"] != "scratch", r["method"])):
        runs = sorted((r for r in doc["runs"] if (r["model"], r["method"], r["n_train"]) ==
                       (row["model"], row["method"], row["n_train"])), key=lambda r: r["seed"])
        f = ", ".join(f"{r['test_force_rmse_meV_A']:.1f}" for r in runs)
        e = ", ".join(f"{r['test_energy_rmse_meV_atom']:.2f}" for r in runs)
        lines.append(f"| {row['model']} | {row['method']} | {row['n_train']} | {len(runs)} | {f} | "
                     f"{row['test_force_rmse_meV_A_mean']:.1f} | {diff(row, 'test_force_rmse_meV_A')} | {e} | "
                     f"{row['test_energy_rmse_meV_atom_mean']:.2f} | {diff(row, 'test_energy_rmse_meV_atom')} |")
    return "\n".join(lines)


def write(path: Path, command, args, scale, data, lrs, runs, pretrain_rows, final=False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"command": command, "scale": args.scale, "settings": scale, "data": data,
           "scratch_lr": lrs, "complete": final, "pretraining": pretrain_rows, "runs": runs,
           "summary": paired_summary(runs) if runs else []}
    path.write_text(json.dumps(doc, indent=1))
    if runs:
        plot(path.with_suffix(".png"), runs)


def plot(path: Path, runs: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({r["model"] for r in runs})
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models):
        for method in sorted({r["method"] for r in runs if r["model"] == model}):
            sizes = sorted({r["n_train"] for r in runs if r["model"] == model and r["method"] == method})
            values = [[r["test_force_rmse_meV_A"] for r in runs
                       if (r["model"], r["method"], r["n_train"]) == (model, method, n)] for n in sizes]
            ax.errorbar(sizes, [np.mean(v) for v in values], yerr=[np.std(v) for v in values], marker="o",
                        capsize=3, label=method)
        ax.set_xscale("log")
        ax.set_xlabel("finetuning frames N")
        ax.set_ylabel("test force RMSE (meV/Å)")
        ax.set_title(model)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()

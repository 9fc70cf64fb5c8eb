"""First seed at CPU scale: EGNN on GFN2-xTB water from scratch vs after denoising / masked-atom pretraining.

    python training/experiments/water_pretraining.py [--seeds 0 1 2] [--output runs/experiments/water]

Pretraining: bundled TIP3P water, positions only (training/water/pretrain_*.yaml). Finetuning and the
baseline: the bundled GFN2-xTB water set, low-data split (training/water/finetune.yaml, scratch.yaml);
the same test split for every run. Prints a table (mean ± std over seeds) and writes results.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from nnp.config import load_config
from nnp.train.trainer import run_pretraining, run_training

RECIPES = Path(__file__).resolve().parents[1] / "water"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--output", default="runs/experiments/water")
    args = parser.parse_args()
    out = Path(args.output)
    results: dict[str, list[dict]] = {"scratch": [], "denoise": [], "masked": []}
    for seed in args.seeds:
        checkpoints = {}
        for task in ("denoise", "masked"):
            recipe = RECIPES / ("pretrain_mask.yaml" if task == "masked" else "pretrain_denoise.yaml")
            config = load_config(recipe, [f"output_dir={out}/pretrain-{task}-s{seed}", f"train.seed={seed}"])
            checkpoints[task] = run_pretraining(config, progress=False)["checkpoint"]
        for method in ("scratch", "denoise", "masked"):
            recipe = RECIPES / ("scratch.yaml" if method == "scratch" else "finetune.yaml")
            overrides = [f"output_dir={out}/{method}-s{seed}", f"train.seed={seed}"]
            if method != "scratch":
                overrides.append(f"finetune.from_checkpoint={checkpoints[method]}")
            summary = run_training(load_config(recipe, overrides), progress=False)
            test = summary["metrics"]["test"]
            results[method].append({"seed": seed, "energy_rmse_meV_atom": 1000 * test["energy_per_atom_rmse"],
                                    "force_rmse_meV_A": 1000 * test["forces_rmse"], "epochs": summary["epochs"]})
            print(method, seed, results[method][-1], flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\n{'method':<10}{'E RMSE (meV/atom)':>22}{'F RMSE (meV/Å)':>22}")
    for method, rows in results.items():
        e = np.array([r["energy_rmse_meV_atom"] for r in rows])
        f = np.array([r["force_rmse_meV_A"] for r in rows])
        print(f"{method:<10}{e.mean():>14.2f} ± {e.std():<6.2f}{f.mean():>14.1f} ± {f.std():<6.1f}")


if __name__ == "__main__":
    main()

"""Where the README job's validation energy error comes from, with and without the per-epoch shift refit.

    python training/experiments/energy_offset.py --data runs/quickstart/data/water_tip3p.extxyz --epochs 5

Trains the quickstart configuration twice for ``--epochs`` epochs (``train.refit_energy_shift`` off, then
on) and after every epoch splits the validation error of the energy per atom into its mean (a constant
offset) and its spread. Writes results/energy_offset.json and results/energy_offset.png.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from nnp.config import load_config
from nnp.train.loop import Trainer
from nnp.train.predict import predict_batch
from nnp.train.trainer import model_for_data, prepare_data
from torch_geometric.data import Batch

ROOT = Path(__file__).resolve().parents[2]


def energy_errors(model, dataset) -> np.ndarray:
    """Signed energy-per-atom errors (meV/atom) of ``model`` on every frame of ``dataset``."""
    errors = []
    for start in range(0, len(dataset), 8):
        batch = Batch.from_data_list([dataset.graph(k) for k in range(start, min(start + 8, len(dataset)))])
        pred = predict_batch(model, batch, create_graph=False)
        errors += ((pred["energy"] - batch.energy) / torch.bincount(batch.batch)).tolist()
    return 1000 * np.array(errors)


def run(data: str, epochs: int, refit: bool, output: Path) -> list[dict]:
    overrides = [f"data.path={data}", f"output_dir={output}", "train.time_limit_minutes=null",
                 f"train.refit_energy_shift={str(refit).lower()}"]
    config = load_config(ROOT / "training" / "water" / "quickstart.yaml", overrides)
    prepared = prepare_data(config, progress=False)
    trainer = Trainer(config, model_for_data(config, prepared), prepared, progress=False)
    rows = []
    while trainer.epoch < epochs:
        trainer.fit(max_epochs=1)
        errors = energy_errors(trainer.evaluation_model(), prepared.splits["val"])
        rows.append({"epoch": trainer.epoch, "energy_rmse": float(np.sqrt((errors**2).mean())),
                     "energy_offset": float(errors.mean()), "energy_spread": float(errors.std()),
                     "force_rmse": 1000 * trainer.history[-1]["val_forces_rmse"]})
        print(json.dumps({"refit": refit, **rows[-1]}), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--output", default="runs/energy_offset")
    args = parser.parse_args()
    result = {"command": " ".join(["python", *sys.argv]), "units": "meV/atom (energy), meV/Å (force)",
              "without_refit": run(args.data, args.epochs, False, Path(args.output) / "without"),
              "with_refit": run(args.data, args.epochs, True, Path(args.output) / "with")}
    (ROOT / "results" / "energy_offset.json").write_text(json.dumps(result, indent=2))
    plot(result, ROOT / "results" / "energy_offset.png")


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, colour in (("without_refit", "tab:red"), ("with_refit", "tab:blue")):
        rows = result[key]
        epochs = [r["epoch"] for r in rows]
        ax.plot(epochs, [r["energy_rmse"] for r in rows], "o-", color=colour, label=f"{key}: RMSE")
        ax.plot(epochs, [abs(r["energy_offset"]) for r in rows], "s--", color=colour, alpha=0.6,
                label=f"{key}: |mean offset|")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation energy error (meV/atom)")
    ax.set_yscale("log")
    ax.set_title("README job: validation energy error per epoch")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()

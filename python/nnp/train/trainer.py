"""Training loop: energy+force(+stress) loss, validation each epoch, atomic checkpoints, exact resume.

A run directory holds ``last.ckpt`` (every epoch), ``best.ckpt`` (best validation loss),
``metrics.csv``, ``learning_curves.png``, ``results.json`` and the exported ``model.nnp.pt``.
Starting a run whose directory already has ``last.ckpt`` resumes it: the data order of every
epoch depends only on (seed, epoch), so an interrupted and resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Batch, Data
from tqdm.auto import tqdm

from ..config import RunConfig
from ..data.dataset import (
    build_graphs,
    dataset_species,
    fit_reference_energies,
    force_rms,
    load_structures,
    mean_num_neighbors,
    split_indices,
)
from ..models.build import ROTATION_INVARIANT, build_potential
from ..models.potential import Potential
from .predict import MetricAccumulator, format_metrics_table, predict_batch

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class PreparedData:
    species: list[str]
    splits: dict[str, list[Data]]
    reference_energies: np.ndarray
    force_scale: float
    avg_num_neighbors: float


def prepare_data(config: RunConfig, progress: bool = True) -> PreparedData:
    """Read, split and graph the dataset of a run; statistics come from the training split only."""
    frames = load_structures(config.data.path, config.data.format, config.data.max_frames)
    species = dataset_species(frames)
    idx = split_indices(len(frames), config.data.val_fraction, config.data.test_fraction, config.data.split_seed)
    train_frames = [frames[k] for k in idx["train"]]
    dtype = DTYPES[config.train.dtype]
    graphs = build_graphs(frames, species, config.model.cutoff, dtype, progress)
    splits = {name: [graphs[k] for k in ids] for name, ids in idx.items()}
    return PreparedData(
        species=species,
        splits=splits,
        reference_energies=fit_reference_energies(train_frames, species),
        force_scale=force_rms(train_frames),
        avg_num_neighbors=mean_num_neighbors(splits["train"]),
    )


def model_for_data(config: RunConfig, data: PreparedData) -> Potential:
    model = build_potential(
        config.model,
        data.species,
        avg_num_neighbors=data.avg_num_neighbors,
        reference_energies=torch.tensor(data.reference_energies),
        scale=data.force_scale,
    )
    return model.to(DTYPES[config.train.dtype])


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temporary file, fsync, then rename: a kill never leaves a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by the trainer (tensors and plain containers only)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return torch.load(path, map_location="cpu", weights_only=True)


def model_from_checkpoint(checkpoint: dict[str, Any]) -> Potential:
    """Rebuild the potential stored in a checkpoint (architecture from its config, weights from it)."""
    from ..config import config_from_dict

    config = config_from_dict(checkpoint["config"], "checkpoint")
    meta = checkpoint["model_init"]
    model = build_potential(config.model, meta["species"], avg_num_neighbors=meta["avg_num_neighbors"])
    model.load_state_dict(checkpoint["model"])
    return model.to(DTYPES[config.train.dtype])


def evaluate(model: Potential, graphs: list[Data], batch_size: int = 8, progress: bool = False) -> dict[str, float]:
    """Energy/atom and force MAE/RMSE of ``model`` on ``graphs``."""
    acc = MetricAccumulator()
    model.eval()
    for start in tqdm(range(0, len(graphs), batch_size), desc="evaluate", disable=not progress, leave=False):
        batch = Batch.from_data_list(graphs[start : start + batch_size])
        pred = predict_batch(model, batch, create_graph=False)
        acc.update(pred, batch)
    return acc.result()


def random_rotation(generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """Uniformly random proper rotation matrix (QR of a Gaussian matrix with sign fix)."""
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.to(dtype)


def rotate_batch(batch: Batch, rotation: torch.Tensor) -> Batch:
    """Rotate positions, cells, shifts and the vector/tensor labels of a batch (data augmentation)."""
    batch = batch.clone()
    batch.pos = batch.pos @ rotation.T
    batch.shifts = batch.shifts @ rotation.T
    batch.cell = batch.cell @ rotation.T
    if hasattr(batch, "forces"):
        batch.forces = batch.forces @ rotation.T
    if hasattr(batch, "stress"):
        batch.stress = rotation @ batch.stress @ rotation.T
    return batch


class Trainer:
    """Fits a :class:`Potential` on the splits of a :class:`PreparedData`."""

    def __init__(self, config: RunConfig, model: Potential, data: PreparedData, progress: bool = True):
        self.config = config
        self.t = config.train
        self.model = model
        self.data = data
        self.progress = progress
        self.run_dir = config.run_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)
        optim_cls = torch.optim.AdamW if self.t.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = optim_cls(model.parameters(), lr=self.t.lr, weight_decay=self.t.weight_decay)
        self.scheduler = self._make_scheduler()
        augment = self.t.rotation_augmentation
        self.augment_rotations = (not ROTATION_INVARIANT[config.model.kind]) if augment is None else augment
        self.epoch = 0
        self.best_val = math.inf
        self.epochs_since_best = 0
        self.history: list[dict[str, float]] = []

    def _make_scheduler(self):
        t = self.t
        if t.scheduler == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, factor=t.scheduler_factor, patience=t.scheduler_patience, min_lr=t.min_lr
            )
        if t.scheduler == "cosine":
            warm, total = max(t.warmup_epochs, 0), t.epochs
            floor = t.min_lr / t.lr

            def factor(epoch: int) -> float:
                if epoch < warm:
                    return (epoch + 1) / (warm + 1)
                progress = (epoch - warm) / max(total - warm, 1)
                return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

            return torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        return None

    # -- checkpoints ---------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "epoch": self.epoch,
            "best_val": self.best_val,
            "epochs_since_best": self.epochs_since_best,
            "history": self.history,
            "config": self.config.to_dict(),
            "model_init": {"species": self.data.species, "avg_num_neighbors": self.data.avg_num_neighbors},
        }

    def restore(self, checkpoint: dict[str, Any]) -> None:
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.scheduler is not None and checkpoint["scheduler"] is not None:
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.epoch = int(checkpoint["epoch"])
        self.best_val = float(checkpoint["best_val"])
        self.epochs_since_best = int(checkpoint["epochs_since_best"])
        self.history = list(checkpoint["history"])

    # -- one epoch -----------------------------------------------------------------------------
    def loss(self, pred: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        t = self.t
        natoms = torch.bincount(batch.batch, minlength=batch.num_graphs).to(pred["energy"].dtype)
        loss = t.energy_weight * (((pred["energy"] - batch.energy) / natoms) ** 2).mean()
        loss = loss + t.force_weight * ((pred["forces"] - batch.forces) ** 2).mean()
        if t.stress_weight > 0 and hasattr(batch, "stress"):
            loss = loss + t.stress_weight * ((pred["stress"] - batch.stress) ** 2).mean()
        return loss

    def train_epoch(self) -> float:
        self.model.train()
        graphs = self.data.splits["train"]
        generator = torch.Generator().manual_seed(self.t.seed * 100003 + self.epoch)
        order = torch.randperm(len(graphs), generator=generator).tolist()
        batches = [order[k : k + self.t.batch_size] for k in range(0, len(order), self.t.batch_size)]
        total, count = 0.0, 0
        bar = tqdm(batches, desc=f"epoch {self.epoch + 1}", disable=not self.progress, leave=False)
        for ids in bar:
            batch = Batch.from_data_list([graphs[k] for k in ids])
            if self.augment_rotations:
                batch = rotate_batch(batch, random_rotation(generator, batch.pos.dtype))
            pred = predict_batch(self.model, batch, create_graph=True)
            loss = self.loss(pred, batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.t.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.t.grad_clip)
            self.optimizer.step()
            total += float(loss.detach()) * len(ids)
            count += len(ids)
            bar.set_postfix(loss=f"{total / count:.4g}")
        return total / max(count, 1)

    def validation_loss(self, metrics: dict[str, float]) -> float:
        return self.t.energy_weight * metrics.get("energy_per_atom_rmse", 0.0) ** 2 + self.t.force_weight * (
            metrics.get("forces_rmse", 0.0) ** 2
        )

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, max_epochs: int | None = None) -> dict[str, Any]:
        """Train until ``train.epochs`` (or ``max_epochs`` more epochs, for tests), early stop or time limit."""
        last = self.run_dir / "last.ckpt"
        if last.exists():
            self.restore(load_checkpoint(last))
        start_time = time.monotonic()
        stop_epoch = self.t.epochs if max_epochs is None else min(self.t.epochs, self.epoch + max_epochs)
        reason = "epochs"
        epoch_bar = tqdm(total=self.t.epochs, initial=self.epoch, desc="training", disable=not self.progress)
        while self.epoch < stop_epoch:
            tick = time.monotonic()
            train_loss = self.train_epoch()
            val_metrics = evaluate(self.model, self.data.splits["val"] or self.data.splits["train"])
            val_loss = self.validation_loss(val_metrics)
            lr = self.optimizer.param_groups[0]["lr"]
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(val_loss)
            elif self.scheduler is not None:
                self.scheduler.step()
            self.epoch += 1
            self.history.append({"epoch": self.epoch, "lr": lr, "train_loss": train_loss, "val_loss": val_loss,
                                 **{f"val_{k}": v for k, v in val_metrics.items()},
                                 "seconds": time.monotonic() - tick})
            improved = val_loss < self.best_val
            if improved:
                self.best_val, self.epochs_since_best = val_loss, 0
            else:
                self.epochs_since_best += 1
            save_atomic(self.state(), last)
            if improved:
                save_atomic(self.state(), self.run_dir / "best.ckpt")
            self.write_metrics()
            epoch_bar.update(1)
            epoch_bar.set_postfix(val_F_rmse=f"{val_metrics.get('forces_rmse', float('nan')):.4f}")
            if self.epochs_since_best >= self.t.early_stopping_patience:
                reason = "early stopping"
                break
            if self.t.time_limit_minutes and time.monotonic() - start_time > 60 * self.t.time_limit_minutes:
                reason = "time limit"
                break
        epoch_bar.close()
        self.plot_learning_curves()
        return {"epochs": self.epoch, "stopped_by": reason, "best_val_loss": self.best_val}

    def write_metrics(self) -> None:
        keys = list(dict.fromkeys(k for row in self.history for k in row))
        tmp = self.run_dir / "metrics.csv.tmp"
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.history)
        os.replace(tmp, self.run_dir / "metrics.csv")

    def plot_learning_curves(self) -> Path | None:
        if not self.history:
            return None
        from ..plotting import plot_learning_curves

        return plot_learning_curves(self.history, self.run_dir / "learning_curves.png")


def run_training(config: RunConfig, progress: bool = True, export_dtype: str = "float64") -> dict[str, Any]:
    """The whole `nnp train` job: data, model, fit, test metrics, export. Returns the results summary."""
    from ..export import export_model

    data = prepare_data(config, progress)
    model = model_for_data(config, data)
    trainer = Trainer(config, model, data, progress)
    fit = trainer.fit()
    best = load_checkpoint(config.run_dir / "best.ckpt")
    model.load_state_dict(best["model"])
    metrics = {split: evaluate(model, graphs) for split, graphs in data.splits.items() if graphs}
    model_path = export_model(
        model,
        config.run_dir / "model.nnp.pt",
        dtype=export_dtype,
        provenance={"config": config.to_dict(), "dataset": config.data.path, "test_metrics": metrics.get("test"),
                    "epochs": fit["epochs"]},
    )
    summary = {
        "name": config.name,
        "model_file": str(model_path),
        "species": data.species,
        "num_frames": {k: len(v) for k, v in data.splits.items()},
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "metrics": metrics,
        **fit,
    }
    (config.run_dir / "results.json").write_text(json.dumps(summary, indent=2))
    summary["table"] = format_metrics_table(metrics)
    return summary

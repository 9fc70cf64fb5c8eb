"""The training engine: any task, validation each epoch, EMA, atomic checkpoints, exact resume, torchrun.

A run directory holds ``last.ckpt`` (every epoch), ``best.ckpt`` (best validation loss),
``metrics.csv``, ``learning_curves.png``, ``results.json`` and, for potentials, ``model.nnp.pt``.
Starting a run whose directory already has ``last.ckpt`` resumes it: the data order of every
epoch depends only on (seed, epoch), so an interrupted and resumed run equals an uninterrupted one.

Under ``torchrun --nproc_per_node=N`` every process takes an equal share of each global batch and
gradients are averaged across processes (gloo on CPU, NCCL on GPU) before every optimiser step, so
N processes follow the same trajectory as one process with the same global batch.
"""

from __future__ import annotations

import copy
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
import torch.distributed as dist
from torch import nn
from torch_geometric.data import Data
from tqdm.auto import tqdm

from ..config import RunConfig, TrainConfig, config_from_dict
from ..data.dataset import (
    build_graphs,
    dataset_species,
    fit_reference_energies,
    force_rms,
    load_structures,
    mean_num_neighbors,
    split_indices,
)
from ..models.build import ROTATION_INVARIANT, build_backbone, build_potential
from ..data.graph import edge_vectors
from ..models.heads import PretrainModel
from ..models.potential import Potential
from .predict import format_metrics_table
from .tasks import EnergyForceTask, PretrainTask

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class PreparedData:
    species: list[str]
    splits: dict[str, list[Data]]
    reference_energies: np.ndarray | None
    force_scale: float
    avg_num_neighbors: float
    frames: dict[str, list[Any]]


def prepare_data(config: RunConfig, progress: bool = True, labelled: bool = True,
                 species: list[str] | None = None) -> PreparedData:
    """Read, split and graph the dataset of a run; statistics come from the training split only.

    ``species`` extends the dataset's elements (finetuning keeps the pretrained model's species).
    """
    frames = load_structures(config.data.path, config.data.format, config.data.max_frames, require_labels=labelled)
    present = dataset_species(frames)
    species = list(species or [])
    species += [s for s in present if s not in species]
    idx = split_indices(len(frames), config.data.val_fraction, config.data.test_fraction, config.data.split_seed)
    split_frames = {name: [frames[k] for k in ids] for name, ids in idx.items()}
    graphs = build_graphs(frames, species, config.model.cutoff, DTYPES[config.train.dtype], progress)
    splits = {name: [graphs[k] for k in ids] for name, ids in idx.items()}
    train = split_frames["train"]
    return PreparedData(
        species=species,
        splits=splits,
        reference_energies=fit_reference_energies(train, species) if labelled else None,
        force_scale=force_rms(train) if labelled else 1.0,
        avg_num_neighbors=mean_num_neighbors(splits["train"]),
        frames=split_frames,
    )


def model_for_data(config: RunConfig, data: PreparedData) -> Potential:
    """A freshly initialised potential (weights drawn from ``train.seed``) with the data's statistics."""
    torch.manual_seed(config.train.seed)
    ref = None if data.reference_energies is None else torch.tensor(data.reference_energies)
    model = build_potential(config.model, data.species, avg_num_neighbors=data.avg_num_neighbors,
                            reference_energies=ref, scale=data.force_scale).to(DTYPES[config.train.dtype])
    if data.reference_energies is not None:
        center_energy_shift(model, data.splits["train"][:32])
    return model


def center_energy_shift(model: Potential, graphs: list[Data]) -> None:
    """Set the per-atom energy shift so that the untrained model has zero mean energy error on ``graphs``.

    Without it the readout's initial offset (times the force scale) shows up as a constant energy
    error that training removes only slowly.
    """
    model.shift.zero_()
    residual, atoms = 0.0, 0
    with torch.no_grad():
        for graph in graphs:
            predicted = model.atom_energies(graph.species, graph.edge_index, edge_vectors(graph)).sum()
            residual += float(graph.energy.sum() - predicted)
            atoms += graph.num_nodes
    if atoms:
        model.shift += residual / atoms


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temporary file, fsync, then rename: a kill never leaves a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by the engine (tensors and plain containers only, weights_only)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return torch.load(path, map_location="cpu", weights_only=True)


def model_from_checkpoint(checkpoint: dict[str, Any], use_ema: bool = True) -> Potential:
    """Rebuild the potential stored in a checkpoint (architecture from its config, weights from it)."""
    config = config_from_dict(checkpoint["config"], "checkpoint")
    meta = checkpoint["model_init"]
    if meta.get("kind", "potential") != "potential":
        raise ValueError("this checkpoint holds a pretraining model: finetune it (nnp finetune --from) to get a potential")
    model = build_potential(config.model, meta["species"], avg_num_neighbors=meta["avg_num_neighbors"])
    state = checkpoint["ema"] if use_ema and checkpoint.get("ema") is not None else checkpoint["model"]
    model.load_state_dict(state)
    return model.to(DTYPES[config.train.dtype])


class EMA:
    """Exponential moving average of the parameters and buffers of a model."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for key, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                self.state[key].mul_(self.decay).add_(value.detach(), alpha=1 - self.decay)
            else:
                self.state[key].copy_(value)


class Distributed:
    """Process group from torchrun's environment, or a single process."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, ids: list[int]) -> list[int]:
        """This process's part of a global batch (equal parts; the global batch must divide evenly)."""
        if self.world == 1:
            return ids
        if len(ids) % self.world:
            raise ValueError(f"batch of {len(ids)} frames does not split evenly over {self.world} processes: "
                             "choose train.batch_size as a multiple of the process count and drop the remainder")
        part = len(ids) // self.world
        return ids[self.rank * part : (self.rank + 1) * part]

    def average_gradients(self, model: nn.Module) -> None:
        if self.world == 1:
            return
        for p in model.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= self.world

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


class Trainer:
    """Optimises ``model`` for ``task`` on the splits of ``data``."""

    def __init__(self, config: RunConfig, model: nn.Module, data: PreparedData, task=None, progress: bool = True,
                 model_init: dict[str, Any] | None = None):
        self.config = config
        self.t = config.train
        self.model = model
        self.data = data
        self.dist = Distributed()
        self.progress = progress and self.dist.main
        augment = self.t.rotation_augmentation
        self.augment_rotations = (not ROTATION_INVARIANT[config.model.kind]) if augment is None else augment
        self.task = task or EnergyForceTask(self.t, self.augment_rotations)
        self.model_init = model_init or {"kind": "potential", "species": data.species,
                                         "avg_num_neighbors": data.avg_num_neighbors}
        self.run_dir = config.run_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.optimizer = self._make_optimizer()
        self.scheduler = self._make_scheduler()
        self.ema = EMA(model, self.t.ema_decay) if self.t.ema_decay else None
        self.epoch = 0
        self.best_val = math.inf
        self.epochs_since_best = 0
        self.history: list[dict[str, float]] = []

    def _make_optimizer(self) -> torch.optim.Optimizer:
        t, f = self.t, self.config.finetune
        backbone = getattr(self.model, "backbone", None)
        if backbone is not None and f.from_checkpoint and f.backbone_lr_factor != 1.0:
            ids = {id(p) for p in backbone.parameters()}
            groups = [
                {"params": [p for p in self.model.parameters() if id(p) in ids], "lr": t.lr * f.backbone_lr_factor},
                {"params": [p for p in self.model.parameters() if id(p) not in ids], "lr": t.lr},
            ]
        else:
            groups = [{"params": list(self.model.parameters()), "lr": t.lr}]
        optim_cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
        return optim_cls(groups, lr=t.lr, weight_decay=t.weight_decay)

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
            "ema": self.ema.state if self.ema else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "epoch": self.epoch,
            "best_val": self.best_val,
            "epochs_since_best": self.epochs_since_best,
            "history": self.history,
            "config": self.config.to_dict(),
            "model_init": self.model_init,
        }

    def restore(self, checkpoint: dict[str, Any]) -> None:
        self.model.load_state_dict(checkpoint["model"])
        if self.ema is not None and checkpoint.get("ema") is not None:
            self.ema.state = checkpoint["ema"]
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.scheduler is not None and checkpoint["scheduler"] is not None:
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.epoch = int(checkpoint["epoch"])
        self.best_val = float(checkpoint["best_val"])
        self.epochs_since_best = int(checkpoint["epochs_since_best"])
        self.history = list(checkpoint["history"])

    def evaluation_model(self) -> nn.Module:
        """The model whose weights are validated and exported: the EMA weights when EMA is on."""
        if self.ema is None:
            return self.model
        shadow = copy.deepcopy(self.model)
        shadow.load_state_dict(self.ema.state)
        return shadow

    # -- one epoch -----------------------------------------------------------------------------
    def _set_backbone_frozen(self) -> None:
        frozen = self.epoch < self.config.finetune.freeze_backbone_epochs and self.config.finetune.from_checkpoint
        backbone = getattr(self.model, "backbone", None)
        if backbone is None:
            return
        readout = getattr(backbone, "readout", None) or getattr(backbone, "decoder", None)
        trainable_when_frozen = {id(p) for p in readout.parameters()} if readout is not None else set()
        for p in backbone.parameters():
            p.requires_grad_(not frozen or id(p) in trainable_when_frozen)

    def train_epoch(self) -> float:
        self.model.train()
        self._set_backbone_frozen()
        graphs = self.data.splits["train"]
        generator = torch.Generator().manual_seed(self.t.seed * 100003 + self.epoch)
        order = torch.randperm(len(graphs), generator=generator).tolist()
        size = self.t.batch_size
        if self.dist.world > 1:
            order = order[: len(order) // size * size]  # equal global batches only
        batches = [order[k : k + size] for k in range(0, len(order), size)]
        total, count = 0.0, 0
        bar = tqdm(batches, desc=f"epoch {self.epoch + 1}", disable=not self.progress, leave=False)
        for ids in bar:
            mine = self.dist.share(ids)
            batch_generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
            batch = self.task.train_batch([graphs[k] for k in mine], batch_generator)
            loss = self.task.loss(self.model, batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.dist.average_gradients(self.model)
            if self.t.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.t.grad_clip)
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(self.model)
            total += float(loss.detach()) * len(ids)
            count += len(ids)
            bar.set_postfix(loss=f"{total / count:.4g}")
        return total / max(count, 1)

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, max_epochs: int | None = None) -> dict[str, Any]:
        """Train until ``train.epochs`` (or ``max_epochs`` more epochs), early stopping or the time limit."""
        last = self.run_dir / "last.ckpt"
        if last.exists():
            self.restore(load_checkpoint(last))
        start_time = time.monotonic()
        stop_epoch = self.t.epochs if max_epochs is None else min(self.t.epochs, self.epoch + max_epochs)
        reason = "epochs"
        limit = 60 * self.t.time_limit_minutes if self.t.time_limit_minutes else None
        desc = self.task.name + (f" (stops within {self.t.time_limit_minutes:g} min)" if limit else "")
        epoch_bar = tqdm(total=self.t.epochs, initial=self.epoch, desc=desc, disable=not self.progress)
        while self.epoch < stop_epoch:
            tick = time.monotonic()
            train_loss = self.train_epoch()
            val_graphs = self.data.splits["val"] or self.data.splits["train"]
            val_metrics = self.task.evaluate(self.evaluation_model(), val_graphs)
            val_loss = val_metrics["loss"]
            lr = self.optimizer.param_groups[-1]["lr"]
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(val_loss)
            elif self.scheduler is not None:
                self.scheduler.step()
            self.epoch += 1
            self.history.append({"epoch": self.epoch, "lr": lr, "train_loss": train_loss, "val_loss": val_loss,
                                 **{f"val_{k}": v for k, v in val_metrics.items() if k != "loss"},
                                 "seconds": time.monotonic() - tick})
            improved = val_loss < self.best_val
            if improved:
                self.best_val, self.epochs_since_best = val_loss, 0
            else:
                self.epochs_since_best += 1
            if self.dist.main:
                save_atomic(self.state(), last)
                if improved:
                    save_atomic(self.state(), self.run_dir / "best.ckpt")
                self.write_metrics()
            self.dist.barrier()
            epoch_bar.update(1)
            epoch_bar.set_postfix(val_loss=f"{val_loss:.4g}")
            if self.epochs_since_best >= self.t.early_stopping_patience:
                reason = "early stopping"
                break
            # a limit, not a target: stop when the next epoch (as long as this one) would end past it
            now = time.monotonic()
            if limit is not None and (now - start_time) + (now - tick) > limit:
                reason = "time limit"
                break
        epoch_bar.close()
        if self.dist.main:
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


def evaluate(model: Potential, graphs: list[Data], batch_size: int = 8) -> dict[str, float]:
    """Energy/atom and force MAE/RMSE of ``model`` on ``graphs``."""
    metrics = EnergyForceTask(TrainConfig(), False).evaluate(model, graphs, batch_size)
    metrics.pop("loss")
    return metrics


def load_pretrained_backbone(model: Potential, checkpoint_path: str, reinit_readout: bool) -> list[str]:
    """Copy a pretrained backbone into ``model`` (same architecture); the pretraining head is dropped.

    Species embeddings are matched by element symbol, so the finetuning data may have a different
    species set. Returns the names of the tensors that were transferred.
    """
    checkpoint = load_checkpoint(checkpoint_path)
    source = checkpoint["ema"] if checkpoint.get("ema") is not None else checkpoint["model"]
    source_species = checkpoint["model_init"]["species"]
    target = model.backbone.state_dict()
    transferred = []
    for key, value in source.items():
        if not key.startswith("backbone."):
            continue  # pretraining head, reference energies, scale/shift
        name = key[len("backbone."):]
        if reinit_readout and name.split(".")[0] in ("readout", "decoder", "outputs", "embedding_output"):
            continue
        if name not in target:
            raise ValueError(f"pretrained tensor {name} has no counterpart: the architectures differ "
                             "(model section of the finetuning config must match the pretraining one)")
        if name.endswith("table.weight") and value.shape[0] == len(source_species):
            rows = target[name].clone()
            for k, symbol in enumerate(model.species):
                if symbol in source_species:
                    rows[k] = value[source_species.index(symbol)]
            value = rows
        if value.shape != target[name].shape:
            raise ValueError(f"pretrained tensor {name} has shape {tuple(value.shape)}, the model expects "
                             f"{tuple(target[name].shape)}: model sizes differ")
        target[name] = value.to(target[name].dtype)
        transferred.append(name)
    model.backbone.load_state_dict(target)
    return transferred


def run_training(config: RunConfig, progress: bool = True, export_dtype: str = "float64") -> dict[str, Any]:
    """`nnp train` / `nnp finetune`: data, model (optionally from a pretrained backbone), fit, test, export."""
    from ..export import export_model

    pretrained = None
    if config.finetune.from_checkpoint:
        pretrained = load_checkpoint(config.finetune.from_checkpoint)["model_init"]
    data = prepare_data(config, progress, species=pretrained["species"] if pretrained else None)
    if pretrained:  # the backbone's message normalisation must stay what it was pretrained with
        data.avg_num_neighbors = pretrained["avg_num_neighbors"]
    model = model_for_data(config, data)
    if config.finetune.from_checkpoint and not (config.run_dir / "last.ckpt").exists():
        load_pretrained_backbone(model, config.finetune.from_checkpoint, config.finetune.reinit_readout)
        center_energy_shift(model, data.splits["train"][:32])  # for the pretrained backbone
    trainer = Trainer(config, model, data, progress=progress)
    fit = trainer.fit()
    summary: dict[str, Any] = {"name": config.name, "species": data.species, **fit}
    if trainer.dist.main:
        best = load_checkpoint(config.run_dir / "best.ckpt")
        weights = "ema" if best.get("ema") is not None else "model"
        model.load_state_dict(best[weights])
        # The per-atom shift is a buffer, not a trained parameter: refit it in closed form to the trained
        # model on training frames, so that a constant energy offset left by a force-dominated loss does
        # not show up as energy error. best.ckpt keeps the same shift as the exported file.
        center_energy_shift(model, data.splits["train"][:128])
        best[weights] = model.state_dict()
        save_atomic(best, config.run_dir / "best.ckpt")
        metrics = {split: evaluate(model, graphs) for split, graphs in data.splits.items() if graphs}
        model_path = export_model(
            model, config.run_dir / "model.nnp.pt", dtype=export_dtype,
            provenance={"config": config.to_dict(), "dataset": config.data.path, "test_metrics": metrics.get("test"),
                        "epochs": fit["epochs"], "pretrained_from": config.finetune.from_checkpoint},
        )
        summary.update({
            "model_file": str(model_path),
            "num_frames": {k: len(v) for k, v in data.splits.items()},
            "num_parameters": sum(p.numel() for p in model.parameters()),
            "metrics": metrics,
        })
        (config.run_dir / "results.json").write_text(json.dumps(summary, indent=2))
        summary["table"] = format_metrics_table(metrics)
    return summary


def run_pretraining(config: RunConfig, progress: bool = True) -> dict[str, Any]:
    """`nnp pretrain`: self-supervised pretraining of a backbone with a vector head on unlabelled frames."""
    from ..data.molecules import find_molecules

    data = prepare_data(config, progress, labelled=False)
    molecules, symbols = {}, {}
    for split, graphs in data.splits.items():
        for graph, atoms in zip(graphs, data.frames[split]):
            molecules[id(graph)] = find_molecules(atoms, config.pretrain.bond_scale)
            symbols[id(graph)] = atoms.get_chemical_symbols()
    torch.manual_seed(config.train.seed)
    backbone = build_backbone(config.model, len(data.species), data.avg_num_neighbors)
    model = PretrainModel(backbone, config.model.cutoff).to(DTYPES[config.train.dtype])
    augment = config.train.rotation_augmentation
    augment = (not ROTATION_INVARIANT[config.model.kind]) if augment is None else augment
    task = PretrainTask(config.pretrain, molecules, symbols, augment)
    trainer = Trainer(config, model, data, task=task, progress=progress,
                      model_init={"kind": "pretrain", "task": config.pretrain.task, "species": data.species,
                                  "avg_num_neighbors": data.avg_num_neighbors})
    fit = trainer.fit()
    summary = {"name": config.name, "task": config.pretrain.task, "species": data.species,
               "checkpoint": str(config.run_dir / "best.ckpt"), **fit}
    if trainer.dist.main:
        (config.run_dir / "results.json").write_text(json.dumps(summary, indent=2))
    return summary

"""The training loop: epochs of optimiser steps, validation, checkpoints, early stopping, time limit.

A run directory holds ``last.ckpt`` (every epoch), ``best.ckpt`` (best validation loss), ``metrics.csv``
and ``learning_curves.png``; rank 0 writes them, every rank reads ``last.ckpt`` to resume. The data
order and every random transform depend only on (seed, epoch, frame) (:mod:`nnp.train.loader`), so an
interrupted and resumed run, or N processes with the same global batch, follow the same trajectory.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch
from tqdm.auto import tqdm

from ..config import RunConfig, config_changes
from ..errors import UserError
from .checkpoint import load_checkpoint, save_atomic
from .data import GraphDataset, TrainingData
from .distributed import Distributed
from .ema import EMA
from .finetune import parameter_groups, set_backbone_frozen
from .loader import EvaluationSampler, GlobalBatchSampler, evenly_spaced, make_loader
from .tasks import EnergyForceTask, augment_rotations


class TaskLoss(nn.Module):
    """``forward(batch) -> loss`` of a task: the module that DDP wraps (its parameters are the model's)."""

    def __init__(self, model: nn.Module, task):
        super().__init__()
        self.model = model
        self.task = task

    def forward(self, batch: Batch) -> Tensor:
        return self.task.loss(self.model, batch)


def configure_precision(tf32: bool) -> None:
    """TF32 matrix products on CUDA when asked (float32 models only; float64 is never affected)."""
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


# what a resumed run may change: how long and where it runs, not what it computes
RESUMABLE_CHANGES = {"name", "output_dir", "train.epochs", "train.time_limit_minutes", "train.cpu_limit_minutes",
                     "train.early_stopping_patience", "train.num_workers", "train.device"}


def check_resumable(saved: dict | None, current: dict, run_dir: Path) -> None:
    """A ``last.ckpt`` is resumed only by the settings that made it (a run under a changed recipe would
    silently continue the old run's weights and optimiser state)."""
    if saved is None:
        return
    changes = config_changes(*(json.loads(json.dumps(c, default=str)) for c in (saved, current)))
    changed = [k for k in changes if k not in RESUMABLE_CHANGES]
    if changed:
        shown = ", ".join(f"{k}: {changes[k][0]!r} -> {changes[k][1]!r}" for k in changed[:4])
        raise UserError(f"{run_dir} holds a run made with other settings ({shown}{', ...' if len(changed) > 4 else ''}); "
                        f"resume it with its own settings, or train into another output_dir (or delete {run_dir})")


class Trainer:
    """Optimises ``model`` for ``task`` on the splits of ``data``."""

    def __init__(self, config: RunConfig, model: nn.Module, data: TrainingData, task=None, progress: bool = True,
                 model_init: dict[str, Any] | None = None):
        task = task or EnergyForceTask(config.train, augment_rotations(config))
        self.config, self.t, self.data, self.task = config, config.train, data, task
        self.dist = Distributed(self.t.device)
        configure_precision(self.t.tf32)
        self.model = model.to(self.dist.device)
        self.progress = progress and self.dist.main
        self.model_init = model_init or {"kind": "potential", "species": data.species,
                                         "avg_num_neighbors": data.statistics.avg_num_neighbors}
        self.run_dir = config.run_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)
        factor = config.finetune.backbone_lr_factor if config.finetune.from_checkpoint else 1.0
        optim_cls = torch.optim.AdamW if self.t.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = optim_cls(parameter_groups(model, self.t.lr, factor), lr=self.t.lr,
                                   weight_decay=self.t.weight_decay)
        self.scheduler = self._make_scheduler()
        self.ema = EMA(model, self.t.ema_decay) if self.t.ema_decay else None
        self.train_set = data.splits["train"].with_transform(task.transform)
        self.sampler = GlobalBatchSampler(len(self.train_set), self.t.batch_size, self.t.seed,
                                          self.dist.rank, self.dist.world)
        self.loader = make_loader(self.train_set, self.sampler, self.t.num_workers, self.dist.device.type == "cuda")
        self.epoch = 0
        self.best_val = math.inf
        self.epochs_since_best = 0
        self.history: list[dict[str, float]] = []
        self.step_model: nn.Module | None = None
        self.frozen: bool | None = None

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
        device = self.dist.device
        self.model.load_state_dict(checkpoint["model"])
        if self.ema is not None and checkpoint.get("ema") is not None:
            self.ema.state = {k: v.to(device) for k, v in checkpoint["ema"].items()}
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.scheduler is not None and checkpoint["scheduler"] is not None:
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.epoch = int(checkpoint["epoch"])
        self.best_val = float(checkpoint["best_val"])
        self.epochs_since_best = int(checkpoint["epochs_since_best"])
        self.history = list(checkpoint["history"])

    def evaluation_model(self) -> nn.Module:
        """The model whose weights are validated and exported: the EMA weights when EMA is on."""
        return self.model if self.ema is None else self.ema.model(self.model)

    def refit(self) -> nn.Module:
        """Refit the task's closed-form parts (the energy shift) of the trained and of the validated weights;
        returns the model to validate."""
        if not self.t.refit_energy_shift:
            return self.evaluation_model()
        train = self.data.splits["train"]
        self.task.refit(self.model, train)
        evaluated = self.evaluation_model()
        if evaluated is not self.model:
            self.task.refit(evaluated, train)
            self.ema.state = {k: v.detach().clone() for k, v in evaluated.state_dict().items()}
        return evaluated

    # -- one epoch -----------------------------------------------------------------------------
    def _prepare_epoch(self) -> nn.Module:
        """Freeze or release the backbone for this epoch; (re)wrap for DDP when the trainable set changed."""
        f = self.config.finetune
        frozen = bool(f.from_checkpoint) and self.epoch < f.freeze_backbone_epochs
        if frozen != self.frozen or self.step_model is None:
            set_backbone_frozen(self.model, frozen)
            self.step_model = self.dist.wrap(TaskLoss(self.model, self.task))
            self.frozen = frozen
        return self.step_model

    def train_epoch(self, stop: Callable[[], bool] | None = None) -> dict[str, float]:
        """One pass over the training split: mean loss, and where the time went (waiting for data or not).
        ``stop``: asked after every step (rank 0's answer counts); True ends the pass there (a time limit)."""
        step_model = self._prepare_epoch()
        self.model.train()
        self.sampler.set_epoch(self.epoch)
        total, count, atoms = 0.0, 0, 0
        device = self.dist.device
        bar = tqdm(self.loader, desc=f"epoch {self.epoch + 1}", disable=not self.progress, leave=False)
        start = waited = time.perf_counter()
        waiting, steps = 0.0, 0
        for batch in bar:
            waiting += time.perf_counter() - waited
            batch = batch.to(device, non_blocking=True)
            loss = step_model(batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.t.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.t.grad_clip)
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(self.model)
            total += float(loss.detach()) * batch.num_graphs  # float(): waits for the device
            count += batch.num_graphs
            atoms += batch.num_nodes
            bar.set_postfix(loss=f"{total / count:.4g}")
            steps += 1
            if stop is not None and self.dist.agree(stop()):
                break
            waited = time.perf_counter()
        seconds = time.perf_counter() - start
        total, count, atoms = self.dist.sum([total, float(count), float(atoms)])
        return {"train_loss": total / max(count, 1.0), "epoch_fraction": steps / max(len(self.loader), 1),
                "train_seconds": seconds,
                "data_wait_fraction": waiting / max(seconds, 1e-12), "atoms_per_second": atoms / max(seconds, 1e-12)}

    def evaluate(self, model: nn.Module, dataset: GraphDataset, max_frames: int | None = None) -> dict[str, float]:
        """The task's metrics on ``dataset`` (at most ``max_frames`` evenly spaced frames), spread over the
        processes."""
        dataset = dataset.with_transform(self.task.eval_transform)
        frames = evenly_spaced(len(dataset), max_frames)
        sampler = EvaluationSampler(frames, max(self.t.batch_size, 8), self.dist.rank, self.dist.world)
        loader = make_loader(dataset, sampler, self.t.num_workers, self.dist.device.type == "cuda")
        model.eval()
        totals = [0.0] * self.task.num_totals
        for batch in loader:
            values = self.task.evaluate_batch(model, batch.to(self.dist.device))
            totals = [a + b for a, b in zip(totals, values)]
        return self.task.summarize(self.dist.sum(totals))

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, max_epochs: int | None = None) -> dict[str, Any]:
        """Train until ``train.epochs`` (or ``max_epochs`` more epochs), early stopping or the time limit."""
        last = self.run_dir / "last.ckpt"
        if last.exists():
            checkpoint = load_checkpoint(last)
            check_resumable(checkpoint.get("config"), self.config.to_dict(), self.run_dir)
            self.restore(checkpoint)
        # the time limits are the run's total: epochs restored from a checkpoint count (a killed epoch is lost)
        start_time = time.monotonic() - sum(row.get("seconds", 0.0) for row in self.history)
        start_cpu = time.process_time() - sum(row.get("cpu_seconds", 0.0) for row in self.history)
        stop_epoch = self.t.epochs if max_epochs is None else min(self.t.epochs, self.epoch + max_epochs)
        reason = "epochs"
        limit = 60 * self.t.time_limit_minutes if self.t.time_limit_minutes else None
        cpu_limit = 60 * self.t.cpu_limit_minutes if self.t.cpu_limit_minutes else None
        desc = self.task.name + (f" (stops within {self.t.time_limit_minutes:g} min)" if limit else "") + (
            f" (stops within {self.t.cpu_limit_minutes:g} CPU min)" if cpu_limit else "")
        epoch_bar = tqdm(total=self.t.epochs, initial=self.epoch, desc=desc, disable=not self.progress)

        def past_a_limit() -> bool:  # checked after every step too: an epoch longer than the limit stops inside
            return ((limit is not None and time.monotonic() - start_time > limit)
                    or (cpu_limit is not None and time.process_time() - start_cpu > cpu_limit))

        while self.epoch < stop_epoch:
            tick, cpu_tick = time.monotonic(), time.process_time()
            epoch = self.train_epoch(past_a_limit if limit or cpu_limit else None)
            val_set = self.data.splits["val"] if len(self.data.splits["val"]) else self.data.splits["train"]
            val_metrics = self.evaluate(self.refit(), val_set)
            val_loss = val_metrics["loss"]
            lr = self.optimizer.param_groups[-1]["lr"]
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(val_loss)
            elif self.scheduler is not None:
                self.scheduler.step()
            self.epoch += 1
            self.history.append({"epoch": self.epoch, "lr": lr, **epoch, "val_loss": val_loss,
                                 **{f"val_{k}": v for k, v in val_metrics.items() if k != "loss"},
                                 "seconds": time.monotonic() - tick, "cpu_seconds": time.process_time() - cpu_tick})
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
            now, cpu_now = time.monotonic(), time.process_time()
            over_time = limit is not None and (now - start_time) + (now - tick) > limit
            over_cpu = cpu_limit is not None and (cpu_now - start_cpu) + (cpu_now - cpu_tick) > cpu_limit
            if self.dist.agree(over_time or over_cpu):
                reason = "time limit" if over_time else "cpu limit"
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

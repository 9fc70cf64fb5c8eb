"""`nnp train`, `nnp finetune` and `nnp pretrain` as functions: data, model, fit, test, export.

This module is the stable Python entry point; the engine's parts live beside it, one job each:
:mod:`.data` (frames -> graph datasets, statistics), :mod:`.loader` (batches over processes),
:mod:`.distributed` (processes, devices, DDP), :mod:`.loop` (the epochs), :mod:`.tasks` (losses),
:mod:`.finetune` (backbone/head transfer), :mod:`.shift` (energy shift), :mod:`.checkpoint`, :mod:`.ema`.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch_geometric.data import Batch

from ..config import RunConfig, TrainConfig
from ..models.build import build_backbone, build_potential, check_architecture
from ..models.heads import ForcePretrainModel, PretrainModel
from ..models.potential import Potential
from ..pretrained import check_elements
from .checkpoint import load_checkpoint, model_from_checkpoint, save_atomic
from .data import DTYPES, GraphDataset, TrainingData, prepare_data
from .distributed import choose_device
from .finetune import load_pretrained_backbone
from .loop import Trainer
from .predict import format_metrics_table
from .scale_fit import fit_scales_on_data
from .shift import center_energy_shift
from .tasks import EnergyForceTask, PretrainTask, augment_rotations

TRAIN_METRIC_FRAMES = 10_000  # the training-split errors of a large dataset come from this many frames

__all__ = ["Trainer", "evaluate", "load_checkpoint", "model_for_data", "model_from_checkpoint", "prepare_data",
           "run_pretraining", "run_training"]


def check_run(config: RunConfig) -> None:
    """Mistakes a config can hold that are found before any data is read: architecture, device."""
    check_architecture(config.model.kind)
    choose_device(config.train.device)


def model_for_data(config: RunConfig, data: TrainingData) -> Potential:
    """A freshly initialised potential (weights drawn from ``train.seed``) with the data's statistics."""
    torch.manual_seed(config.train.seed)
    stats = data.statistics
    ref = None if stats.reference_energies is None else torch.tensor(stats.reference_energies)
    model = build_potential(config.model, data.species, avg_num_neighbors=stats.avg_num_neighbors,
                            reference_energies=ref, scale=stats.force_scale).to(DTYPES[config.train.dtype])
    fit_scales_on_data(model.backbone, data.splits["train"], config.train.seed)  # GemNet-T only
    if stats.reference_energies is not None:
        center_energy_shift(model, data.splits["train"])
    return model


def evaluate(model: Potential, dataset: GraphDataset, batch_size: int = 8) -> dict[str, float]:
    """Energy/atom and force MAE/RMSE of ``model`` on ``dataset`` (one process, the model's device)."""
    task = EnergyForceTask(TrainConfig(), False)
    device = next(model.parameters()).device
    totals = [0.0] * task.num_totals
    for start in range(0, len(dataset), batch_size):
        graphs = [dataset.graph(k) for k in range(start, min(start + batch_size, len(dataset)))]
        values = task.evaluate_batch(model, Batch.from_data_list(graphs).to(device))
        totals = [a + b for a, b in zip(totals, values)]
    metrics = task.summarize(totals)
    metrics.pop("loss")
    return metrics


def run_training(config: RunConfig, progress: bool = True, export_dtype: str = "float64") -> dict[str, Any]:
    """`nnp train` / `nnp finetune`: data, model (optionally from a pretrained backbone), fit, test, export."""
    from ..export import export_model

    check_run(config)
    pretrained = None
    if config.finetune.from_checkpoint:
        pretrained = load_checkpoint(config.finetune.from_checkpoint)["model_init"]
    data = prepare_data(config, progress, species=pretrained["species"] if pretrained else None)
    if pretrained:  # the backbone's message normalisation must stay what it was pretrained with
        data.statistics.avg_num_neighbors = pretrained["avg_num_neighbors"]
        if not config.finetune.allow_new_elements:
            check_elements(pretrained["species"], data.species, f"the model of {config.finetune.from_checkpoint}")
    model = model_for_data(config, data)
    if config.finetune.from_checkpoint and not (config.run_dir / "last.ckpt").exists():
        load_pretrained_backbone(model, config.finetune.from_checkpoint, config.finetune.reinit_readout)
        center_energy_shift(model, data.splits["train"])  # for the pretrained weights
    trainer = Trainer(config, model, data, EnergyForceTask(config.train, augment_rotations(config)), progress)
    fit = trainer.fit()
    summary: dict[str, Any] = {"name": config.name, "species": data.species, **fit,
                               "pretrained_from": config.finetune.from_checkpoint}
    best = load_checkpoint(config.run_dir / "best.ckpt")  # every process: the test is spread over them
    weights = "ema" if best.get("ema") is not None else "model"
    model.load_state_dict(best[weights])
    # The per-atom shift is a buffer, not a trained parameter: refit it in closed form to the trained
    # model on training frames, so that a constant energy offset left by a force-dominated loss does
    # not show up as energy error. best.ckpt keeps the same shift as the exported file.
    center_energy_shift(model, data.splits["train"], frames=128)
    trainer.dist.barrier()  # every process has read best.ckpt before rank 0 rewrites it
    metrics = {}
    for split, dataset in data.splits.items():
        if len(dataset):
            cap = TRAIN_METRIC_FRAMES if split == "train" else None
            metrics[split] = {k: v for k, v in trainer.evaluate(model, dataset, cap).items() if k != "loss"}
    if not trainer.dist.main:
        return summary
    best[weights] = model.state_dict()
    save_atomic(best, config.run_dir / "best.ckpt")
    model_path = export_model(
        model, config.run_dir / "model.nnp.pt", dtype=export_dtype,
        provenance={"config": config.to_dict(), "dataset": config.data.path, "test_metrics": metrics.get("test"),
                    "epochs": fit["epochs"], "pretrained_from": config.finetune.from_checkpoint},
    )
    summary.update({
        "model_file": str(model_path),
        "num_frames": {k: len(v) for k, v in data.splits.items()},
        "train_metrics_frames": min(len(data.splits["train"]), TRAIN_METRIC_FRAMES),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "metrics": metrics,
    })
    (config.run_dir / "results.json").write_text(json.dumps(summary, indent=2))
    summary["table"] = format_metrics_table(metrics)
    return summary


def run_pretraining(config: RunConfig, progress: bool = True) -> dict[str, Any]:
    """`nnp pretrain`: self-supervised pretraining on unlabelled frames.

    Target ``force``: a whole potential (no data statistics: scale 1, no reference energies) inside
    :class:`ForcePretrainModel`, pretrained through its own forces. Target ``vector_head``: a backbone
    with a separate vector head.
    """
    check_run(config)
    data = prepare_data(config, progress, labelled=False, with_molecules=True)
    torch.manual_seed(config.train.seed)
    p = config.pretrain
    if p.target == "force":
        potential = build_potential(config.model, data.species, avg_num_neighbors=data.statistics.avg_num_neighbors)
        model = ForcePretrainModel(potential, p.mask_embedding and p.task != "denoise")
    else:
        backbone = build_backbone(config.model, len(data.species), data.statistics.avg_num_neighbors)
        model = PretrainModel(backbone, config.model.cutoff)
    model = model.to(DTYPES[config.train.dtype])
    fit_scales_on_data(potential.backbone if p.target == "force" else backbone, data.splits["train"],
                       config.train.seed)  # GemNet-T only
    task = PretrainTask(p, data.species, augment_rotations(config))
    trainer = Trainer(config, model, data, task, progress,
                      model_init={"kind": "pretrain", "task": p.task, "target": p.target, "species": data.species,
                                  "avg_num_neighbors": data.statistics.avg_num_neighbors})
    fit = trainer.fit()
    summary = {"name": config.name, "task": config.pretrain.task, "species": data.species,
               "checkpoint": str(config.run_dir / "best.ckpt"), **fit}
    if trainer.dist.main:
        (config.run_dir / "results.json").write_text(json.dumps(summary, indent=2))
    return summary

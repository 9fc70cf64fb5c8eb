"""Transfer between tasks: optimiser groups, freezing and pretrained weights, all from the declared head.

Every model says which of its modules are the task head (``model.head_prefixes()``, from each
backbone's ``HEAD``); every other parameter is the transferable backbone.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from torch import nn

from ..config import RunConfig, apply_overrides, config_from_dict

from ..models.potential import Potential, is_head
from .checkpoint import CheckpointError, load_checkpoint


def split_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(backbone, head) parameters of ``model`` by its declared head."""
    prefixes = model.head_prefixes()
    backbone, head = [], []
    for name, parameter in model.named_parameters():
        (head if is_head(name, prefixes) else backbone).append(parameter)
    return backbone, head


def parameter_groups(model: nn.Module, lr: float, backbone_lr_factor: float = 1.0) -> list[dict[str, Any]]:
    """Two optimiser groups: the backbone at ``lr * backbone_lr_factor``, the head at ``lr``."""
    backbone, head = split_parameters(model)
    return [{"params": backbone, "lr": lr * backbone_lr_factor, "name": "backbone"},
            {"params": head, "lr": lr, "name": "head"}]


def set_backbone_frozen(model: nn.Module, frozen: bool) -> None:
    """Freeze (or release) every backbone parameter; the head always trains."""
    backbone, head = split_parameters(model)
    for parameter in backbone:
        parameter.requires_grad_(not frozen)
    for parameter in head:
        parameter.requires_grad_(True)


def load_pretrained_backbone(model: Potential, checkpoint_path: str, reinit_head: bool | None) -> list[str]:
    """Copy the backbone (and, unless ``reinit_head``, the head) of a checkpoint into ``model``.

    The checkpoint may come from pretraining or from training. A ``vector_head`` pretraining checkpoint
    holds a backbone and a vector head (never copied); a ``force`` pretraining checkpoint holds a whole
    potential under ``potential.`` and a mask embedding (never copied): every weight of the backbone,
    energy readout included, transfers (``reinit_head=None`` means: re-initialise the readout only for
    checkpoints that are not force-target pretraining). Reference energies and the shift always come
    from the finetuning data. The force scale (the backbone's output unit) comes from a trained
    potential's checkpoint (its backbone learned energies in that unit: with the new data's scale the
    transferred model would start with every force multiplied by the ratio of the two), and from the
    finetuning data for a self-supervised one (pretrained at scale 1). Species embeddings are matched by
    element symbol, so the finetuning data may have other species. Returns the names of the tensors that
    were transferred.
    """
    checkpoint = load_checkpoint(checkpoint_path)
    source = checkpoint["ema"] if checkpoint.get("ema") is not None else checkpoint["model"]
    meta = checkpoint["model_init"]
    source_species = meta["species"]
    whole_potential = meta.get("kind") == "pretrain" and meta.get("target") == "force"
    if whole_potential:  # the pretraining wrapper's potential; its mask embedding stays behind
        source = {k[len("potential."):]: v for k, v in source.items() if k.startswith("potential.")}
    if reinit_head is None:
        reinit_head = not whole_potential
    target = model.state_dict()
    head = model.head_prefixes()
    transferred = []
    for key, value in source.items():
        if not key.startswith("backbone.") or (reinit_head and is_head(key, head)):
            continue  # pretraining head, reference energies, scale/shift; a re-initialised head
        if key not in target:
            raise CheckpointError(f"pretrained tensor {key} has no counterpart: the architectures differ "
                                  "(the model section of the finetuning config must match the pretraining one)")
        if key.endswith("table.weight") and value.shape[0] == len(source_species):
            rows = target[key].clone()
            for k, symbol in enumerate(model.species):
                if symbol in source_species:
                    rows[k] = value[source_species.index(symbol)]
            value = rows
        if value.shape != target[key].shape:
            raise CheckpointError(f"pretrained tensor {key} has shape {tuple(value.shape)}, the model expects "
                                  f"{tuple(target[key].shape)}: model sizes differ")
        target[key] = value.to(target[key].dtype)
        transferred.append(key)
    if meta.get("kind", "potential") == "potential" and "scale" in source and not reinit_head:
        target["scale"] = source["scale"].to(target["scale"].dtype)
        transferred.append("scale")
    model.load_state_dict(target)
    return transferred


# `nnp finetune --from MODEL --data FILE` without --config: the pretrained run's model and loss weights,
# these settings (docs/training.md, "Finetuning a pretrained model"). Chosen for 10 to 1,000 frames: a
# lower learning rate for the backbone than for the readout, early stopping on the validation split.
FINETUNE_DEFAULTS: dict[str, dict[str, Any]] = {
    "data": {"val_fraction": 0.1, "test_fraction": 0.0, "max_frames": None, "format": None},
    # batch 2 (4 until 2026-12-05): 32.3 against 33.9 meV/Å validation force MAE on aspirin (mean of two
    # splits), lower on ethanol and paracetamol too; lr 3e-4, 3e-3, loss weights and EMA changed nothing or
    # worse (training/experiments/finetune_recipe.sh, RESULTS §12.8)
    "train": {"epochs": 1000, "batch_size": 2, "lr": 1.0e-3, "optimizer": "adamw", "scheduler": "plateau",
              "scheduler_patience": 10, "scheduler_factor": 0.5, "warmup_epochs": 0,
              "early_stopping_patience": 40, "ema_decay": 0.99, "time_limit_minutes": None, "cpu_limit_minutes": None,
              "seed": 0, "config_type_weights": {}},  # per-frame weights belong to the pretraining data, not yours
    # backbone at the head's rate: 34.1 against 41.9 meV/Å (factor 0.3) validation force MAE, organic-xtb on
    # 100 aspirin frames in 2 CPU-min (RESULTS §12.5)
    "finetune": {"backbone_lr_factor": 1.0, "reinit_readout": False, "freeze_backbone_epochs": 0},
}


def finetune_config(checkpoint_path: str | Path, data: str | None, overrides: list[str] | None = None,
                    name: str | None = None) -> RunConfig:
    """The run config of finetuning ``checkpoint_path`` on ``data`` with :data:`FINETUNE_DEFAULTS`.

    The model section (architecture, cutoff) and the loss weights come from the checkpoint's own config;
    ``overrides`` (``section.key=value``) apply last.
    """
    checkpoint = load_checkpoint(checkpoint_path)
    values = copy.deepcopy(checkpoint["config"])
    values.pop("output_dir", None)
    for section, defaults in FINETUNE_DEFAULTS.items():
        values.setdefault(section, {}).update(copy.deepcopy(defaults))
    values["finetune"]["from_checkpoint"] = str(checkpoint_path)
    if data is not None:
        values["data"]["path"] = str(data)
    values["name"] = name or f"finetune-{Path(str(values['data']['path'])).name.split('.')[0]}"
    return config_from_dict(apply_overrides(values, overrides), f"finetuning {checkpoint_path}")

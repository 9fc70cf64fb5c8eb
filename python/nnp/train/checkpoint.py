"""Checkpoints: atomic writes, safe reads (tensors and plain containers only), models rebuilt from them."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..config import config_from_dict
from ..errors import UserError
from ..models.build import build_potential
from ..models.potential import Potential
from .data import DTYPES

CHECKPOINT_KEYS = ("model", "optimizer", "epoch", "config", "model_init")


class CheckpointError(UserError):
    """A file is missing or is not a checkpoint written by nnp."""


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temporary file, fsync, then rename: a kill never leaves a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by the engine, with ``weights_only=True`` (no code runs on load)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (a run directory holds best.ckpt and last.ckpt)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError) as err:
        raise CheckpointError(f"{path} is not an nnp checkpoint ({str(err).splitlines()[0][:120]}); give the "
                              "best.ckpt or last.ckpt of a run directory") from None
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in CHECKPOINT_KEYS):
        raise CheckpointError(f"{path} is a torch file but not an nnp checkpoint (it lacks "
                              f"{', '.join(CHECKPOINT_KEYS)}); give the best.ckpt or last.ckpt of a run directory")
    return checkpoint


def model_from_checkpoint(checkpoint: dict[str, Any], use_ema: bool = True) -> Potential:
    """Rebuild the potential stored in a checkpoint (architecture from its config, weights from it)."""
    config = config_from_dict(checkpoint["config"], "checkpoint")
    meta = checkpoint["model_init"]
    if meta.get("kind", "potential") != "potential":
        raise CheckpointError("this checkpoint holds a pretraining model: finetune it (nnp finetune --from) "
                              "to get a potential")
    model = build_potential(config.model, meta["species"], avg_num_neighbors=meta["avg_num_neighbors"])
    state = checkpoint["ema"] if use_ema and checkpoint.get("ema") is not None else checkpoint["model"]
    model.load_state_dict(state)
    return model.to(DTYPES[config.train.dtype])

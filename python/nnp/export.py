"""Python potential -> one TorchScript model file carrying its metadata (see docs/model_contract.md)."""

from __future__ import annotations

import copy
import datetime
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import torch

from . import __version__, contract
from .errors import UserError
from .models.potential import DirectForcePotential, Potential

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class ModelFileError(UserError):
    """A model file is missing, corrupt, or does not follow the contract."""


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def model_metadata(model: Potential, dtype: str, provenance: dict[str, Any] | None = None) -> dict[str, str]:
    """The metadata strings stored beside the TorchScript code."""
    prov = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        **(provenance or {}),
    }
    return {
        "format_version": str(contract.FORMAT_VERSION),
        "species": " ".join(model.species),
        "cutoff": repr(float(model.cutoff)),
        "num_interactions": str(int(model.num_interactions)),
        "dtype": dtype,
        "units": contract.UNITS,
        "model_kind": model.model_kind,
        "forces": "direct" if isinstance(model, DirectForcePotential) else "conservative",
        "nnp_version": __version__,
        "provenance": json.dumps(prov, default=str),
    }


def export_model(
    model: Potential,
    path: str | Path,
    dtype: str = "float64",
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Script ``model`` in ``dtype`` and write it with its metadata to ``path`` (atomically)."""
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, not {dtype!r}")
    module = copy.deepcopy(model).to(dtype=_DTYPES[dtype], device="cpu").eval()
    for p in module.parameters():
        p.requires_grad_(False)
    scripted = torch.jit.script(module)
    metadata = model_metadata(model, dtype, provenance)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.jit.save(scripted, str(tmp), _extra_files=metadata)
    os.replace(tmp, path)
    return path


def load_exported(path: str | Path, device: str = "cpu") -> tuple[torch.jit.ScriptModule, dict[str, str]]:
    """Load a model file and its metadata, validating both against the contract."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist")
    extra = {key: "" for key in contract.METADATA_KEYS}
    try:
        module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except Exception as err:  # torch raises RuntimeError / ValueError variants for bad archives
        raise ModelFileError(
            f"{path} is not a TorchScript model file (export one with `nnp export`): {str(err).splitlines()[0]}"
        ) from None
    missing = [k for k, v in extra.items() if not v and k != "provenance"]
    if missing:
        raise ModelFileError(f"{path} lacks nnp metadata {', '.join(missing)}: it was not written by nnp export")
    metadata = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in extra.items()}
    if metadata["format_version"] != str(contract.FORMAT_VERSION):
        raise ModelFileError(
            f"{path} has model format version {metadata['format_version']}, this nnp reads "
            f"{contract.FORMAT_VERSION}: upgrade nnp or re-export the model"
        )
    if metadata["units"] != contract.UNITS or metadata["dtype"] not in contract.DTYPES:
        raise ModelFileError(f"{path}: unsupported units {metadata['units']!r} or dtype {metadata['dtype']!r}")
    return module, metadata

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

_DTYPES = dict(zip(contract.DTYPES, (torch.float32, torch.float64)))


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


def halo_metadata(model: Potential) -> tuple[str, int]:
    """(halo mode, receptive hops) that the backbone declares; no declaration means no per-layer halo."""
    halo = getattr(model.backbone, "halo", contract.HALO_NONE)
    if halo not in contract.HALO_MODES:
        raise ValueError(f"backbone declares halo {halo!r}; expected one of {', '.join(contract.HALO_MODES)}")
    return halo, int(getattr(model.backbone, "receptive_hops", model.num_interactions))


def model_metadata(model: Potential, dtype: str, provenance: dict[str, Any] | None = None) -> dict[str, str]:
    """The metadata strings stored beside the TorchScript code (keys: contract.METADATA_KEYS)."""
    prov = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        **(provenance or {}),
    }
    halo, receptive_hops = halo_metadata(model)
    conservative, direct = contract.FORCE_KINDS
    metadata = {
        "format_version": str(contract.FORMAT_VERSION),
        "species": " ".join(model.species),
        "cutoff": repr(float(model.cutoff)),
        "num_interactions": str(int(model.num_interactions)),
        "dtype": dtype,
        "units": contract.UNITS,
        "model_kind": model.model_kind,
        "forces": direct if isinstance(model, DirectForcePotential) else conservative,
        "nnp_version": __version__,
        "provenance": json.dumps(prov, default=str),
        "halo": halo,
        "receptive_hops": str(receptive_hops),
    }
    assert tuple(metadata) == contract.METADATA_KEYS, "model_metadata out of step with nnp.contract"
    return metadata


def check_halo_ops(model: Potential) -> None:
    """A per-layer-halo model exports only with the C++ halo ops: the Python stand-ins are identities,
    and a compiled file would carry the identity and give wrong forces on several LAMMPS ranks."""
    from .nn import halo

    if halo_metadata(model)[0] == contract.HALO_PER_LAYER and halo.IDENTITY_OPS:
        raise UserError("exporting a model with per-layer halo exchange needs nnp's C++ extension (the halo ops "
                        "are identity stand-ins without it): install nnp with `pip install --no-build-isolation -e .`")


FORMATS = ("torchscript", "pt2")


def file_format(path: str | Path, format: str | None = None) -> str:
    """``format`` if given, else by suffix: ``.pt2`` -> ``pt2`` (AOTInductor), anything else -> TorchScript."""
    chosen = format or ("pt2" if str(path).endswith(".pt2") else "torchscript")
    if chosen not in FORMATS:
        raise UserError(f"format must be one of {', '.join(FORMATS)}, not {chosen!r}")
    if (chosen == "pt2") != str(path).endswith(".pt2"):
        wanted = contract.PT2_SUFFIX if chosen == "pt2" else f"{contract.MODEL_SUFFIX}, not .pt2"
        raise UserError(f"a {chosen} model file must end in {wanted} (file {Path(path).name!r}): "
                        "rename the output (the readers choose the format by suffix)")
    return chosen


def export_model(
    model: Potential,
    path: str | Path,
    dtype: str = "float64",
    provenance: dict[str, Any] | None = None,
    format: str | None = None,
    device: str | None = None,
    portable: bool = False,
) -> Path:
    """Write ``model`` in ``dtype`` with its metadata to ``path`` (atomically).

    ``format``: ``"torchscript"`` (scripted, ``.nnp.pt``) or ``"pt2"`` (``torch.export`` + AOTInductor,
    ``.nnp.pt2``, compiles C++ for a minute or more); by default chosen by the suffix of ``path``.
    ``device``: for ``pt2``, the device type the package is compiled for and runs on (``cpu``, the default,
    or ``cuda``); a TorchScript file runs on any device and takes none. ``portable``: a CPU ``pt2`` compiled
    for every x86-64 CPU with AVX2 (x86-64-v3) instead of this machine's instruction set (files to share).
    """
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, not {dtype!r}")
    chosen = file_format(path, format)
    if device is not None and chosen != "pt2":
        raise UserError(f"--device {device} applies to .pt2 packages only: a TorchScript file ({path}) runs on "
                        "any device (choose it with pair_style nnp device ...); drop --device or use --format pt2")
    check_halo_ops(model)
    module = copy.deepcopy(model).to(dtype=_DTYPES[dtype], device="cpu").eval()
    for p in module.parameters():
        p.requires_grad_(False)
    metadata = model_metadata(model, dtype, provenance)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if chosen == "pt2":
        from .export_pt2 import write_package

        return write_package(module, path, metadata, _DTYPES[dtype], device or "cpu", portable=portable)
    scripted = torch.jit.script(module)
    tmp = path.with_name(path.name + ".tmp")
    torch.jit.save(scripted, str(tmp), _extra_files=metadata)
    os.replace(tmp, path)
    return path


def load_exported(path: str | Path, device: str = "cpu") -> tuple[Any, dict[str, str]]:
    """Load a model file (TorchScript or .pt2, by suffix; or a bundled model by name) and its metadata, validating
    both against the contract.

    A TorchScript file gives its ``ScriptModule``; a ``.pt2`` package gives a
    :class:`nnp.export_pt2.CompiledModel` called the same way, on the device type it was compiled for.
    """
    from .pretrained import resolve_file

    path = resolve_file(path)  # a file, or a bundled model's name
    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist")
    if file_format(path) == "pt2":
        return _load_pt2(path, device)
    extra = {key: "" for key in contract.METADATA_KEYS}
    try:
        module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except Exception as err:  # torch raises RuntimeError / ValueError variants for bad archives
        raise ModelFileError(
            f"{path} is not a TorchScript model file (export one with `nnp export`): {str(err).splitlines()[0]}"
        ) from None
    metadata = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in extra.items()}
    return module, check_metadata(path, metadata)


def extension():
    """The C++ extension (``nnp._evaluator``): the evaluator LAMMPS runs, the one owner of metadata validation
    and ``.pt2`` running; an unbuilt extension is a :class:`UserError` saying how to build it."""
    try:
        from . import _evaluator
    except ImportError as err:
        raise UserError(f"nnp's C++ extension is not built ({err}): install nnp with "
                        "`pip install --no-build-isolation -e .` (scripts/setup.sh does)") from None
    return _evaluator


def _load_pt2(path: Path, device: str) -> tuple[Any, dict[str, str]]:
    """A ``.pt2`` package runs through the C++ evaluator pair_style nnp uses (its loader pads small graphs)."""
    from .export_pt2 import CompiledModel

    cpp = extension()
    try:
        evaluator = cpp.Evaluator(str(path), device)
    except cpp.ModelError as err:  # not a package, compiled for another device, bad metadata, ...
        raise ModelFileError(str(err)) from None
    return CompiledModel(evaluator), dict(evaluator.metadata)


def check_metadata(path: Path, metadata: dict[str, str]) -> dict[str, str]:
    """Validate the metadata strings of a model file with the C++ validator pair_style nnp uses
    (``read_model_info`` in pair_nnp/evaluator.cpp); every contract key, version-1 gaps filled. Without the
    extension (a pure-Python install) only the basic checks run."""
    try:
        from . import _evaluator as cpp
    except ImportError:  # a pure-Python install (backend="python"): the contract's basic checks only
        return _basic_metadata_check(path, metadata)
    try:
        return dict(cpp.check_metadata(str(path), metadata))
    except cpp.ModelError as err:
        raise ModelFileError(str(err)) from None


def _basic_metadata_check(path: Path, metadata: dict[str, str]) -> dict[str, str]:
    """Version, required keys, units and dtype, for when the C++ validator is not built."""
    version = metadata["format_version"]
    if version and version not in map(str, contract.READABLE_FORMAT_VERSIONS):
        raise ModelFileError(f"{path} has model format version {version}, this nnp reads "
                             f"{' and '.join(map(str, contract.READABLE_FORMAT_VERSIONS))}: upgrade nnp or re-export the model")
    optional = {"provenance"} | (set(contract.METADATA_KEYS_SINCE_V2) if version == "1" else set())
    missing = [k for k, v in metadata.items() if not v and k not in optional]
    if missing:
        raise ModelFileError(f"{path} lacks nnp metadata ({', '.join(missing)}): it was not written by nnp export")
    if version == "1":  # no per-layer halo, the receptive field is one cutoff per layer
        metadata = {**metadata, "halo": contract.HALO_NONE, "receptive_hops": metadata["num_interactions"]}
    if metadata["units"] != contract.UNITS or metadata["dtype"] not in contract.DTYPES:
        raise ModelFileError(f"{path}: unsupported units {metadata['units']!r} or dtype {metadata['dtype']!r}")
    return metadata

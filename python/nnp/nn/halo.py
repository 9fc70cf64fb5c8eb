"""The halo operation of model contract version 2 (docs/model_contract.md, "Halo exchange").

A model that supports per-layer exchange calls ``halo(x, layer)`` after each message-passing layer on
every per-node tensor that later layers read. Outside LAMMPS (training, ASE, one rank) it is the
identity, and so is its gradient. Inside a multi-rank LAMMPS run the pair style makes it copy the rows
of ghost atoms from their owners (LAMMPS forward communication); its backward adds the ghost rows'
gradients to their owners (reverse communication).

The ops ``nnp::halo`` and ``nnp::halo_reverse`` are defined once, in C++ (``pair_nnp/halo.cpp``,
compiled into ``libnnp_core.so``), so that a TorchScript file calls the same registered op in Python
and in LAMMPS and a ``torch.export`` graph can carry it (it has a Meta kernel). Where the extension is
not built, an identity op of the same schema is defined here instead.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import Tensor

CORE_LIBRARY = "libnnp_core.so"


def _core_library() -> Path | None:
    spec = importlib.util.find_spec("nnp._evaluator")
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).with_name(CORE_LIBRARY)
    return path if path.exists() else None


IDENTITY_OPS = False  # True when the stand-ins below are registered instead of the C++ ops


def _define_identity_ops() -> None:
    """Pure-Python stand-ins (identity, identity gradient) for an unbuilt extension."""
    library = torch.library.Library("nnp", "DEF")
    library.define("halo(Tensor x, int layer) -> Tensor")
    library.define("halo_reverse(Tensor grad, int layer) -> Tensor")
    library.impl("halo", lambda x, layer: x.clone(), "CompositeImplicitAutograd")
    library.impl("halo_reverse", lambda grad, layer: grad.clone(), "CompositeImplicitAutograd")
    _define_identity_ops.library = library  # keep the registration alive


def _load_ops() -> None:
    if hasattr(torch.ops.nnp, "halo"):
        return
    path = _core_library()
    if path is not None:
        torch.ops.load_library(str(path))
    else:
        global IDENTITY_OPS
        _define_identity_ops()
        IDENTITY_OPS = True


_load_ops()


def halo(x: Tensor, layer: int) -> Tensor:
    """Rows of ghost nodes <- their owners' rows (identity outside a multi-rank LAMMPS run)."""
    return torch.ops.nnp.halo(x, layer)

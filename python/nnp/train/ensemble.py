"""`nnp train --ensemble k`: k members that differ only in their seed, for model deviation in MD.

Member i trains with ``train.seed = seed + i`` in ``<run_dir>/member<i>`` (each resumable on its
own) and is exported there as ``model.nnp.pt``. Member 0 is meant to drive the dynamics, the others
to run beside it (``pair_style nnp ensemble ...``, docs/pair_style.md).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from ..config import RunConfig


def member_config(config: RunConfig, index: int) -> RunConfig:
    """The config of member ``index``: same data and model, seed + index, its own run directory."""
    member = copy.deepcopy(config)
    member.train.seed = config.train.seed + index
    member.output_dir = str(config.run_dir / f"member{index}")
    member.name = f"{config.name}-member{index}"
    return member


def ensemble_pair_style(model_files: list[str | Path], out_freq: int = 10) -> str:
    """The LAMMPS lines that run member 0 with the others beside it (elements left as ...)."""
    others = " ".join(str(f) for f in model_files[1:])
    return (f"pair_style nnp ensemble {others} out_freq {out_freq} out_file model_devi.out\n"
            f"pair_coeff * * {model_files[0]} <one element per atom type>")


def run_ensemble_training(config: RunConfig, members: int, progress: bool = True,
                          export_dtype: str = "float64") -> list[dict[str, Any]]:
    """Train ``members`` models one after the other; returns each member's run_training summary."""
    from .trainer import run_training

    if members < 2:
        raise ValueError(f"an ensemble needs at least 2 members, got {members}")
    return [run_training(member_config(config, k), progress=progress, export_dtype=export_dtype)
            for k in range(members)]

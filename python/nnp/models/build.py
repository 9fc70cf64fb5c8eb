"""Config -> model. The only place that knows which architectures exist."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..config import ModelConfig
from .egnn import EGNN
from .potential import Potential

ARCHITECTURES = ("egnn",)


def build_backbone(config: ModelConfig, num_species: int, avg_num_neighbors: float) -> nn.Module:
    if config.kind == "egnn":
        return EGNN(
            num_species=num_species,
            cutoff=config.cutoff,
            hidden=config.hidden,
            layers=config.layers,
            num_rbf=config.num_rbf,
            update_vectors=config.update_vectors,
            avg_num_neighbors=avg_num_neighbors,
        )
    raise ValueError(f"unknown model kind {config.kind!r}; available: {', '.join(ARCHITECTURES)}")


def build_potential(
    config: ModelConfig,
    species: Sequence[str],
    avg_num_neighbors: float = 20.0,
    reference_energies: torch.Tensor | None = None,
    scale: float = 1.0,
    shift: float = 0.0,
) -> Potential:
    """Assemble a :class:`Potential` from a model config and dataset statistics."""
    backbone = build_backbone(config, len(species), avg_num_neighbors)
    return Potential(
        backbone,
        species=list(species),
        cutoff=config.cutoff,
        num_interactions=config.layers,
        model_kind=config.kind,
        reference_energies=reference_energies,
        scale=scale,
        shift=shift,
    )

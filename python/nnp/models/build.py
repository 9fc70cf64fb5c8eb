"""Config -> model. The only place that knows which architectures exist."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..config import ConfigError, ModelConfig
from .egnn import EGNN
from .gemnet import GemNetDT
from .gemnet_t import GemNetT
from .gns import GNS
from .painn import PaiNN
from .potential import DirectForcePotential, Potential

ARCHITECTURES = ("egnn", "gns", "painn", "gemnet_t", "gemnet_dt")
ROTATION_INVARIANT = {"egnn": True, "gns": False, "painn": True, "gemnet_t": True, "gemnet_dt": True}


def check_architecture(kind: str) -> None:
    """A clear error for a model kind nnp does not have."""
    if kind not in ARCHITECTURES:
        raise ConfigError(f"model.kind {kind!r} is not an nnp architecture; choose one of {', '.join(ARCHITECTURES)}")


def build_backbone(config: ModelConfig, num_species: int, avg_num_neighbors: float) -> nn.Module:
    check_architecture(config.kind)
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
    if config.kind == "gns":
        return GNS(num_species, cutoff=config.cutoff, hidden=config.hidden, layers=config.layers,
                   num_rbf=config.num_rbf, avg_num_neighbors=avg_num_neighbors)
    if config.kind == "painn":
        return PaiNN(num_species, cutoff=config.cutoff, hidden=config.hidden, layers=config.layers,
                     num_rbf=config.num_rbf, avg_num_neighbors=avg_num_neighbors)
    if config.kind == "gemnet_t":  # as published (nnp.models.gemnet_t); scale factors fitted on data
        return GemNetT(num_species, cutoff=config.cutoff, num_blocks=config.layers, emb_atom=config.hidden,
                       emb_edge=config.hidden, emb_trip=config.emb_trip, emb_rbf=config.emb_rbf,
                       emb_cbf=config.emb_cbf, emb_bil_trip=config.emb_bil_trip,
                       num_spherical=config.num_spherical, num_radial=config.num_radial,
                       num_before_skip=config.num_before_skip, num_after_skip=config.num_after_skip,
                       num_concat=config.num_concat, num_atom=config.num_atom,
                       envelope_exponent=config.envelope_exponent)
    if config.kind == "gemnet_dt":  # nnp's simplified direct-force variant (nnp.models.gemnet)
        return GemNetDT(num_species, cutoff=config.cutoff, num_blocks=config.layers, emb_atom=config.hidden,
                        emb_edge=config.hidden, emb_trip=config.emb_trip, emb_rbf=config.emb_rbf,
                        emb_cbf=config.emb_cbf, num_spherical=config.num_spherical, num_radial=config.num_radial,
                        avg_num_neighbors=avg_num_neighbors, direct_forces=True)
    raise AssertionError(f"ARCHITECTURES lists {config.kind!r} but build_backbone does not build it")


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
    wrapper = DirectForcePotential if config.kind == "gemnet_dt" else Potential
    return wrapper(
        backbone,
        species=list(species),
        cutoff=config.cutoff,
        num_interactions=config.layers,
        model_kind=config.kind,
        reference_energies=reference_energies,
        scale=scale,
        shift=shift,
    )

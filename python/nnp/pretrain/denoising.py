"""Denoising pretraining: Gaussian noise of width sigma on positions, the model predicts the noise."""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import Data

DEFAULT_SIGMAS = (0.04, 0.2)  # Å, the two values used in the literature


def noisy_graph(graph: Data, sigma: float, generator: torch.Generator) -> Data:
    """Copy of ``graph`` with positions displaced by ``sigma * eps``; ``target_vectors = eps``.

    The edge list is kept (built with the cutoff on the clean structure); the model's envelope still
    weighs each edge by its noisy length, so energies stay smooth.
    """
    eps = torch.randn(graph.pos.shape, generator=generator, dtype=torch.float64).to(graph.pos.dtype)
    out = graph.clone()
    out.pos = graph.pos + sigma * eps
    previous = getattr(graph, "target_mask", None)
    out.target_vectors = eps
    out.target_mask = torch.ones(graph.num_nodes, dtype=torch.bool) if previous is None else previous
    return out


def noise_loss(predicted: Tensor, eps: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error between predicted and true (unit-variance) noise."""
    return ((predicted[mask] - eps[mask]) ** 2).mean()

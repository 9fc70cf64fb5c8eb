"""Atom update and output blocks: ``sum_c m_ca * W rbf_ca`` into atom ``a``, then a residual MLP."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import Dense, dense_stack, he_orthogonal_
from .scaling import ScaleFactor


class AtomUpdate(nn.Module):
    def __init__(self, emb_atom: int, emb_edge: int, emb_rbf: int, num_residual: int):
        super().__init__()
        self.dense_rbf = Dense(emb_rbf, emb_edge, activation=False)
        self.scale_sum = ScaleFactor()
        self.layers = dense_stack(emb_edge, emb_atom, num_residual)

    def aggregate(self, m: Tensor, rbf: Tensor, center: Tensor, num_nodes: int) -> Tensor:
        """(E, D) messages weighted by the radial basis, summed on their centres: (N, D)."""
        x = m * self.dense_rbf(rbf)
        summed = torch.zeros((num_nodes, x.shape[1]), dtype=x.dtype, device=x.device).index_add_(0, center, x)
        return self.scale_sum(m, summed)

    def forward(self, m: Tensor, rbf: Tensor, center: Tensor, num_nodes: int) -> Tensor:
        return self.layers(self.aggregate(m, rbf, center, num_nodes))  # (N, emb_atom)


class OutputBlock(AtomUpdate):
    """Atom update followed by a bias-free linear energy readout (N,)."""

    def __init__(self, emb_atom: int, emb_edge: int, emb_rbf: int, num_residual: int):
        super().__init__(emb_atom, emb_edge, emb_rbf, num_residual)
        self.energy = nn.Linear(emb_atom, 1, bias=False)  # no bias: an atom without edges has zero energy
        he_orthogonal_(self.energy.weight)

    def forward(self, m: Tensor, rbf: Tensor, center: Tensor, num_nodes: int) -> Tensor:
        return self.energy(self.layers(self.aggregate(m, rbf, center, num_nodes))).squeeze(-1)

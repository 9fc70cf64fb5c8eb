"""Per-atom vector head for self-supervised pretraining (masked-atom and denoising targets)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..nn import MLP, GaussianBasis, PolynomialEnvelope


class VectorHead(nn.Module):
    """``v_i = sum_j unit(r_ij) * MLP([h_i, h_j, rbf(d_ij)]) * envelope(d_ij)``.

    Rotation equivariant whenever the node features ``h`` are invariant (EGNN, GemNet); for GNS it
    is as (non-)equivariant as the backbone.
    """

    def __init__(self, feature_size: int, cutoff: float, num_rbf: int = 16, hidden: int = 64):
        super().__init__()
        self.rbf = GaussianBasis(cutoff, num_rbf)
        self.envelope = PolynomialEnvelope(cutoff)
        self.mlp = MLP([2 * feature_size + num_rbf, hidden, 1])

    def forward(self, h: Tensor, edge_index: Tensor, edge_vectors: Tensor) -> Tensor:
        i, j = edge_index[0], edge_index[1]
        distance = torch.sqrt((edge_vectors * edge_vectors).sum(-1) + 1e-12)
        weight = self.mlp(torch.cat([h[i], h[j], self.rbf(distance)], -1)) * self.envelope(distance).unsqueeze(-1)
        vectors = torch.zeros((h.shape[0], 3), dtype=h.dtype, device=h.device)
        return vectors.index_add_(0, i, weight * edge_vectors / distance.unsqueeze(-1))


class PretrainModel(nn.Module):
    """A backbone with a vector head: ``forward(species, edge_index, edge_vectors) -> (N, 3)``."""

    def __init__(self, backbone: nn.Module, cutoff: float):
        super().__init__()
        self.backbone = backbone
        self.head = VectorHead(backbone.feature_size, cutoff)

    def head_prefixes(self) -> tuple[str, ...]:
        """The vector head and the backbone's own (energy) head: neither is part of the transferable backbone."""
        return ("head",) + tuple(f"backbone.{name}" for name in self.backbone.HEAD)

    def forward(self, species: Tensor, edge_index: Tensor, edge_vectors: Tensor) -> Tensor:
        h = self.backbone.node_features(species, edge_index, edge_vectors)
        return self.head(h, edge_index, edge_vectors)

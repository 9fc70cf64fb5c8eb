"""Graph Network-based Simulator (Sanchez-Gonzalez et al. 2020) as an energy backbone.

Encoder-processor-decoder: edges are encoded from the raw relative displacement ``r_ij`` (so the model
is translation and permutation invariant but *not* rotation invariant: rotations are learned from
random-rotation augmentation), the processor is a stack of residual interaction networks with
LayerNorm, and the decoder maps node latents to atomic energies. Messages are multiplied by the
smooth envelope, so energy is continuous at the cutoff.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..nn import MLP, GaussianBasis, PolynomialEnvelope
from ..nn.embedding import SpeciesEmbedding
from ..nn.halo import halo


class InteractionNetwork(nn.Module):
    def __init__(self, hidden: int, norm: float):
        super().__init__()
        self.edge_mlp = nn.Sequential(MLP([3 * hidden, hidden, hidden]), nn.LayerNorm(hidden))
        self.node_mlp = nn.Sequential(MLP([2 * hidden, hidden, hidden]), nn.LayerNorm(hidden))
        self.norm = float(norm)

    def forward(self, h: Tensor, e: Tensor, edge_index: Tensor, envelope: Tensor):
        i, j = edge_index[0], edge_index[1]
        e = e + self.edge_mlp(torch.cat([e, h[i], h[j]], dim=-1))
        messages = e * envelope.unsqueeze(-1)
        aggregated = torch.zeros_like(h).index_add_(0, i, messages) / self.norm
        h = h + self.node_mlp(torch.cat([h, aggregated], dim=-1))
        return h, e


class GNS(nn.Module):
    """GNS energy backbone: ``forward(species, edge_index, edge_vectors) -> (N,)`` atom energies."""

    HEAD = ("decoder",)  # task head: the energy decoder; the rest transfers between tasks
    INPUT_EMBEDDING = "node_encoder.0"  # per-atom input embedding (pretraining adds its mask embedding here)

    def __init__(self, num_species: int, cutoff: float = 5.0, hidden: int = 64, layers: int = 3,
                 num_rbf: int = 16, avg_num_neighbors: float = 20.0):
        super().__init__()
        self.cutoff = float(cutoff)
        self.node_encoder = nn.Sequential(SpeciesEmbedding(num_species, hidden), MLP([hidden, hidden, hidden]),
                                          nn.LayerNorm(hidden))
        self.rbf = GaussianBasis(cutoff, num_rbf)
        self.envelope = PolynomialEnvelope(cutoff)
        self.edge_encoder = nn.Sequential(MLP([3 + num_rbf, hidden, hidden]), nn.LayerNorm(hidden))
        self.processor = nn.ModuleList([InteractionNetwork(hidden, avg_num_neighbors) for _ in range(layers)])
        self.decoder = MLP([hidden, hidden, 1])
        self.num_interactions = layers
        self.feature_size = hidden
        self.halo = "per_layer"  # calls halo() on h after every layer but the last

    def node_features(self, species: Tensor, edge_index: Tensor, edge_vectors: Tensor) -> Tensor:
        distance = torch.sqrt((edge_vectors * edge_vectors).sum(-1) + 1e-12)
        envelope = self.envelope(distance)
        h = self.node_encoder(species)
        e = self.edge_encoder(torch.cat([edge_vectors / self.cutoff, self.rbf(distance)], dim=-1))
        last = len(self.processor) - 1
        for k, block in enumerate(self.processor):
            h, e = block(h, e, edge_index, envelope)
            if k < last:  # edge states e live on edges centred on local atoms: only h crosses ranks
                h = halo(h, k)
        return h

    def forward(self, species: Tensor, edge_index: Tensor, edge_vectors: Tensor) -> Tensor:
        return self.decoder(self.node_features(species, edge_index, edge_vectors)).squeeze(-1)

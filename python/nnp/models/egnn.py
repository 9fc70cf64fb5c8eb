"""E(n)-equivariant graph network (Satorras et al. 2021) as an invariant energy backbone.

Node features ``h`` are invariant; the coordinate update of EGNN is expressed on edge vectors,
``r_ij <- r_ij + u_j - u_i`` with ``u_i = -sum_j r_ij phi_x(m_ij) / n_avg``, which equals updating the
positions ``x <- x + u`` but needs no absolute positions (so periodic images and LAMMPS ghosts behave
the same). Every message is multiplied by the smooth envelope of the *input* distance, so energy and
forces are continuous when an atom crosses the cutoff.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor, nn

from ..nn import MLP, GaussianBasis, PolynomialEnvelope
from ..nn.embedding import SpeciesEmbedding
from ..nn.halo import halo


class EGNNLayer(nn.Module):
    def __init__(self, hidden: int, num_rbf: int, cutoff: float, update_vectors: bool, norm: float):
        super().__init__()
        self.rbf = GaussianBasis(cutoff, num_rbf)
        self.edge_mlp = MLP([2 * hidden + num_rbf, hidden, hidden], activate_last=True)
        self.node_mlp = MLP([2 * hidden, hidden, hidden])
        self.update_vectors = update_vectors
        self.coord_mlp = MLP([hidden, hidden, 1], bias_last=False)
        nn.init.zeros_(self.coord_mlp.net[-1].weight)  # start as plain message passing
        self.norm = float(norm)

    def forward(
        self, h: Tensor, edge_index: Tensor, vectors: Tensor, envelope: Tensor, halo_layer: int = -1
    ) -> Tuple[Tensor, Tensor, Tensor]:
        i, j = edge_index[0], edge_index[1]
        distance = torch.sqrt((vectors * vectors).sum(-1) + 1e-12)
        m = self.edge_mlp(torch.cat([h[i], h[j], self.rbf(distance)], dim=-1)) * envelope.unsqueeze(-1)
        aggregated = torch.zeros_like(h).index_add_(0, i, m) / self.norm
        h = h + self.node_mlp(torch.cat([h, aggregated], dim=-1))
        shift = torch.zeros((h.shape[0], 3), dtype=vectors.dtype, device=vectors.device)
        if self.update_vectors:
            weights = self.coord_mlp(m) * envelope.unsqueeze(-1)
            shift = shift.index_add_(0, i, -vectors * weights) / self.norm
            if halo_layer >= 0:  # ghosts' shifts come from their owners (contract v2)
                shift = halo(shift, halo_layer)
            vectors = vectors + shift[j] - shift[i]
        return h, vectors, shift


class EGNN(nn.Module):
    """EGNN energy backbone: ``forward(species, edge_index, edge_vectors) -> (N,)`` atom energies."""

    HEAD = ("readout",)  # task head: the energy readout; the rest transfers between tasks
    INPUT_EMBEDDING = "embedding"  # per-atom input embedding (pretraining adds its mask embedding here)

    def __init__(
        self,
        num_species: int,
        cutoff: float = 5.0,
        hidden: int = 64,
        layers: int = 3,
        num_rbf: int = 16,
        update_vectors: bool = True,
        avg_num_neighbors: float = 20.0,
    ):
        super().__init__()
        self.embedding = SpeciesEmbedding(num_species, hidden)
        self.envelope = PolynomialEnvelope(cutoff)
        self.layers = nn.ModuleList(
            [EGNNLayer(hidden, num_rbf, cutoff, update_vectors, avg_num_neighbors) for _ in range(layers)]
        )
        self.readout = MLP([hidden, hidden, 1])
        self.num_interactions = layers
        self.feature_size = hidden
        self.halo = "per_layer"  # calls halo() on h and the shifts after every layer but the last

    def node_features(self, species: Tensor, edge_index: Tensor, edge_vectors: Tensor) -> Tensor:
        """Final invariant node features (N, hidden)."""
        distance = torch.sqrt((edge_vectors * edge_vectors).sum(-1) + 1e-12)
        envelope = self.envelope(distance)
        h = self.embedding(species)
        vectors = edge_vectors
        last = len(self.layers) - 1
        for k, layer in enumerate(self.layers):
            h, vectors, _ = layer(h, edge_index, vectors, envelope, k if k < last else -1)
            if k < last:
                h = halo(h, k)
        return h

    def forward(self, species: Tensor, edge_index: Tensor, edge_vectors: Tensor) -> Tensor:
        return self.readout(self.node_features(species, edge_index, edge_vectors)).squeeze(-1)

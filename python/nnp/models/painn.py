"""PaiNN (Schütt, Unke, Gastegger 2021): equivariant message passing with scalar and vector features.

Every atom carries invariant scalars ``s_i`` (F) and equivariant vectors ``v_i`` (3, F), ``v = 0`` at
the start. One layer is a message block then an update block (eqs. 7-11 of the paper):

* message: ``x_ij = phi(s_j) * W(d_ij) * u(d_ij)`` split into ``(x_vv, x_s, x_vs)``;
  ``s_i += sum_j x_s``, ``v_i += sum_j v_j * x_vv + x_vs * r_ij / d_ij`` (sums divided by n_avg);
* update: ``a = MLP([s_i, |V v_i|])`` split into ``(a_vv, a_sv, a_ss)``;
  ``v_i += a_vv * U v_i``, ``s_i += a_sv * <U v_i, V v_i> + a_ss``.

``r_ij = x_j - x_i`` is the edge vector of the contract, ``u`` the smooth envelope (energy and forces
continuous at the cutoff), ``W`` a linear filter on a Bessel basis. The energy is an MLP of the final
scalars. Rotations act on ``v`` only through its first axis, so the energy is invariant and -dE/dx is
equivariant without augmentation.

Differences from the paper kept: the polynomial envelope instead of the cosine cutoff (continuous
second derivative, as every nnp model), message sums divided by the average neighbour count (as EGNN
and GNS here), and a small epsilon inside ``|V v|`` (its gradient at v = 0).
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor, nn

from ..nn import MLP, BesselBasis, PolynomialEnvelope
from ..nn.embedding import SpeciesEmbedding
from ..nn.halo import halo

NORM_EPSILON = 1e-8  # inside sqrt(|V v|^2 + eps): a finite gradient when v = 0


class PaiNNMessage(nn.Module):
    """Message block: scalar and vector updates from neighbours (eqs. 7-8)."""

    def __init__(self, hidden: int, num_rbf: int, norm: float):
        super().__init__()
        self.phi = MLP([hidden, hidden, 3 * hidden])
        self.filter = nn.Linear(num_rbf, 3 * hidden)
        self.hidden = hidden
        self.norm = float(norm)

    def forward(self, s: Tensor, v: Tensor, edge_index: Tensor, rbf: Tensor, envelope: Tensor,
                unit: Tensor) -> Tuple[Tensor, Tensor]:
        i, j = edge_index[0], edge_index[1]
        x = self.phi(s)[j] * self.filter(rbf) * envelope.unsqueeze(-1)  # (E, 3F)
        # contiguous copies: broadcasting a strided (E, F) view over (E, 3, F) is ~4x slower on the CPU
        x_vv, x_s, x_vs = [part.contiguous() for part in torch.split(x, self.hidden, dim=-1)]  # (E, F) each
        ds = torch.zeros_like(s).index_add_(0, i, x_s)
        dv_edge = v[j] * x_vv.unsqueeze(1) + unit.unsqueeze(-1) * x_vs.unsqueeze(1)  # (E, 3, F)
        dv = torch.zeros_like(v).index_add_(0, i, dv_edge)
        return s + ds / self.norm, v + dv / self.norm


class PaiNNUpdate(nn.Module):
    """Update block: mixes scalars and vector channels within each atom (eqs. 9-11)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.U = nn.Linear(hidden, hidden, bias=False)  # no bias: a bias would break equivariance of v
        self.V = nn.Linear(hidden, hidden, bias=False)
        self.mlp = MLP([2 * hidden, hidden, 3 * hidden])
        self.hidden = hidden
        self.epsilon = NORM_EPSILON

    def forward(self, s: Tensor, v: Tensor) -> Tuple[Tensor, Tensor]:
        uv = self.U(v)  # (N, 3, F): linear over channels commutes with rotations of the 3 axis
        vv = self.V(v)
        vv_norm = torch.sqrt((vv * vv).sum(1) + self.epsilon)  # (N, F)
        a = self.mlp(torch.cat([s, vv_norm], dim=-1))
        a_vv, a_sv, a_ss = [part.contiguous() for part in torch.split(a, self.hidden, dim=-1)]
        v = v + a_vv.unsqueeze(1) * uv
        s = s + a_sv * (uv * vv).sum(1) + a_ss
        return s, v


class PaiNN(nn.Module):
    """PaiNN energy backbone: ``forward(species, edge_index, edge_vectors) -> (N,)`` atom energies."""

    HEAD = ("readout",)  # task head: the energy readout; the rest transfers between tasks
    INPUT_EMBEDDING = "embedding"  # per-atom input embedding (pretraining adds its mask embedding here)

    def __init__(self, num_species: int, cutoff: float = 5.0, hidden: int = 64, layers: int = 3,
                 num_rbf: int = 16, avg_num_neighbors: float = 20.0):
        super().__init__()
        self.embedding = SpeciesEmbedding(num_species, hidden)
        self.rbf = BesselBasis(cutoff, num_rbf)
        self.envelope = PolynomialEnvelope(cutoff)
        self.messages = nn.ModuleList([PaiNNMessage(hidden, num_rbf, avg_num_neighbors) for _ in range(layers)])
        self.updates = nn.ModuleList([PaiNNUpdate(hidden) for _ in range(layers)])
        self.readout = MLP([hidden, hidden, 1])
        self.num_interactions = layers
        self.feature_size = hidden
        self.hidden = hidden
        self.halo = "per_layer"  # calls halo() on s and v after every layer but the last

    def node_features(self, species: Tensor, edge_index: Tensor, edge_vectors: Tensor) -> Tensor:
        """Final invariant node features (N, hidden)."""
        distance = torch.sqrt((edge_vectors * edge_vectors).sum(-1) + 1e-12)
        unit = edge_vectors / distance.unsqueeze(-1)
        rbf = self.rbf(distance)
        envelope = self.envelope(distance)
        s = self.embedding(species)
        n = s.shape[0]
        v = torch.zeros((n, 3, self.hidden), dtype=s.dtype, device=s.device)
        last = len(self.messages) - 1
        k = 0
        for message, update in zip(self.messages, self.updates):
            s, v = message(s, v, edge_index, rbf, envelope, unit)
            s, v = update(s, v)
            if k < last:  # ghosts' features come from their owners (contract v2)
                s = halo(s, k)
                v = halo(v.reshape(n, 3 * self.hidden), k).reshape(n, 3, self.hidden)
            k += 1
        return s

    def forward(self, species: Tensor, edge_index: Tensor, edge_vectors: Tensor) -> Tensor:
        return self.readout(self.node_features(species, edge_index, edge_vectors)).squeeze(-1)

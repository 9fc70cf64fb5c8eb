"""Edge embedding: ``m_ca = act(W [h_c, h_a, x_ca])`` (also GemNet's atom-to-edge concatenation layer)."""

from __future__ import annotations

from torch import Tensor, nn
import torch

from .layers import Dense


class EdgeEmbedding(nn.Module):
    def __init__(self, emb_atom: int, emb_in: int, emb_out: int):
        super().__init__()
        self.dense = Dense(2 * emb_atom + emb_in, emb_out)

    def forward(self, h: Tensor, x: Tensor, edge_index: Tensor) -> Tensor:
        """``h`` (N, A), ``x`` (E, F) -> (E, emb_out); source atom ``c`` (neighbour) first, as the authors."""
        return self.dense(torch.cat([h[edge_index[1]], h[edge_index[0]], x], -1))

"""One GemNet-T interaction block: triplet message passing, residual edge updates, atom update and the
atom-to-edge concatenation, every merge of two branches divided by sqrt(2)."""

from __future__ import annotations

from typing import Tuple

from torch import Tensor, nn

from .atom_update import AtomUpdate
from .embedding import EdgeEmbedding
from .layers import Dense, ResidualLayer, merge
from .triplet import TripletInteraction


class InteractionBlock(nn.Module):
    def __init__(self, emb_atom: int, emb_edge: int, emb_trip: int, emb_rbf: int, emb_cbf: int,
                 emb_bil_trip: int, num_before_skip: int, num_after_skip: int, num_concat: int, num_atom: int):
        super().__init__()
        self.dense_ca = Dense(emb_edge, emb_edge)
        self.triplet = TripletInteraction(emb_edge, emb_trip, emb_bil_trip, emb_rbf, emb_cbf)
        self.before_skip = nn.Sequential(*[ResidualLayer(emb_edge) for _ in range(num_before_skip)])
        self.after_skip = nn.Sequential(*[ResidualLayer(emb_edge) for _ in range(num_after_skip)])
        self.atom_update = AtomUpdate(emb_atom, emb_edge, emb_rbf, num_atom)
        self.concat = EdgeEmbedding(emb_atom, emb_edge, emb_edge)
        self.residual_m = nn.Sequential(*[ResidualLayer(emb_edge) for _ in range(num_concat)])

    def forward(self, h: Tensor, m: Tensor, rbf3: Tensor, rbf_w: Tensor, sph: Tensor, rbf_h: Tensor,
                edge_index: Tensor, id_ca: Tensor, id_ba: Tensor, slot: Tensor, id_swap: Tensor) -> Tuple[Tensor, Tensor]:
        """``h`` (N, A), ``m`` (E, D) -> updated ``(h, m)``."""
        x = merge(self.dense_ca(m), self.triplet(m, rbf3, rbf_w, sph, id_ca, id_ba, slot, id_swap))
        x = self.before_skip(x)
        m = self.after_skip(merge(m, x))
        h = merge(h, self.atom_update(m, rbf_h, edge_index[0], h.shape[0]))
        m = merge(m, self.residual_m(self.concat(h, m, edge_index)))
        return h, m

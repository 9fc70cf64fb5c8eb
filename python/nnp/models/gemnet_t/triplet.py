"""GemNet-T's triplet interaction: messages of edges ``b -> a`` summed into ``c -> a`` through a bilinear
layer of the circular basis, then merged with the reverse edge ``a -> c`` (``id_swap``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import Dense, merge, he_orthogonal_
from .scaling import ScaleFactor


class TripletBilinear(nn.Module):
    """``out_ca = sum_{t,c} W[t, c, :] sum_l rbfW[ca, c, l] sum_b Y_l(angle_cab) x_ba[t]`` (efficient form)."""

    def __init__(self, emb_trip: int, emb_cbf: int, emb_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(emb_trip, emb_cbf, emb_out))
        he_orthogonal_(self.weight)

    def forward(self, rbf_w: Tensor, sph: Tensor, x_ba: Tensor, id_ca: Tensor, slot: Tensor) -> Tensor:
        """``rbf_w`` (E, C, L), ``sph`` (E, L, K), ``x_ba`` (T, F) -> (E, emb_out)."""
        num_edges, slots = sph.shape[0], sph.shape[2]
        dense = torch.zeros((num_edges, slots, x_ba.shape[1]), dtype=x_ba.dtype, device=x_ba.device)
        dense = dense.index_put((id_ca, slot), x_ba)  # (E, K, F)
        summed = torch.bmm(sph, dense)  # (E, L, F): sum over the triplets of each edge
        summed = torch.bmm(rbf_w, summed)  # (E, C, F): sum over the angular orders
        weight = self.weight.permute(1, 0, 2).reshape(-1, self.weight.shape[2])  # (C * F, out)
        return summed.reshape(num_edges, weight.shape[0]) @ weight


class TripletInteraction(nn.Module):
    def __init__(self, emb_edge: int, emb_trip: int, emb_bilinear: int, emb_rbf: int, emb_cbf: int):
        super().__init__()
        self.dense_ba = Dense(emb_edge, emb_edge)
        self.mlp_rbf = Dense(emb_rbf, emb_edge, activation=False)
        self.scale_rbf = ScaleFactor()
        self.bilinear = TripletBilinear(emb_trip, emb_cbf, emb_bilinear)
        self.scale_cbf_sum = ScaleFactor()
        self.down_projection = Dense(emb_edge, emb_trip)
        self.up_projection_ca = Dense(emb_bilinear, emb_edge)
        self.up_projection_ac = Dense(emb_bilinear, emb_edge)

    def forward(self, m: Tensor, rbf3: Tensor, rbf_w: Tensor, sph: Tensor, id_ca: Tensor, id_ba: Tensor,
                slot: Tensor, id_swap: Tensor) -> Tensor:
        """``m`` (E, D), ``rbf3`` (E, R') -> (E, D)."""
        x_ba = self.dense_ba(m)
        x_ba = self.scale_rbf(x_ba, x_ba * self.mlp_rbf(rbf3))  # (E, D)
        x_ba = self.down_projection(x_ba)[id_ba]  # (T, emb_trip)
        x = self.bilinear(rbf_w, sph, x_ba, id_ca, slot)  # (E, emb_bilinear)
        x = self.scale_cbf_sum(x_ba, x)
        # the interaction computed for a -> c also updates c -> a
        return merge(self.up_projection_ca(x), self.up_projection_ac(x)[id_swap])

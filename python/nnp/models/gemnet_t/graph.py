"""Index maps GemNet needs, built from the edge list inside the model (the model contract stays edges-only).

nnp's edge ``e = (a, c)`` has centre ``a`` (row 0) and neighbour ``c`` (row 1), vector ``r_e = x_c - x_a``;
its message flows ``c -> a``. In Gasteiger et al.'s notation this is edge ``c -> a`` (``id_a`` = centre).
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor



def reverse_edges(edge_index: Tensor, edge_vectors: Tensor, num_nodes: int) -> Tensor:
    """``id_swap``: for every edge ``c -> a`` the index of its reverse ``a -> c`` (the same periodic image).

    Assumes a full neighbour list (the model contract): every edge ``(a, c, r)`` has a partner
    ``(c, a, -r)``. Raises ``RuntimeError`` if one is missing.
    """
    center, neighbor = edge_index[0], edge_index[1]
    num_edges = center.shape[0]
    if num_edges == 0:
        return torch.zeros_like(center)
    # a direction no lattice vector of a real cell is orthogonal to: the periodic images of one pair
    # differ by a lattice vector, so by their projection t
    probe = torch.tensor([0.5773502691896258, 0.6180339887498949, 0.5345224838248488],
                         dtype=edge_vectors.dtype, device=edge_vectors.device)
    t = edge_vectors.detach() @ probe
    key = center * num_nodes + neighbor
    reverse_key = neighbor * num_nodes + center
    # sort by (key, t) and, for the reverses, by (reverse key, -t): the reverse of the p-th edge of the
    # first order is the p-th edge of the second
    by_t = torch.argsort(t)
    forward = by_t[torch.argsort(key[by_t], stable=True)]
    by_minus_t = torch.argsort(-t)
    backward = by_minus_t[torch.argsort(reverse_key[by_minus_t], stable=True)]
    mismatch = (key[forward] != reverse_key[backward]) | (
        (edge_vectors[forward] + edge_vectors[backward]).detach().abs().amax(-1) > 1e-3
    )
    if bool(mismatch.any()):
        raise RuntimeError("GemNet-T needs a full neighbour list: an edge (a, c, r) has no reverse (c, a, -r) "
                           "in edge_index/edge_vectors")
    swap = torch.empty_like(center)
    swap[forward] = backward
    return swap


def build_triplets(edge_index: Tensor, num_nodes: int) -> Tuple[Tensor, Tensor, Tensor, int]:
    """Triplets ``b -> a <- c``: pairs of distinct edges with the same centre ``a``.

    Returns ``(id_ca, id_ba, slot, slots)``: the edge that receives (``c -> a``), the edge that sends
    (``b -> a``), the triplet's position among the triplets of ``id_ca`` and the number of positions
    (largest degree), for dense ``(E, slots, .)`` sums. Different periodic images of one atom count as
    different neighbours; only the edge itself is excluded.
    """
    center = edge_index[0]
    num_edges = center.shape[0]
    order = torch.sort(center, stable=True)[1]
    degree = torch.bincount(center, minlength=num_nodes)
    first = torch.cumsum(degree, 0) - degree
    partners = degree[center]  # edges sharing the centre, the edge itself included
    id_ca = torch.repeat_interleave(torch.arange(num_edges, device=center.device), partners)
    block_start = torch.cumsum(partners, 0) - partners
    slot = torch.arange(id_ca.shape[0], device=center.device) - block_start[id_ca]
    id_ba = order[first[center[id_ca]] + slot]
    keep = id_ba != id_ca
    slots = int(degree.max()) if num_edges > 0 else 0
    return id_ca[keep], id_ba[keep], slot[keep], slots

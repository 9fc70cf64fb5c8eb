"""nnp's simplified GemNet, used as the direct-force GemNet-dT (``model.kind: gemnet_dt``).

The published GemNet-T (``model.kind: gemnet_t``) is :mod:`nnp.models.gemnet_t`; this module keeps the
earlier simplified architecture, which ``gemnet_dt`` files and checkpoints were trained with.

Directional message passing on edges with two-hop (triplet, k -> j -> i) interactions:

* radial basis: Bessel functions times the smooth polynomial envelope, on every edge;
* angular basis on triplets: Bessel radial basis of ``d_kj`` times Legendre polynomials
  ``P_l(cos angle_kji)`` (the separable "spherical basis" of the efficient GemNet variant);
* edge embedding ``m_ji`` from both atoms and the radial basis; interaction blocks with triplet
  message passing through a bilinear layer, atom update, and atom-to-edge concatenation;
* an output block after the embedding and after every interaction block; atomic energies are the
  sum over output blocks.

Triplets are built from the edge list inside the model, so the model contract stays edges-only.
Simplifications against the reference code, documented: no edge-direction swap symmetrisation
(``id_swap``) and no per-layer scale factors fitted on data (LayerNorm-free residual stacks with
1/sqrt(2) scaling instead).
"""

from __future__ import annotations


from typing import Tuple

import torch
from torch import Tensor, nn

from ..nn import MLP, BesselBasis, PolynomialEnvelope
from ..nn.angular import legendre
from ..nn.embedding import SpeciesEmbedding

def _rescale(x: Tensor) -> Tensor:
    """Divide a sum of two unit-variance terms by sqrt(2) to keep it at unit variance."""
    return x * 0.7071067811865476


def build_triplets(edge_index: Tensor, edge_vectors: Tensor, num_nodes: int) -> Tuple[Tensor, Tensor, Tensor, int]:
    """Pairs of edges ``(e_ji, e_kj)`` forming triplets k -> j -> i, excluding k = i (same image).

    Edge ``e = (c, n)`` has centre ``c`` and neighbour ``n``; the message of edge ``(i, j)`` flows from
    ``j`` to ``i``, so its triplet partners are the edges centred on ``j``. Also returns each triplet's
    slot among the partners of its ``e_ji`` and the number of slots, for dense per-edge sums.
    """
    center, neighbor = edge_index[0], edge_index[1]
    num_edges = center.shape[0]
    order = torch.sort(center, stable=True)[1]
    degree = torch.bincount(center, minlength=num_nodes)
    first = torch.cumsum(degree, 0) - degree
    partners = degree[neighbor]
    idx_ji = torch.repeat_interleave(torch.arange(num_edges, device=center.device), partners)
    block_start = torch.cumsum(partners, 0) - partners
    position = torch.arange(idx_ji.shape[0], device=center.device) - block_start[idx_ji]
    idx_kj = order[first[neighbor[idx_ji]] + position]
    with torch.no_grad():
        backtrack = (neighbor[idx_kj] == center[idx_ji]) & (
            (edge_vectors[idx_kj] + edge_vectors[idx_ji]).abs().sum(-1) < 1e-6
        )
    keep = ~backtrack
    slots = int(degree.max()) if num_edges > 0 else 0
    return idx_ji[keep], idx_kj[keep], position[keep], slots


class ResidualLayer(nn.Module):
    def __init__(self, size: int):
        super().__init__()
        self.mlp = MLP([size, size, size], activate_last=True)

    def forward(self, x: Tensor) -> Tensor:
        return _rescale(x + self.mlp(x))


class TripletInteraction(nn.Module):
    """Messages ``m_kj`` modulated by the angular basis and summed into ``m_ji``."""

    def __init__(self, emb_edge: int, emb_trip: int, emb_rbf: int, emb_cbf: int, num_cbf: int):
        super().__init__()
        self.dense_kj = nn.Sequential(nn.Linear(emb_edge, emb_edge), nn.SiLU())
        self.rbf_weight = nn.Linear(emb_rbf, emb_edge, bias=False)
        self.down = nn.Sequential(nn.Linear(emb_edge, emb_trip, bias=False), nn.SiLU())
        self.cbf_weight = nn.Linear(num_cbf, emb_cbf, bias=False)
        self.bilinear = nn.Linear(emb_cbf * emb_trip, emb_trip, bias=False)
        self.up = nn.Sequential(nn.Linear(emb_trip, emb_edge, bias=False), nn.SiLU())
        self.emb_cbf, self.emb_trip = emb_cbf, emb_trip

    def forward(self, m: Tensor, rbf: Tensor, cbf: Tensor, idx_ji: Tensor, idx_kj: Tensor, slot: Tensor,
                slots: int, norm: float) -> Tensor:
        x = self.down(self.dense_kj(m) * self.rbf_weight(rbf))  # (E, emb_trip)
        weights = self.cbf_weight(cbf)  # (T, emb_cbf)
        # sum_k w_c(t) x_f(kj) for every edge ji as a batched matmul over dense (E, slots, .) blocks,
        # instead of materialising a (T, emb_cbf * emb_trip) outer product
        num_edges = m.shape[0]
        dense_x = torch.zeros((num_edges, slots, self.emb_trip), dtype=m.dtype, device=m.device)
        dense_x = dense_x.index_put((idx_ji, slot), x[idx_kj])
        dense_w = torch.zeros((num_edges, slots, self.emb_cbf), dtype=m.dtype, device=m.device)
        dense_w = dense_w.index_put((idx_ji, slot), weights)
        summed = torch.bmm(dense_w.transpose(1, 2), dense_x).reshape(num_edges, -1) / norm
        return self.up(self.bilinear(summed))


class AtomUpdate(nn.Module):
    """``h_i <- h_i + MLP(sum_j m_ji * W rbf_ji)``."""

    def __init__(self, emb_atom: int, emb_edge: int, emb_rbf: int):
        super().__init__()
        self.rbf_weight = nn.Linear(emb_rbf, emb_edge, bias=False)
        self.mlp = MLP([emb_edge, emb_atom, emb_atom], activate_last=True)

    def forward(self, h: Tensor, m: Tensor, rbf: Tensor, center: Tensor, norm: float) -> Tensor:
        summed = torch.zeros((h.shape[0], m.shape[1]), dtype=m.dtype, device=m.device)
        summed = summed.index_add_(0, center, m * self.rbf_weight(rbf)) / norm
        return self.mlp(summed)


class InteractionBlock(nn.Module):
    def __init__(self, emb_atom: int, emb_edge: int, emb_trip: int, emb_rbf: int, emb_cbf: int, num_cbf: int):
        super().__init__()
        self.skip = nn.Sequential(nn.Linear(emb_edge, emb_edge), nn.SiLU())
        self.triplet = TripletInteraction(emb_edge, emb_trip, emb_rbf, emb_cbf, num_cbf)
        self.before_skip = ResidualLayer(emb_edge)
        self.after_skip = nn.Sequential(ResidualLayer(emb_edge), ResidualLayer(emb_edge))
        self.atom_update = AtomUpdate(emb_atom, emb_edge, emb_rbf)
        self.atom_residual = ResidualLayer(emb_atom)
        self.concat = nn.Sequential(nn.Linear(2 * emb_atom + emb_edge, emb_edge), nn.SiLU())
        self.edge_residual = ResidualLayer(emb_edge)

    def forward(self, h: Tensor, m: Tensor, rbf: Tensor, cbf: Tensor, edge_index: Tensor, idx_ji: Tensor,
                idx_kj: Tensor, slot: Tensor, slots: int, norm_edges: float, norm_triplets: float) -> Tuple[Tensor, Tensor]:
        x = _rescale(self.skip(m) + self.triplet(m, rbf, cbf, idx_ji, idx_kj, slot, slots, norm_triplets))
        x = self.before_skip(x)
        m = self.after_skip(_rescale(m + x))
        h = _rescale(h + self.atom_update(h, m, rbf, edge_index[0], norm_edges))
        h = self.atom_residual(h)
        m = self.edge_residual(_rescale(m + self.concat(torch.cat([h[edge_index[0]], h[edge_index[1]], m], -1))))
        return h, m


class OutputBlock(nn.Module):
    def __init__(self, emb_atom: int, emb_edge: int, emb_rbf: int):
        super().__init__()
        self.rbf_weight = nn.Linear(emb_rbf, emb_edge, bias=False)
        self.mlp = MLP([emb_edge, emb_atom, emb_atom], activate_last=True)
        self.energy = nn.Linear(emb_atom, 1, bias=False)
        self.force = nn.Linear(emb_edge, 1, bias=False)

    def forward(self, m: Tensor, rbf: Tensor, center: Tensor, num_nodes: int, norm: float) -> Tuple[Tensor, Tensor]:
        weighted = m * self.rbf_weight(rbf)
        summed = torch.zeros((num_nodes, m.shape[1]), dtype=m.dtype, device=m.device)
        summed = summed.index_add_(0, center, weighted) / norm
        return self.energy(self.mlp(summed)).squeeze(-1), self.force(weighted).squeeze(-1)


class GemNetDT(nn.Module):
    """Simplified GemNet energy backbone: ``forward(species, edge_index, edge_vectors) -> (N,)`` atom energies.

    With ``direct_forces=True`` (GemNet-dT) :meth:`energy_and_edge_forces` also returns one force
    vector per edge, ``f_ji * unit(r_ij)`` pointing along the edge, summed over the output blocks.
    """

    HEAD = ("embedding_output", "outputs")  # task head: the output blocks (energy and direct forces)
    INPUT_EMBEDDING = "embedding"  # per-atom input embedding (pretraining adds its mask embedding here)

    def __init__(self, num_species: int, cutoff: float = 5.0, num_blocks: int = 4, emb_atom: int = 128,
                 emb_edge: int = 128, emb_trip: int = 64, emb_rbf: int = 16, emb_cbf: int = 16,
                 num_spherical: int = 7, num_radial: int = 6, avg_num_neighbors: float = 20.0,
                 direct_forces: bool = False):
        super().__init__()
        self.cutoff = float(cutoff)
        self.num_spherical = num_spherical
        self.radial = BesselBasis(cutoff, num_radial)
        self.envelope = PolynomialEnvelope(cutoff)
        self.embedding = SpeciesEmbedding(num_species, emb_atom)
        self.rbf_projection = nn.Linear(num_radial, emb_rbf, bias=False)
        self.edge_embedding = nn.Sequential(nn.Linear(2 * emb_atom + emb_rbf, emb_edge), nn.SiLU())
        self.blocks = nn.ModuleList(
            [InteractionBlock(emb_atom, emb_edge, emb_trip, emb_rbf, emb_cbf, num_spherical * num_radial)
             for _ in range(num_blocks)]
        )
        self.embedding_output = OutputBlock(emb_atom, emb_edge, emb_rbf)
        self.outputs = nn.ModuleList([OutputBlock(emb_atom, emb_edge, emb_rbf) for _ in range(num_blocks)])
        self.norm_edges = float(avg_num_neighbors)
        self.norm_triplets = float(avg_num_neighbors)
        self.num_interactions = num_blocks
        self.feature_size = emb_atom
        # triplets read edge messages centred on neighbours (no per-layer halo), and every block widens
        # the receptive field by two hops (triplet k->j->i, then h_j into m_ji)
        self.halo = "none"
        self.receptive_hops = 2 * num_blocks + 1
        self.direct_forces = direct_forces

    def energy_and_edge_forces(self, species: Tensor, edge_index: Tensor, edge_vectors: Tensor) -> Tuple[Tensor, Tensor]:
        energy, edge_forces, _ = self.run(species, edge_index, edge_vectors)
        return energy, edge_forces

    def node_features(self, species: Tensor, edge_index: Tensor, edge_vectors: Tensor) -> Tensor:
        """Atom embeddings after the last interaction block (N, hidden)."""
        return self.run(species, edge_index, edge_vectors)[2]

    def run(self, species: Tensor, edge_index: Tensor, edge_vectors: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Atom energies, per-edge direct forces and final atom embeddings."""
        num_nodes = species.shape[0]
        center, neighbor = edge_index[0], edge_index[1]
        distance = torch.sqrt((edge_vectors * edge_vectors).sum(-1) + 1e-12)
        envelope = self.envelope(distance)
        rbf_raw = self.radial(distance) * envelope.unsqueeze(-1)  # (E, num_radial), zero at the cutoff
        rbf = self.rbf_projection(rbf_raw)

        idx_ji, idx_kj, slot, slots = build_triplets(edge_index, edge_vectors, num_nodes)
        v_ji, v_kj = edge_vectors[idx_ji], edge_vectors[idx_kj]
        # angle at j between j->i (= -r_ij) and j->k (= r_jk)
        cosine = -(v_ji * v_kj).sum(-1) / (distance[idx_ji] * distance[idx_kj])
        cosine = cosine.clamp(-1.0, 1.0)
        cbf = (rbf_raw[idx_kj].unsqueeze(-1) * legendre(cosine, self.num_spherical).unsqueeze(1)).flatten(1)

        h = self.embedding(species)
        m = self.edge_embedding(torch.cat([h[center], h[neighbor], rbf], -1))
        energy, edge_force = self.embedding_output(m, rbf, center, num_nodes, self.norm_edges)
        for block, output in zip(self.blocks, self.outputs):
            h, m = block(h, m, rbf, cbf, edge_index, idx_ji, idx_kj, slot, slots, self.norm_edges,
                         self.norm_triplets)
            e_k, f_k = output(m, rbf, center, num_nodes, self.norm_edges)
            energy = energy + e_k
            edge_force = edge_force + f_k
        unit = edge_vectors / distance.unsqueeze(-1)
        return energy, edge_force.unsqueeze(-1) * unit, h

    def forward(self, species: Tensor, edge_index: Tensor, edge_vectors: Tensor) -> Tensor:
        return self.energy_and_edge_forces(species, edge_index, edge_vectors)[0]

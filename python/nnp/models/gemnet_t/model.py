"""GemNet-T (Gasteiger, Becker, Günnemann, NeurIPS 2021) as an nnp energy backbone.

``forward(species, edge_index, edge_vectors) -> (N,)`` atom energies; forces are ``-dE/dr`` through
:class:`nnp.models.potential.Potential`. Triplets ``b -> a <- c`` and the reverse-edge map ``id_swap``
are built from the edge list inside the model. Defaults are the authors' MD17 GemNet-T hyperparameters.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor, nn

from ...nn.embedding import SpeciesEmbedding
from .atom_update import OutputBlock
from .basis import CircularBasis, RadialBasis
from .embedding import EdgeEmbedding
from .graph import build_triplets, reverse_edges
from .interaction import InteractionBlock
from .layers import Dense, he_orthogonal_


class GemNetT(nn.Module):
    HEAD = ("embedding_output", "outputs")  # task head: the output blocks (embedding, every interaction)
    INPUT_EMBEDDING = "embedding"  # per-atom input embedding (pretraining adds its mask embedding here)

    def __init__(self, num_species: int, cutoff: float = 5.0, num_blocks: int = 4, emb_atom: int = 128,
                 emb_edge: int = 128, emb_trip: int = 64, emb_rbf: int = 16, emb_cbf: int = 16,
                 emb_bil_trip: int = 64, num_spherical: int = 7, num_radial: int = 6, num_before_skip: int = 1,
                 num_after_skip: int = 1, num_concat: int = 1, num_atom: int = 2, envelope_exponent: int = 5):
        super().__init__()
        self.cutoff = float(cutoff)
        self.radial = RadialBasis(num_radial, cutoff, envelope_exponent)
        self.circular = CircularBasis(num_spherical, num_radial, cutoff, envelope_exponent)
        # projections of the bases shared by all blocks
        self.mlp_rbf3 = Dense(num_radial, emb_rbf, activation=False)
        self.mlp_cbf3 = nn.Parameter(torch.empty(num_spherical, num_radial, emb_cbf))
        he_orthogonal_(self.mlp_cbf3)
        self.mlp_rbf_h = Dense(num_radial, emb_rbf, activation=False)
        self.mlp_rbf_out = Dense(num_radial, emb_rbf, activation=False)
        self.embedding = SpeciesEmbedding(num_species, emb_atom)
        self.edge_embedding = EdgeEmbedding(emb_atom, num_radial, emb_edge)
        self.blocks = nn.ModuleList([
            InteractionBlock(emb_atom, emb_edge, emb_trip, emb_rbf, emb_cbf, emb_bil_trip, num_before_skip,
                             num_after_skip, num_concat, num_atom) for _ in range(num_blocks)])
        self.embedding_output = OutputBlock(emb_atom, emb_edge, emb_rbf, num_atom)
        self.outputs = nn.ModuleList([OutputBlock(emb_atom, emb_edge, emb_rbf, num_atom) for _ in range(num_blocks)])
        self.num_interactions = num_blocks
        self.feature_size = emb_atom
        # triplets and id_swap read edges centred on neighbours (no per-layer halo); per block an atom's
        # state reaches two edges further (triplet hop, then the atom update), the output one more
        self.halo = "none"
        self.receptive_hops = 2 * num_blocks + 1
        self.direct_forces = False

    def run(self, species: Tensor, edge_index: Tensor, edge_vectors: Tensor) -> Tuple[Tensor, Tensor]:
        """Atom energies (N,) and final atom embeddings (N, emb_atom)."""
        num_nodes = species.shape[0]
        center = edge_index[0]
        distance = torch.sqrt((edge_vectors * edge_vectors).sum(-1))  # (E,)
        id_swap = reverse_edges(edge_index, edge_vectors, num_nodes)
        id_ca, id_ba, slot, slots = build_triplets(edge_index, num_nodes)
        cosine = (edge_vectors[id_ca] * edge_vectors[id_ba]).sum(-1) / (distance[id_ca] * distance[id_ba])

        rbf = self.radial(distance)  # (E, R)
        radial_lr = self.circular.radial(distance)  # (E, L, R)
        # shared down projection of the circular basis' radial part: (E, C, L)
        rbf_w = torch.matmul(radial_lr.transpose(0, 1), self.mlp_cbf3).permute(1, 2, 0)
        num_l = radial_lr.shape[1]
        sph = torch.zeros((distance.shape[0], slots, num_l), dtype=rbf.dtype, device=rbf.device)
        sph = sph.index_put((id_ca, slot), self.circular.angular(cosine)).transpose(1, 2)  # (E, L, K)
        rbf3, rbf_h, rbf_out = self.mlp_rbf3(rbf), self.mlp_rbf_h(rbf), self.mlp_rbf_out(rbf)

        h = self.embedding(species)  # (N, A)
        m = self.edge_embedding(h, rbf, edge_index)  # (E, D)
        energy = self.embedding_output(m, rbf_out, center, num_nodes)
        for block, output in zip(self.blocks, self.outputs):
            h, m = block(h, m, rbf3, rbf_w, sph, rbf_h, edge_index, id_ca, id_ba, slot, id_swap)
            energy = energy + output(m, rbf_out, center, num_nodes)
        return energy, h

    def node_features(self, species: Tensor, edge_index: Tensor, edge_vectors: Tensor) -> Tensor:
        return self.run(species, edge_index, edge_vectors)[1]

    def forward(self, species: Tensor, edge_index: Tensor, edge_vectors: Tensor) -> Tensor:
        return self.run(species, edge_index, edge_vectors)[0]

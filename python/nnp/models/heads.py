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


def _add_mask_offset(module: nn.Module, inputs, output: Tensor) -> Tensor:
    """Forward hook on a backbone's input embedding: add the offset its pretraining wrapper set, if any."""
    offset = module.__dict__.get("mask_offset")
    return output if offset is None else output + offset


class ForcePretrainModel(nn.Module):
    """Pretraining through the potential's own forces: ``forward(...) -> (N, 3)`` forces of ``potential``.

    The pretraining vector *is* the force of the whole :class:`Potential` (``-dE/dx`` through
    :meth:`Potential.energy_and_forces`, kept differentiable for the loss; the direct force head for
    GemNet-dT), so every weight of the potential, energy readout included, is what pretraining trains
    and what finetuning receives. The optional learned mask embedding (2 rows: atoms of intact
    molecules, remaining atoms of masked molecules) lives here only: it is added to the output of the
    backbone's declared ``INPUT_EMBEDDING`` module by a forward hook while this wrapper runs, so the
    potential itself (its state dict, exported files, finetuned models) never holds it.
    """

    def __init__(self, potential: nn.Module, mask_embedding: bool):
        super().__init__()
        self.potential = potential
        self.mask_embedding = None
        if mask_embedding:
            size = self._input(torch.zeros(1, dtype=torch.long)).shape[-1]
            self.mask_embedding = nn.Embedding(2, size)  # N(0, 1) rows, as nn.Embedding (the paper's too)
            self._input.register_forward_hook(_add_mask_offset)

    @property
    def _input(self) -> nn.Module:
        """The backbone's input embedding module (looked up, not registered twice)."""
        return self.potential.backbone.get_submodule(self.potential.backbone.INPUT_EMBEDDING)

    def head_prefixes(self) -> tuple[str, ...]:
        """The potential's energy head (for optimiser groups and freezing); the mask embedding is neither."""
        return tuple(f"potential.{name}" for name in self.potential.head_prefixes())

    def forward(self, species: Tensor, edge_index: Tensor, edge_vectors: Tensor,
                mask_state: Tensor | None = None) -> Tensor:
        """Forces on every node; ``mask_state`` (N,) long: 1 on remaining atoms of a masked molecule, else 0."""
        use = self.mask_embedding is not None and mask_state is not None
        if use:
            self._input.__dict__["mask_offset"] = self.mask_embedding(mask_state)
        try:
            _, forces, _ = self.potential.energy_and_forces(species, edge_index, edge_vectors, species.shape[0],
                                                            self.training)
        finally:
            if use:
                self._input.__dict__.pop("mask_offset", None)
        return forces

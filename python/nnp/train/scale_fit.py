"""Before training: fit GemNet-T's scale factors on training frames (as Gasteiger et al. do)."""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.data import Batch

from ..data.graph import edge_vectors
from ..models.gemnet_t import fit_scale_factors, needs_scale_fit
from .data import GraphDataset


def fit_scales_on_data(backbone: nn.Module, dataset: GraphDataset, seed: int, batches: int = 4,
                       batch_size: int = 4) -> bool:
    """Fit the unfitted scale factors of ``backbone`` on ``batches`` random batches of ``dataset``.

    The authors fit on 25 batches of 32 molecules; nnp's default is 16 frames (one forward pass per batch
    and factor, ``3L + L + 1`` factors), to keep the fit cheap on a CPU.

    A no-op (returns False) for backbones without unfitted factors. The backbone's parameters decide the
    device and dtype of the batches.
    """
    if not needs_scale_fit(backbone) or len(dataset) == 0:
        return False
    parameter = next(backbone.parameters())
    frames = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[: batches * batch_size]
    graphs = [dataset.graph(int(k)) for k in frames]
    data = [Batch.from_data_list(graphs[s: s + batch_size]).to(parameter.device) for s in range(0, len(graphs), batch_size)]

    def forward_passes() -> None:
        for batch in data:
            backbone(batch.species, batch.edge_index, edge_vectors(batch).to(parameter.dtype))

    was_training = backbone.training
    backbone.eval()
    fit_scale_factors(backbone, forward_passes)
    backbone.train(was_training)
    return True

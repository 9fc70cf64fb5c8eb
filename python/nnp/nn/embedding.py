"""Species embedding."""

from __future__ import annotations

from torch import Tensor, nn


class SpeciesEmbedding(nn.Module):
    """Learned vector per species index."""

    def __init__(self, num_species: int, size: int):
        super().__init__()
        self.table = nn.Embedding(num_species, size)
        nn.init.uniform_(self.table.weight, -3**0.5, 3**0.5)  # unit variance per component

    def forward(self, species: Tensor) -> Tensor:
        return self.table(species)

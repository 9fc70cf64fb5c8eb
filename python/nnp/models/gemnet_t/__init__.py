"""GemNet-T as published (Gasteiger, Becker, Günnemann 2021): one block per module.

basis (radial and circular bases), graph (triplets, reverse edges), layers (dense/residual layers,
He-orthogonal init), scaling (fitted scale factors), embedding, triplet, atom_update, interaction, model.
"""

from .model import GemNetT
from .scaling import fit_scale_factors, needs_scale_fit, scale_factors

__all__ = ["GemNetT", "fit_scale_factors", "needs_scale_fit", "scale_factors"]

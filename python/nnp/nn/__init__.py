"""Building blocks shared by the models."""

from .mlp import MLP
from .radial import BesselBasis, GaussianBasis, PolynomialEnvelope

__all__ = ["MLP", "BesselBasis", "GaussianBasis", "PolynomialEnvelope"]

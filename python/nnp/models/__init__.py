"""Potentials: the contract wrapper and the architectures."""

from .build import ARCHITECTURES, build_potential
from .egnn import EGNN
from .potential import Potential

__all__ = ["ARCHITECTURES", "EGNN", "Potential", "build_potential"]

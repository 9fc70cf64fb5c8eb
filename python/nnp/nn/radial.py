"""Radial bases and the smooth cutoff envelope."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class PolynomialEnvelope(nn.Module):
    """DimeNet envelope u(d) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2), x = d/r_c.

    u(r_c) = u'(r_c) = u''(r_c) = 0, so energies and forces are continuous at the cutoff; u = 0 beyond.
    """

    def __init__(self, cutoff: float, exponent: int = 6):
        super().__init__()
        self.cutoff = float(cutoff)
        self.p = int(exponent)

    def forward(self, distances: Tensor) -> Tensor:
        p = self.p
        x = distances / self.cutoff
        u = (
            1.0
            - 0.5 * (p + 1) * (p + 2) * x.pow(p)
            + p * (p + 2) * x.pow(p + 1)
            - 0.5 * p * (p + 1) * x.pow(p + 2)
        )
        return torch.where(x < 1.0, u, torch.zeros_like(u))


class GaussianBasis(nn.Module):
    """Gaussians with centres evenly spaced on [0, r_c] and width equal to the spacing."""

    def __init__(self, cutoff: float, num_basis: int = 16):
        super().__init__()
        self.register_buffer("centers", torch.linspace(0.0, float(cutoff), num_basis))
        self.gamma = 0.5 / (float(cutoff) / (num_basis - 1)) ** 2

    def forward(self, distances: Tensor) -> Tensor:
        return torch.exp(-self.gamma * (distances.unsqueeze(-1) - self.centers) ** 2)


class BesselBasis(nn.Module):
    """sqrt(2/r_c) sin(n pi d / r_c) / d, n = 1..num_basis (DimeNet/GemNet), optional trainable n."""

    def __init__(self, cutoff: float, num_basis: int = 8, trainable: bool = False):
        super().__init__()
        self.cutoff = float(cutoff)
        freqs = math.pi * torch.arange(1, num_basis + 1, dtype=torch.get_default_dtype())
        self.frequencies = nn.Parameter(freqs, requires_grad=trainable)
        self.prefactor = math.sqrt(2.0 / self.cutoff)

    def forward(self, distances: Tensor) -> Tensor:
        d = distances.unsqueeze(-1)
        return self.prefactor * torch.sin(self.frequencies * d / self.cutoff) / d

"""Dense layers of GemNet: bias-free linear maps with He-orthogonal initialisation and scaled SiLU."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn



def merge(a: Tensor, b: Tensor) -> Tensor:
    """``(a + b) / sqrt(2)``: the sum of two unit-variance branches at unit variance."""
    return (a + b) * 0.7071067811865476


def he_orthogonal_(weight: Tensor) -> Tensor:
    """A random (semi-)orthogonal matrix, standardised per output unit, with variance ``1 / fan_in``.

    ``weight`` is ``(out, in)`` (a linear layer) or ``(a, b, out)`` (fan-in is ``a * b``, standardised
    over the first two axes), as in Gasteiger et al.
    """
    with torch.no_grad():
        nn.init.orthogonal_(weight)
        dims = (0, 1) if weight.dim() == 3 else (1,)
        fan_in = weight.shape[0] * weight.shape[1] if weight.dim() == 3 else weight.shape[1]
        var, mean = torch.var_mean(weight, dim=dims, unbiased=True, keepdim=True)
        weight.copy_((weight - mean) / torch.sqrt(var + 1e-6) / math.sqrt(fan_in))
    return weight


class ScaledSiLU(nn.Module):
    """``silu(x) / 0.6``: keeps unit-variance inputs at roughly unit variance."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.nn.functional.silu(x) * (1.0 / 0.6)


class Dense(nn.Module):
    """``act(W x)``: no bias, He-orthogonal ``W``, ``act`` scaled SiLU or identity."""

    def __init__(self, n_in: int, n_out: int, activation: bool = True):
        super().__init__()
        self.linear = nn.Linear(n_in, n_out, bias=False)
        he_orthogonal_(self.linear.weight)
        self.activation = ScaledSiLU() if activation else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.linear(x))


class ResidualLayer(nn.Module):
    """``(x + Dense(Dense(x))) / sqrt(2)``."""

    def __init__(self, size: int):
        super().__init__()
        self.mlp = nn.Sequential(Dense(size, size), Dense(size, size))

    def forward(self, x: Tensor) -> Tensor:
        return merge(x, self.mlp(x))


def dense_stack(n_in: int, size: int, num_residual: int) -> nn.Sequential:
    """``Dense(n_in -> size)`` followed by ``num_residual`` residual layers (atom-update and output MLPs)."""
    return nn.Sequential(Dense(n_in, size), *[ResidualLayer(size) for _ in range(num_residual)])

"""Angular basis for triplets (k -> j -> i): Legendre polynomials of the cosine of the angle at j."""

from __future__ import annotations

from typing import List

import torch
from torch import Tensor


def legendre(x: Tensor, num: int) -> Tensor:
    """``P_0(x) .. P_{num-1}(x)`` stacked on the last axis."""
    values: List[Tensor] = [torch.ones_like(x), x]
    for l in range(1, num - 1):
        values.append(((2 * l + 1) * x * values[l] - l * values[l - 1]) / (l + 1))
    return torch.stack(values[:num], dim=-1)

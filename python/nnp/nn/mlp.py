"""Multilayer perceptrons."""

from __future__ import annotations

from torch import Tensor, nn


class MLP(nn.Module):
    """Linear layers with SiLU between them; ``activate_last`` adds a SiLU after the final layer."""

    def __init__(self, sizes: list[int], activate_last: bool = False, bias_last: bool = True):
        super().__init__()
        layers: list[nn.Module] = []
        for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            last = k == len(sizes) - 2
            layers.append(nn.Linear(n_in, n_out, bias=bias_last or not last))
            if not last or activate_last:
                layers.append(nn.SiLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

"""Exponential moving average of a model's weights (validated, checkpoint-selected and exported)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """``shadow <- decay * shadow + (1 - decay) * weights`` after every optimiser step."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for key, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                self.state[key].mul_(self.decay).add_(value.detach(), alpha=1 - self.decay)
            else:
                self.state[key].copy_(value)

    def model(self, model: nn.Module) -> nn.Module:
        """A copy of ``model`` carrying the averaged weights."""
        shadow = copy.deepcopy(model)
        shadow.load_state_dict(self.state)
        return shadow

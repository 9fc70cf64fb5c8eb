"""GemNet's fitted scale factors: ``y -> s * y`` with ``s`` chosen on data so that ``Var(s y) = Var(x_ref)``.

Gasteiger et al. fit every factor on a few batches before training, one factor at a time in the order
the network computes them (each fit changes what the later factors see). The factors are buffers of the
model (saved in checkpoints and model files); ``fitted`` records whether a factor has been fitted.
"""

from __future__ import annotations

from typing import Callable, List

import torch
from torch import Tensor, nn


class ScaleFactor(nn.Module):
    """``forward(reference, y) = scale * y``; ``reference`` is the tensor whose variance ``y`` should keep."""

    def __init__(self):
        super().__init__()
        self.register_buffer("scale", torch.tensor(1.0))
        self.register_buffer("fitted", torch.tensor(False))

    def forward(self, reference: Tensor, y: Tensor) -> Tensor:
        return y * self.scale


def mean_variance(x: Tensor) -> Tensor:
    """Variance over rows, averaged over features (as the authors measure it)."""
    return torch.var(x.detach(), dim=0).mean()


def scale_factors(model: nn.Module) -> List[ScaleFactor]:
    """The model's scale factors in registration order, which GemNet keeps equal to the order of use."""
    return [m for m in model.modules() if isinstance(m, ScaleFactor)]


def needs_scale_fit(model: nn.Module) -> bool:
    return any(not bool(f.fitted) for f in scale_factors(model))


@torch.no_grad()
def fit_scale_factors(model: nn.Module, forward_passes: Callable[[], None], refit: bool = False) -> List[float]:
    """Fit each unfitted factor (all with ``refit``) in order; ``forward_passes()`` runs the model on the
    fitting batches. Returns the fitted scales. Row-weighted variances, accumulated over the batches:
    ``s <- s * sqrt(Var(x_ref) / Var(s y))``."""
    for factor in scale_factors(model):
        if bool(factor.fitted) and not refit:
            continue
        stats = [0.0, 0.0, 0]  # sum rows*Var(x_ref), sum rows*Var(s y), rows

        def observe(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            rows = output.shape[0]
            if rows < 2 or inputs[0].shape[0] < 2:
                return
            stats[0] += float(mean_variance(inputs[0])) * rows
            stats[1] += float(mean_variance(output)) * rows
            stats[2] += rows

        handle = factor.register_forward_hook(observe)
        try:
            forward_passes()
        finally:
            handle.remove()
        if stats[2] == 0 or stats[1] == 0.0:
            raise RuntimeError("scale-factor fit saw no data for a factor (no edges or triplets in the batches?)")
        factor.scale.mul_((stats[0] / stats[1]) ** 0.5)
        factor.fitted.fill_(True)
    return [float(f.scale) for f in scale_factors(model)]

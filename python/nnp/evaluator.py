"""Load a model file for evaluation from Python.

``load_evaluator`` returns the C++ evaluator (``nnp._evaluator``, the code LAMMPS runs). The pure
TorchScript evaluator follows the same contract and is used only when asked for (``backend="python"``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .export import load_exported


class TorchScriptEvaluator:
    """Runs a TorchScript model file in Python (``torch.jit``), asked for with ``backend="python"``; a ``.pt2``
    package still runs through the C++ evaluator (the one loader of compiled packages)."""

    def __init__(self, path: str | Path, device: str = "cpu"):
        self.module, self.metadata = load_exported(path, device)
        self.species = self.metadata["species"].split()
        self.cutoff = float(self.metadata["cutoff"])
        self.num_interactions = int(self.metadata["num_interactions"])
        self.dtype = {"float32": torch.float32, "float64": torch.float64}[self.metadata["dtype"]]
        self.device = torch.device(device)

    def evaluate(self, species: np.ndarray, edge_index: np.ndarray, edge_vectors: np.ndarray,
                 num_local: int) -> dict[str, Any]:
        out = self.module(
            torch.as_tensor(species, dtype=torch.long, device=self.device),
            torch.as_tensor(edge_index, dtype=torch.long, device=self.device),
            torch.as_tensor(edge_vectors, dtype=self.dtype, device=self.device),
            int(num_local),
        )
        return {k: v.detach().double().cpu().numpy() for k, v in out.items()}


def load_evaluator(path: str | Path, device: str = "cpu", backend: str = "cpp"):
    """The evaluator of ``path`` (a file or a bundled model's name).

    ``backend="cpp"`` (default): the C++ evaluator LAMMPS runs; an unbuilt extension is an error, never a
    silent switch to other code. ``backend="python"``: :class:`TorchScriptEvaluator`, asked for explicitly.
    Model file errors raise :class:`nnp.export.ModelFileError`.
    """
    from .errors import UserError
    from .export import ModelFileError, extension

    if backend == "python":
        return TorchScriptEvaluator(path, device)
    if backend != "cpp":
        raise UserError(f"evaluator backend must be cpp or python, not {backend!r}")
    cpp = extension()
    try:
        return cpp.Evaluator(str(path), device)
    except cpp.ModelError as err:
        raise ModelFileError(str(err)) from None

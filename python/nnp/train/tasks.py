"""What a run optimises: supervised energy/forces, masked-atom or denoising pretraining.

A task turns graphs into batches, computes the loss, and evaluates a model on a split. The engine
(:mod:`nnp.train.trainer`) knows nothing else about the objective.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.data import Batch, Data

from ..config import PretrainConfig, TrainConfig
from ..data.graph import edge_vectors
from ..models.potential import Potential
from ..pretrain.denoising import noise_loss, noisy_graph
from ..pretrain.masking import choose_masks, cosine_loss, distance_loss, masked_graph
from .predict import MetricAccumulator, predict_batch


def random_rotation(generator: torch.Generator, dtype: torch.dtype) -> Tensor:
    """Uniformly random proper rotation matrix (QR of a Gaussian matrix with sign fix)."""
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.to(dtype)


def rotate_batch(batch: Batch, rotation: Tensor) -> Batch:
    """Rotate positions, cells, shifts and the vector/tensor labels of a batch (data augmentation)."""
    batch = batch.clone()
    batch.pos = batch.pos @ rotation.T
    batch.shifts = batch.shifts @ rotation.T
    batch.cell = batch.cell @ rotation.T
    for key in ("forces", "target_vectors"):
        if hasattr(batch, key):
            setattr(batch, key, getattr(batch, key) @ rotation.T)
    if hasattr(batch, "stress"):
        batch.stress = rotation @ batch.stress @ rotation.T
    return batch


class EnergyForceTask:
    """Supervised: weighted MSE of energy per atom, force components and (optionally) stress."""

    name = "energy_force"

    def __init__(self, config: TrainConfig, augment_rotations: bool):
        self.t = config
        self.augment_rotations = augment_rotations

    def train_batch(self, graphs: Sequence[Data], generator: torch.Generator) -> Batch:
        batch = Batch.from_data_list(list(graphs))
        if self.augment_rotations:
            batch = rotate_batch(batch, random_rotation(generator, batch.pos.dtype))
        return batch

    def loss(self, model: Potential, batch: Batch) -> Tensor:
        t = self.t
        pred = predict_batch(model, batch, create_graph=True)
        natoms = torch.bincount(batch.batch, minlength=batch.num_graphs).to(pred["energy"].dtype)
        loss = t.energy_weight * (((pred["energy"] - batch.energy) / natoms) ** 2).mean()
        loss = loss + t.force_weight * ((pred["forces"] - batch.forces) ** 2).mean()
        if t.stress_weight > 0 and hasattr(batch, "stress") and "stress" in pred:
            loss = loss + t.stress_weight * ((pred["stress"] - batch.stress) ** 2).mean()
        return loss

    def evaluate(self, model: Potential, graphs: Sequence[Data], batch_size: int = 8) -> dict[str, float]:
        acc = MetricAccumulator()
        for start in range(0, len(graphs), batch_size):
            batch = Batch.from_data_list(list(graphs[start : start + batch_size]))
            acc.update(predict_batch(model, batch, create_graph=False), batch)
        metrics = acc.result()
        metrics["loss"] = self.t.energy_weight * metrics.get("energy_per_atom_rmse", 0.0) ** 2 + (
            self.t.force_weight * metrics.get("forces_rmse", 0.0) ** 2
        )
        return metrics


class PretrainTask:
    """Self-supervised: masked-atom direction prediction, denoising, or both at once."""

    def __init__(self, config: PretrainConfig, molecules: dict[int, list[np.ndarray]],
                 symbols: dict[int, list[str]], augment_rotations: bool):
        self.p = config
        self.name = config.task
        self.molecules = molecules  # keyed by id(graph)
        self.symbols = symbols
        self.augment_rotations = augment_rotations

    def _prepare(self, graph: Data, rng: np.random.Generator, generator: torch.Generator) -> Data:
        p = self.p
        if p.task in ("masked", "masked+denoise"):
            frame = choose_masks(graph, self.molecules[id(graph)], self.symbols[id(graph)], p.mask_ratio, rng,
                                 p.mask_heavy)
            graph = masked_graph(graph, frame)
        if p.task in ("denoise", "masked+denoise"):
            masked_targets = getattr(graph, "target_vectors", None)
            graph = noisy_graph(graph, p.noise_sigma, generator)
            if masked_targets is not None:
                graph.noise_vectors = graph.target_vectors
                graph.target_vectors = masked_targets
        return graph

    def train_batch(self, graphs: Sequence[Data], generator: torch.Generator) -> Batch:
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        batch = Batch.from_data_list([self._prepare(g, rng, generator) for g in graphs])
        if self.augment_rotations:
            batch = rotate_batch(batch, random_rotation(generator, batch.pos.dtype))
        return batch

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        p = self.p
        predicted = model(batch.species, batch.edge_index, edge_vectors(batch))
        if p.task == "denoise":
            return noise_loss(predicted, batch.target_vectors, batch.target_mask)
        loss = cosine_loss(predicted, batch.target_vectors, batch.target_mask)
        if p.distance_weight > 0:
            loss = loss + p.distance_weight * distance_loss(predicted, batch.target_vectors, batch.target_mask)
        if p.task == "masked+denoise":
            everyone = torch.ones_like(batch.target_mask)
            loss = loss + p.denoise_weight * noise_loss(predicted, batch.noise_vectors, everyone)
        return loss

    def evaluate(self, model: nn.Module, graphs: Sequence[Data], batch_size: int = 8) -> dict[str, float]:
        """Loss on the split with masks/noise drawn from a fixed seed (comparable across epochs)."""
        generator = torch.Generator().manual_seed(1234)
        total, count = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(graphs), batch_size):
                chunk = list(graphs[start : start + batch_size])
                rng = np.random.default_rng(start)
                batch = Batch.from_data_list([self._prepare(g, rng, generator) for g in chunk])
                total += float(self.loss(model, batch)) * len(chunk)
                count += len(chunk)
        return {"loss": total / max(count, 1)}

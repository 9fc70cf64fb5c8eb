"""What a run optimises: supervised energy/forces, masked-atom or denoising pretraining.

A task transforms single frames (augmentation, masks, noise; seeded per frame, so the result does not
depend on how frames are batched or spread over processes), computes the loss of a batch, and
evaluates a batch into sums that add up over batches and processes. The engine
(:mod:`nnp.train.loop`) knows nothing else about the objective.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.data import Batch, Data

from ..config import PretrainConfig, RunConfig, TrainConfig
from ..data.graph import edge_vectors
from ..errors import UserError
from ..models.build import ROTATION_INVARIANT
from ..models.potential import Potential
from ..pretrain.denoising import noise_loss, noisy_graph
from ..pretrain.masking import choose_masks, cosine_loss, distance_loss, masked_graph
from .data import GraphDataset
from .predict import MetricAccumulator, predict_batch, voigt
from .shift import center_energy_shift


def augment_rotations(config: RunConfig) -> bool:
    """Random-rotation augmentation: as configured, else on for models that are not rotation invariant."""
    augment = config.train.rotation_augmentation
    return (not ROTATION_INVARIANT[config.model.kind]) if augment is None else augment


def random_rotation(generator: torch.Generator, dtype: torch.dtype) -> Tensor:
    """Uniformly random proper rotation matrix (QR of a Gaussian matrix with sign fix)."""
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.to(dtype)


def rotate_graph(graph: Data, rotation: Tensor) -> Data:
    """Rotate positions, cell, shifts and the vector/tensor labels of a graph (data augmentation)."""
    graph = graph.clone()
    graph.pos = graph.pos @ rotation.T
    graph.shifts = graph.shifts @ rotation.T
    graph.cell = graph.cell @ rotation.T
    for key in ("forces", "target_vectors", "noise_vectors"):
        if hasattr(graph, key):
            setattr(graph, key, getattr(graph, key) @ rotation.T)
    if hasattr(graph, "stress"):
        graph.stress = rotation @ graph.stress @ rotation.T
    return graph


REFIT_FRAMES = 128  # training frames the energy shift is refitted on after every epoch


class EnergyForceTask:
    """Supervised: weighted MSE of energy per atom, force components and (optionally) stress."""

    name = "energy_force"
    num_totals = 3 * len(MetricAccumulator.NAMES) + 3  # length of evaluate_batch's list

    def __init__(self, config: TrainConfig, augment_rotations: bool):
        self.t = config
        self.augment_rotations = augment_rotations

    def transform(self, graph: Data, generator: torch.Generator) -> Data:
        if self.augment_rotations:
            graph = rotate_graph(graph, random_rotation(generator, graph.pos.dtype))
        return graph

    eval_transform = None  # validation frames are used as they are

    def refit(self, model: Potential, train: GraphDataset) -> None:
        """Refit the closed-form part of the model (the per-atom energy shift) to its current weights.

        Without it the validation energy error jumps with the constant per-atom offset that the weights
        acquire while forces are learned (the force loss cannot see it, the energy term pulls weakly).
        """
        center_energy_shift(model, train, frames=REFIT_FRAMES)

    def loss(self, model: Potential, batch: Batch) -> Tensor:
        """Mean squared errors of energy per atom, force components and stress (Voigt), weighted by
        ``train.energy_weight`` etc. With ``train.config_type_weights`` every frame's terms are multiplied by its
        weight, the means still taken over all terms (as MACE weighs configurations): weights of 1 give the
        unweighted loss. The validation loss that picks the best epoch (:meth:`summarize`) is the same quantity."""
        squares = self.weighted_squares(predict_batch(model, batch, create_graph=True), batch)
        counts = [batch.num_graphs, batch.forces.numel(), 6 * batch.num_graphs]
        return sum(w * sq / n for w, sq, n in zip(self.term_weights(batch), squares, counts) if w)

    def term_weights(self, batch: Batch | None = None) -> list[float]:
        """Loss weights of the energy, force and stress terms (stress only where the frames have it)."""
        t = self.t
        stress = t.stress_weight if batch is None or hasattr(batch, "stress") else 0.0
        return [t.energy_weight, t.force_weight, stress]

    @staticmethod
    def weighted_squares(pred: dict[str, Tensor], batch: Batch) -> list[Tensor]:
        """Sums over a batch of the frame-weighted squared errors: energy per atom, force components, stress."""
        natoms = torch.bincount(batch.batch, minlength=batch.num_graphs).to(pred["energy"].dtype)
        weight = batch.weight if hasattr(batch, "weight") else torch.ones_like(natoms)  # (frames,)
        energy = (weight * ((pred["energy"] - batch.energy) / natoms) ** 2).sum()
        forces = (weight[batch.batch, None] * (pred["forces"] - batch.forces) ** 2).sum()
        stress = energy.new_zeros(())
        if hasattr(batch, "stress") and "stress" in pred:
            stress = (weight[:, None] * (voigt(pred["stress"]) - voigt(batch.stress)) ** 2).sum()  # (frames, 6)
        return [energy, forces, stress]

    def evaluate_batch(self, model: Potential, batch: Batch) -> list[float]:
        """Error sums of one batch (add them up over batches and processes, then :meth:`summarize`): the metrics'
        sums, then the loss's weighted squares."""
        pred = predict_batch(model, batch, create_graph=False)
        acc = MetricAccumulator()
        acc.update(pred, batch)
        return acc.totals() + [float(sq.detach()) for sq in self.weighted_squares(pred, batch)]

    def summarize(self, totals: list[float]) -> dict[str, float]:
        """Unweighted MAE/RMSE metrics, and ``loss``: the training loss over all the frames evaluated."""
        metrics_totals, squares = totals[:-3], totals[-3:]
        metrics = MetricAccumulator().result(metrics_totals)
        counts = [metrics_totals[3 * MetricAccumulator.NAMES.index(name) + 2]
                  for name in ("energy_per_atom", "forces", "stress")]
        metrics["loss"] = sum(w * sq / n for w, sq, n in zip(self.term_weights(), squares, counts) if w and n)
        return metrics


def molecules_of(graph: Data) -> list[np.ndarray]:
    """Atom indices of each molecule of a graph with ``molecule`` ids."""
    labels = graph.molecule.numpy()
    order = np.argsort(labels, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(labels[order])) + 1)


class PretrainTask:
    """Self-supervised: masked-atom direction prediction, denoising, or both at once.

    Graphs must carry ``molecule`` ids (``prepare_data(..., with_molecules=True)``).
    """

    num_totals = 4  # loss sum, frames, sum of squared vectors, atoms
    # a validation vector RMS beyond this (eV/Å for the force target) or not finite: the pretraining diverged
    DIVERGED_RMS = 1e6

    def __init__(self, config: PretrainConfig, species: list[str], augment_rotations: bool):
        self.p = config
        self.name = config.task
        self.species = list(species)
        self.augment_rotations = augment_rotations

    def transform(self, graph: Data, generator: torch.Generator) -> Data:
        p = self.p
        if p.task in ("masked", "masked+denoise"):
            rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
            symbols = [self.species[s] for s in graph.species.tolist()]
            frame = choose_masks(graph, molecules_of(graph), symbols, p.mask_ratio, rng, p.mask_heavy)
            graph = masked_graph(graph, frame)
        if p.task in ("denoise", "masked+denoise"):
            masked_targets = getattr(graph, "target_vectors", None)
            graph = noisy_graph(graph, p.noise_sigma, generator)
            if masked_targets is not None:
                graph.noise_vectors = graph.target_vectors
                graph.target_vectors = masked_targets
        if self.augment_rotations:
            graph = rotate_graph(graph, random_rotation(generator, graph.pos.dtype))
        return graph

    @property
    def eval_transform(self):
        return self.transform  # with fixed per-frame seeds: comparable across epochs

    def refit(self, model: nn.Module, train: GraphDataset) -> None:
        """Nothing is fitted in closed form during pretraining."""

    def predict(self, model: nn.Module, batch: Batch) -> Tensor:
        """The per-atom pretraining vectors: the potential's forces (target ``force``) or the vector head's."""
        if self.p.target == "force":
            masked = self.p.task in ("masked", "masked+denoise")
            mask_state = batch.target_mask.long() if masked else None
            return model(batch.species, batch.edge_index, edge_vectors(batch), mask_state)
        return model(batch.species, batch.edge_index, edge_vectors(batch))

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        return self._loss(self.predict(model, batch), batch)

    def _loss(self, predicted: Tensor, batch: Batch) -> Tensor:
        p = self.p
        sigma = p.noise_sigma if p.noise_target == "displacement" else 1.0  # target: sigma*eps (Å) or eps
        if p.task == "denoise":
            return noise_loss(predicted, sigma * batch.target_vectors, batch.target_mask)
        loss = cosine_loss(predicted, batch.target_vectors, batch.target_mask)
        if p.distance_weight > 0:
            loss = loss + p.distance_weight * distance_loss(predicted, batch.target_vectors, batch.target_mask)
        if p.task == "masked+denoise":
            everyone = torch.ones_like(batch.target_mask)
            loss = loss + p.denoise_weight * noise_loss(predicted, sigma * batch.noise_vectors, everyone)
        return loss

    def evaluate_batch(self, model: nn.Module, batch: Batch) -> list[float]:
        # the force target differentiates the energy: gradients on, nothing kept
        with torch.set_grad_enabled(self.p.target == "force"):
            predicted = self.predict(model, batch)
            loss = float(self._loss(predicted, batch).detach())
        return [loss * batch.num_graphs, float(batch.num_graphs), float(predicted.detach().double().square().sum()),
                float(predicted.shape[0])]

    def summarize(self, totals: list[float]) -> dict[str, float]:
        """Loss and the RMS of the predicted vectors over all atoms: the cosine loss does not see their size,
        so a run whose outputs grow without bound (too high a learning rate) is stopped here, not finetuned."""
        rms = float(np.sqrt(totals[2] / max(totals[3], 1.0)))
        if not np.isfinite(rms) or rms > self.DIVERGED_RMS or (totals[3] and rms == 0.0):
            raise UserError(f"pretraining diverged: the RMS of the model's {self.p.target} output on the validation "
                            f"frames is {rms:.3g}; lower train.lr (the masked paper used 1e-4 with weight decay 1e-4)")
        return {"loss": totals[0] / max(totals[1], 1.0), "vector_rms": rms}

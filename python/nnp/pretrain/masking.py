"""Masked-atom pretraining targets (Zhang, Li, Barati Farimani 2024, "Masked Pretraining Strategy for
Neural Potentials"; public code: StevenZhang904/Masked_Pretrain, a fork of
yuyangw/Denoise-Pretrain-ML-Potential).

Per frame, ``n = max(1, floor(mask_ratio x M + 0.5))`` of the ``M`` molecules with at least two atoms
are chosen (round half up; the paper's ``int(M x ratio)`` floors, identical for its 0.5 x 258 and for
0.5 x 32); in each, one hydrogen (optionally any atom) is removed from the graph entirely. A vector on
every *remaining* atom of that molecule must point to the removed atom (bonded, minimum image); the
loss is ``1 - mean cosine similarity`` over those atoms.

What the vector is (``pretrain.target``):

* ``force`` (the paper): the potential's own force. For conservative models (EGNN, GNS, GemNet-T) it
  is ``-dE/dx`` of the whole :class:`~nnp.models.potential.Potential`, energy readout included,
  differentiated again for the loss; for GemNet-dT the direct force head. Every weight transfers to
  finetuning (:func:`nnp.train.finetune.load_pretrained_backbone`).
* ``vector_head`` (nnp's earlier variant): a separate equivariant vector head on the backbone's node
  features; finetuning drops it and re-initialises the readout.

Mask embedding (``pretrain.mask_embedding``, target ``force``): as in the paper's EGNN and GNS, a
learned 2-row embedding is added to the input embedding of every atom during pretraining: row 1 on
the remaining atoms of masked molecules, row 0 on all other atoms; finetuning and inference add
nothing. It lives in the pretraining wrapper (:class:`~nnp.models.heads.ForcePretrainModel`), never in
the potential.

Kept differences from the paper's code, and why:

* GNS: the paper's GNS decodes forces directly (its "force decoder" gives the pretraining vector);
  nnp's GNS is conservative (energy decoder, forces ``-dE/dx``), so its pretraining vector is
  ``-dE/dx`` like EGNN's. Making GNS direct-force would change the model zoo and LAMMPS contract.
* Molecules come from covalent radii (``d < bond_scale x (r_i + r_j)``, any molecule, periodic),
  not from the O,H,H order of the paper's water files; the removed H is drawn uniformly among the
  molecule's hydrogens (the paper: one of the two H of a water with probability 1/2, the same thing).
* Masks are drawn per frame from a per-frame seed (reproducible, independent of batching), and the
  validation masks are fixed; the paper redraws them with NumPy's global generator.
* The paper's EGNN embeds ``mask`` with an ``nn.Embedding(max_atom_type, hidden)`` of which only rows
  0 and 1 are ever used; nnp's has those two rows.
* Denoising as the paper ran it on water (``noise_sigma: 1.0``, ``noise_target: displacement``,
  target ``force``): the force output regresses the raw noise vector ``sigma x eps`` (MSE, Å), all
  atoms, no mask; note its sign: the force is trained to point *along* the displacement, away from
  the clean structure. nnp keeps the paper's sign for that variant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data



@dataclass
class MaskedFrame:
    """Which atoms to drop and, for the atoms that keep a target, the vector to the dropped atom."""

    removed: np.ndarray  # indices of removed atoms (in the full frame)
    target_atoms: np.ndarray  # indices (in the full frame) of atoms that carry a target
    targets: np.ndarray  # (len(target_atoms), 3) vectors from each target atom to its removed atom


def masked_count(ratio: float, molecules: int) -> int:
    """Molecules masked per frame: ``floor(ratio x molecules + 0.5)`` (round half up), at least 1 when
    there is a molecule to mask, at most ``molecules``."""
    if molecules == 0 or ratio <= 0:
        return 0
    return min(molecules, max(1, int(np.floor(ratio * molecules + 0.5))))


def choose_masks(
    graph: Data, molecules: list[np.ndarray], symbols: list[str], ratio: float, rng: np.random.Generator,
    mask_heavy: bool = False,
) -> MaskedFrame:
    """Pick molecules and the atom to hide in each; targets use the bonded (minimum) image."""
    candidates = [m for m in molecules if len(m) >= 2]
    n_pick = masked_count(ratio, len(candidates))
    chosen = rng.choice(len(candidates), size=n_pick, replace=False) if n_pick else []
    positions = graph.pos.double().numpy()
    cell = graph.cell[0].double().numpy()
    pbc = graph.pbc[0].numpy()
    removed, target_atoms, targets = [], [], []
    for k in chosen:
        molecule = candidates[k]
        pool = [a for a in molecule if mask_heavy or symbols[a] == "H"]
        if not pool:
            continue
        hidden = int(rng.choice(pool))
        rest = [a for a in molecule if a != hidden]
        vectors = positions[hidden] - positions[rest]
        if pbc.any():
            from ase.geometry import find_mic

            vectors, _ = find_mic(vectors, cell, pbc)
        removed.append(hidden)
        target_atoms.extend(rest)
        targets.append(vectors)
    return MaskedFrame(
        removed=np.array(removed, dtype=np.int64),
        target_atoms=np.array(target_atoms, dtype=np.int64),
        targets=np.concatenate(targets) if targets else np.zeros((0, 3)),
    )


def remove_atoms(graph: Data, removed: np.ndarray) -> tuple[Data, Tensor]:
    """The graph without ``removed`` nodes and their edges; also returns old -> new index map (-1: gone)."""
    n = graph.num_nodes
    keep = torch.ones(n, dtype=torch.bool)
    keep[torch.as_tensor(removed, dtype=torch.long)] = False
    new_index = torch.full((n,), -1, dtype=torch.long)
    new_index[keep] = torch.arange(int(keep.sum()))
    i, j = graph.edge_index
    edge_keep = keep[i] & keep[j]
    out = Data(
        pos=graph.pos[keep],
        species=graph.species[keep],
        edge_index=new_index[graph.edge_index[:, edge_keep]],
        shifts=graph.shifts[edge_keep],
        cell=graph.cell,
        pbc=graph.pbc,
        num_nodes=int(keep.sum()),
    )
    return out, new_index


def masked_graph(graph: Data, frame: MaskedFrame) -> Data:
    """Graph with the masked atoms removed, plus ``target_vectors (N,3)`` and ``target_mask (N,)``."""
    out, new_index = remove_atoms(graph, frame.removed)
    targets = torch.zeros((out.num_nodes, 3), dtype=graph.pos.dtype)
    mask = torch.zeros(out.num_nodes, dtype=torch.bool)
    rows = new_index[torch.as_tensor(frame.target_atoms, dtype=torch.long)]
    targets[rows] = torch.as_tensor(frame.targets, dtype=graph.pos.dtype)
    mask[rows] = True
    out.target_vectors = targets
    out.target_mask = mask
    return out


def cosine_loss(predicted: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """``1 - mean cos(predicted_i, target_i)`` over the atoms where ``mask`` is True."""
    if int(mask.sum()) == 0:
        return predicted.sum() * 0.0
    p, t = predicted[mask], target[mask]
    cos = (p * t).sum(-1) / (p.norm(dim=-1) * t.norm(dim=-1)).clamp_min(1e-9)
    return 1.0 - cos.mean()


def distance_loss(predicted: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Optional extra term: squared error of the predicted vector length against the true distance (Å)."""
    if int(mask.sum()) == 0:
        return predicted.sum() * 0.0
    return ((predicted[mask].norm(dim=-1) - target[mask].norm(dim=-1)) ** 2).mean()


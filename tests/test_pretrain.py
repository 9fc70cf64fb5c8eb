"""Masked-atom and denoising pretraining, finetuning transfer, and data-parallel training."""

from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from helpers import water_box
from nnp.config import config_from_dict
from nnp.data.graph import atoms_to_graph
from nnp.data.neighbors import neighbor_list
from nnp.pretrain.denoising import noise_loss, noisy_graph
from nnp.pretrain.masking import choose_masks, cosine_loss, masked_graph
from nnp.data.molecules import find_molecules
from nnp.train.trainer import load_checkpoint, run_pretraining, run_training
from test_training import small_config


def aspirin() -> Atoms:
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles("CC(=O)OC1=CC=CC=C1C(=O)O"))
    AllChem.EmbedMolecule(mol, randomSeed=0)
    return Atoms([a.GetSymbol() for a in mol.GetAtoms()], positions=mol.GetConformer().GetPositions())


def test_connectivity_finds_water_molecules_across_the_boundary():
    atoms = water_box(seed=0)
    atoms.positions += [2.9, 2.9, 2.9]  # push molecules across the periodic boundary
    atoms.wrap()
    molecules = find_molecules(atoms)
    assert len(molecules) == 8
    for m in molecules:
        assert sorted(atoms[m].get_chemical_symbols()) == ["H", "H", "O"]


def test_connectivity_finds_aspirin_and_dimer():
    single = aspirin()
    assert [len(m) for m in find_molecules(single)] == [21]
    dimer = single + single.copy()
    dimer.positions[21:] += [8.0, 0, 0]
    assert sorted(len(m) for m in find_molecules(dimer)) == [21, 21]


def test_masking_removes_exactly_the_chosen_hydrogens_with_minimum_image_targets():
    atoms = water_box(seed=1)
    atoms.positions += [3.0, 0.0, 0.0]
    atoms.wrap()
    graph = atoms_to_graph(atoms, ["H", "O"], 3.0, torch.float64, with_labels=False)
    molecules = find_molecules(atoms)
    rng = np.random.default_rng(0)
    frame = choose_masks(graph, molecules, atoms.get_chemical_symbols(), 0.5, rng)
    assert len(frame.removed) == 4
    assert all(atoms[int(k)].symbol == "H" for k in frame.removed)
    out = masked_graph(graph, frame)
    assert out.num_nodes == len(atoms) - 4
    assert int(out.target_mask.sum()) == 8  # two remaining atoms per masked molecule
    # every target is the bonded (minimum-image) vector: at most ~1.6 Å for H-O and H-H in water
    lengths = out.target_vectors[out.target_mask].norm(dim=-1)
    assert float(lengths.max()) < 1.8 and float(lengths.min()) > 0.8
    # the reduced graph equals a neighbour list built from scratch on the reduced structure
    reduced = atoms.copy()
    del reduced[[int(k) for k in frame.removed]]
    i, j, s = neighbor_list(reduced.positions, reduced.cell, reduced.pbc, 3.0)
    expected = {(a, b, *c) for a, b, c in zip(i, j, s)}
    shifts_int = np.rint(out.shifts.numpy() @ np.linalg.inv(np.asarray(atoms.cell))).astype(int)
    got = {(a, b, *c) for (a, b), c in zip(out.edge_index.T.tolist(), shifts_int.tolist())}
    assert got == expected


def test_mask_heavy_atoms_option():
    atoms = aspirin()
    graph = atoms_to_graph(atoms, ["H", "C", "O"], 3.0, torch.float64, with_labels=False)
    seen = set()
    for seed in range(20):
        frame = choose_masks(graph, find_molecules(atoms), atoms.get_chemical_symbols(), 1.0,
                             np.random.default_rng(seed), mask_heavy=True)
        seen.add(atoms[int(frame.removed[0])].symbol)
    assert "C" in seen and "H" in seen


def test_cosine_and_noise_losses_on_hand_checked_cases():
    t = torch.tensor([[1.0, 0, 0], [0, 2.0, 0], [0, 0, 3.0]])
    mask = torch.tensor([True, True, False])
    assert float(cosine_loss(t * 5, t, mask)) == pytest.approx(0.0, abs=1e-7)
    assert float(cosine_loss(-t, t, mask)) == pytest.approx(2.0)
    orthogonal = torch.tensor([[0, 1.0, 0], [1.0, 0, 0], [9.0, 9, 9]])
    assert float(cosine_loss(orthogonal, t, mask)) == pytest.approx(1.0)
    half = torch.tensor([[1.0, 1.0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    assert float(cosine_loss(half, t, mask)) == pytest.approx(1 - (0.5**0.5 + 1) / 2)
    assert float(noise_loss(t, torch.zeros(3, 3), torch.ones(3, dtype=torch.bool))) == pytest.approx(14 / 9)


def test_noisy_graph_has_requested_width():
    atoms = water_box(n_side=3, seed=2)
    graph = atoms_to_graph(atoms, ["H", "O"], 3.0, torch.float64, with_labels=False)
    out = noisy_graph(graph, 0.2, torch.Generator().manual_seed(0))
    displacement = out.pos - graph.pos
    assert torch.allclose(displacement, 0.2 * out.target_vectors)
    assert float(displacement.std()) == pytest.approx(0.2, rel=0.2)


def water_frames(path: Path, n: int = 16) -> Path:
    frames = [water_box(seed=k) for k in range(n)]
    ase.io.write(path, frames, format="extxyz")
    return path


@pytest.mark.parametrize("task", ["masked", "denoise", "masked+denoise"])
def test_pretraining_learns_and_finetuning_transfers_the_backbone(tmp_path, task):
    unlabelled = water_frames(tmp_path / "water.extxyz")
    cfg = small_config(tmp_path, unlabelled, epochs=6, lr=1e-3, batch_size=2)
    cfg["model"] = {"kind": "egnn", "cutoff": 3.0, "hidden": 16, "layers": 2, "num_rbf": 8}
    cfg["pretrain"] = {"task": task, "target": "vector_head", "mask_ratio": 1.0, "noise_sigma": 0.2}
    cfg["output_dir"] = str(tmp_path / "pre")
    summary = run_pretraining(config_from_dict(cfg), progress=False)
    history = load_checkpoint(tmp_path / "pre" / "last.ckpt")["history"]
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    assert all(0 < h["val_vector_rms"] < 1e6 for h in history)  # the size the cosine loss does not see
    pretrained = load_checkpoint(summary["checkpoint"])
    assert any(k.startswith("head.") for k in pretrained["model"])

    # finetune on the same frames labelled by a fixed random float64 potential (a smooth many-body
    # energy surface; the test is about the weight transfer, not the labels)
    from helpers import small_model
    from nnp.calculator import NNPCalculator
    from nnp.export import export_model

    teacher = export_model(small_model(cutoff=3.0, layers=2), tmp_path / "teacher.nnp.pt")
    labelled = []
    for atoms in ase.io.read(unlabelled, ":"):
        atoms.calc = NNPCalculator(teacher)
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
        labelled.append(atoms)
    ase.io.write(tmp_path / "labelled.extxyz", labelled, format="extxyz")
    fine = small_config(tmp_path, tmp_path / "labelled.extxyz", epochs=1)
    fine["model"] = cfg["model"]
    fine["output_dir"] = str(tmp_path / "fine")
    fine["finetune"] = {"from_checkpoint": summary["checkpoint"], "freeze_backbone_epochs": 1}
    run_training(config_from_dict(fine), progress=False)
    tuned = load_checkpoint(tmp_path / "fine" / "last.ckpt")["model"]
    assert not any(k.startswith("head.") for k in tuned)
    source = pretrained["model"]
    frozen = [k for k in source if k.startswith("backbone.") and not k.startswith("backbone.readout")]
    assert frozen
    for key in frozen:  # frozen for the single epoch: still exactly the pretrained tensors
        torch.testing.assert_close(tuned[key], source[key], rtol=0, atol=0)


# -- the paper's target: the potential's own force -------------------------------------------------

def test_mask_ratio_rounds_half_up_with_at_least_one_molecule():
    from nnp.pretrain.masking import masked_count

    assert masked_count(0.5, 258) == 129 and masked_count(0.5, 32) == 16
    assert masked_count(0.5, 7) == 4  # 3.5 rounds up (Python's round() would give 4 here, 2 for 2.5)
    assert masked_count(0.5, 5) == 3 and masked_count(0.3, 5) == 2  # 2.5 -> 3, 1.5 -> 2
    assert masked_count(0.01, 8) == 1 and masked_count(1.0, 8) == 8 and masked_count(0.5, 0) == 0
    atoms = water_box(seed=3)  # 8 molecules, ratio 0.5: 4 hydrogens removed, 8 atoms carry a target
    graph = atoms_to_graph(atoms, ["H", "O"], 3.0, torch.float64, with_labels=False)
    frame = choose_masks(graph, find_molecules(atoms), atoms.get_chemical_symbols(), 0.5, np.random.default_rng(1))
    assert len(frame.removed) == 4 and len(frame.target_atoms) == 8


def _force_model(kind="egnn", mask_embedding=True):
    from helpers import small_model
    from nnp.models.heads import ForcePretrainModel

    return ForcePretrainModel(small_model(cutoff=3.0, layers=2, kind=kind), mask_embedding)


def _masked_batch(seed=0):
    from torch_geometric.data import Batch

    atoms = water_box(seed=seed)
    graph = atoms_to_graph(atoms, ["H", "O"], 3.0, torch.float64, with_labels=False)
    frame = choose_masks(graph, find_molecules(atoms), atoms.get_chemical_symbols(), 0.5,
                         np.random.default_rng(seed))
    return Batch.from_data_list([masked_graph(graph, frame)])


def _task(**pretrain):
    from nnp.config import PretrainConfig
    from nnp.train.tasks import PretrainTask

    return PretrainTask(PretrainConfig(**pretrain), ["H", "O"], False)


@pytest.mark.parametrize("kind", ["egnn", "gns", "painn"])
def test_force_target_loss_is_the_cosine_of_minus_grad_energy(kind):
    """The pretraining vector is -dE/dx of the whole potential: a central finite difference of the energy
    (mask embedding included) reproduces it, and the loss is the cosine loss of exactly those forces."""
    from nnp.data.graph import edge_vectors

    model = _force_model(kind).double()
    model.eval()
    batch = _masked_batch()
    task = _task(task="masked", target="force")
    mask_state = batch.target_mask.long()
    forces = model(batch.species, batch.edge_index, edge_vectors(batch), mask_state).detach()

    def energy(pos):
        shifted = batch.clone()
        shifted.pos = pos
        model._input.__dict__["mask_offset"] = model.mask_embedding(mask_state)
        try:
            e = model.potential.atom_energies(batch.species, batch.edge_index, edge_vectors(shifted))
            e = e - model.potential.reference_energies[batch.species]  # constant; large numbers cancel badly
            return float(e.detach().sum())
        finally:
            model._input.__dict__.pop("mask_offset")

    h = 1e-4
    for atom in (0, int(torch.nonzero(batch.target_mask)[0])):
        for axis in range(3):
            plus, minus = batch.pos.clone(), batch.pos.clone()
            plus[atom, axis] += h
            minus[atom, axis] -= h
            fd = -(energy(plus) - energy(minus)) / (2 * h)
            assert fd == pytest.approx(float(forces[atom, axis]), rel=1e-5, abs=1e-8)
    expected = cosine_loss(forces, batch.target_vectors, batch.target_mask)
    assert float(task.loss(model, batch)) == pytest.approx(float(expected), rel=1e-10)
    # training mode: the loss is differentiable through the force (double backprop) into every weight
    model.train()
    loss = task.loss(model, batch)
    loss.backward()
    # (the readout's last bias is a constant energy: no force, no gradient)
    readout = [p for n, p in model.named_parameters() if n.startswith(model.head_prefixes()) and p.dim() > 1]
    assert readout and all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in readout)
    assert float(model.mask_embedding.weight.grad[1].abs().sum()) > 0


def test_mask_embedding_goes_to_the_atoms_as_specified_and_only_while_pretraining():
    from nnp.data.graph import edge_vectors

    model = _force_model().double()
    batch = _masked_batch(seed=2)
    state = batch.target_mask.long()
    seen = {}
    model._input.register_forward_hook(lambda m, i, o: seen.__setitem__("h", o.detach()))
    model(batch.species, batch.edge_index, edge_vectors(batch), state)
    with_mask = seen["h"]
    plain = model.potential.backbone.embedding(batch.species).detach()
    rows = model.mask_embedding.weight.detach()
    torch.testing.assert_close(with_mask, plain + rows[state])  # row 1: masked molecules, row 0: the rest
    assert int(state.sum()) == 8 and "mask_offset" not in model._input.__dict__
    model.potential(batch.species, batch.edge_index, edge_vectors(batch), batch.num_nodes)  # the bare potential
    torch.testing.assert_close(seen["h"], plain)
    assert not any("mask" in k for k in model.potential.state_dict())


def test_direct_force_model_pretrains_through_its_force_head():
    from nnp.data.graph import edge_vectors

    model = _force_model("gemnet_dt").double()
    batch = _masked_batch()
    forces = model(batch.species, batch.edge_index, edge_vectors(batch), batch.target_mask.long())
    model._input.__dict__["mask_offset"] = model.mask_embedding(batch.target_mask.long())
    _, direct, grad = model.potential.energy_and_forces(batch.species, batch.edge_index, edge_vectors(batch),
                                                        batch.num_nodes, False)
    model._input.__dict__.pop("mask_offset")
    assert grad is None
    torch.testing.assert_close(forces.detach(), direct.detach())


@pytest.mark.parametrize("task,kind", [("masked", "egnn"), ("denoise", "egnn"), ("masked", "painn")])
def test_force_pretraining_transfers_every_weight_and_never_the_mask_embedding(tmp_path, task, kind):
    unlabelled = water_frames(tmp_path / "water.extxyz", n=10)
    cfg = small_config(tmp_path, unlabelled, epochs=2, lr=1e-3, batch_size=2)
    cfg["model"]["kind"] = kind
    cfg["pretrain"] = {"task": task, "target": "force", "noise_sigma": 0.2}
    cfg["output_dir"] = str(tmp_path / "pre")
    summary = run_pretraining(config_from_dict(cfg), progress=False)
    pretrained = load_checkpoint(summary["checkpoint"])["model"]
    assert any(k.startswith("mask_embedding") for k in pretrained) == (task == "masked")

    from nnp.models.build import build_potential
    from nnp.train.finetune import load_pretrained_backbone

    model = build_potential(config_from_dict(cfg).model, ["H", "O"], 8.0).double()
    transferred = load_pretrained_backbone(model, summary["checkpoint"], None)
    weights = {k for k, _ in model.named_parameters()}
    assert weights <= set(transferred)  # every weight, energy readout included (and the backbone's buffers)
    assert {k for k in model.state_dict() if k.startswith("backbone.")} == set(transferred)
    state = model.state_dict()
    for key in weights:
        torch.testing.assert_close(state[key], pretrained["potential." + key], rtol=0, atol=0)
    assert not any("mask" in k for k in state)
    assert load_pretrained_backbone(model, summary["checkpoint"], True) != transferred  # readout opt-out


def test_a_diverged_pretraining_is_an_error_not_a_checkpoint():
    """The cosine loss cannot see the output's size: a run whose forces grew without bound (or died) must stop
    with an error naming the fix, never hand a dead model to finetuning (RESULTS 15, masked at lr 2e-3)."""
    from nnp.config import PretrainConfig
    from nnp.errors import UserError
    from nnp.train.tasks import PretrainTask

    task = PretrainTask(PretrainConfig(task="masked", target="force"), ["H", "O"], False)
    assert task.summarize([1.0, 2.0, 8.0, 2.0]) == {"loss": 0.5, "vector_rms": 2.0}
    for sum_of_squares in (1e40, float("inf"), float("nan"), 0.0):
        with pytest.raises(UserError, match="pretraining diverged.*lower train.lr"):
            task.summarize([1.0, 2.0, sum_of_squares, 2.0])

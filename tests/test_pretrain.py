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
    cfg["pretrain"] = {"task": task, "mask_ratio": 1.0, "noise_sigma": 0.2}
    cfg["output_dir"] = str(tmp_path / "pre")
    summary = run_pretraining(config_from_dict(cfg), progress=False)
    history = load_checkpoint(tmp_path / "pre" / "last.ckpt")["history"]
    assert history[-1]["val_loss"] < history[0]["val_loss"]
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

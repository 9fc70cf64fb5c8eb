"""Contact frames (nnp.data.contacts, `nnp data contacts`): one molecule moved rigidly into another, labelled with
GFN2-xTB, kept up to a wall height."""

import ase.io
import numpy as np
import pytest

from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator
from helpers import water_box
from nnp.chemistry import contact_limit, covalent_radius
from nnp.cli import main
from nnp.data.contacts import contact_candidates, keep_below
from nnp.data.molecules import molecule_labels
from nnp.errors import UserError


def water_cluster(seed: int, count: int = 3) -> "ase.Atoms":
    """``count`` intact waters, randomly turned, on a line 2.9 Å apart (non-periodic; GFN2-xTB in milliseconds)."""
    rng = np.random.default_rng(seed)
    cluster = molecule("H2O")
    cluster.positions += rng.normal(0, 0.02, cluster.positions.shape)
    for k in range(1, count):
        water = molecule("H2O")
        water.rotate(rng.uniform(0, 360), rng.normal(size=3))
        water.positions += [2.9 * k, rng.normal(0, 0.3), rng.normal(0, 0.3)]
        cluster += water
    return cluster


def closest_foreign(atoms, molecule, first, second) -> float:
    symbols = np.array(atoms.get_chemical_symbols())
    return min(atoms.get_distances(i, np.flatnonzero((symbols == second) & (molecule != molecule[i])), mic=True).min()
               for i in np.flatnonzero(symbols == first))


@pytest.mark.parametrize("make", [water_box, water_cluster], ids=["periodic", "cluster"])
def test_a_contact_moves_one_molecule_rigidly_closer_than_the_frame_ever_was(make):
    frames = [make(seed=seed) for seed in range(3)]
    candidates = contact_candidates(frames, sources=3, per_source=6, seed=1)
    contacts = [a for a in candidates if a.info["contact_role"] == "contact"]
    assert len(candidates) == 3 + len(contacts) and len(contacts) >= 15
    assert {a.info["contact_pair"] for a in contacts} >= {"H-H", "O-O"} and any("O" in a.info["contact_pair"]
                                                                                 and "H" in a.info["contact_pair"]
                                                                                 for a in contacts)
    for frame in contacts:
        assert frame.info["config_type"] == "contact"  # what train.config_type_weights reads
        source = frames[frame.info["contact_source"]]
        molecule = molecule_labels(source)
        a, b = frame.info["contact_a"], frame.info["contact_b"]
        first, second = frame.info["contact_pair"].split("-")
        assert source.get_chemical_symbols()[a] == first and source.get_chemical_symbols()[b] == second
        assert molecule[a] != molecule[b]
        distance = frame.get_distance(a, b, mic=True)
        assert distance == pytest.approx(frame.info["contact_distance_A"], abs=1e-9)
        assert float(contact_limit(covalent_radius(first), covalent_radius(second))) <= distance
        assert distance <= closest_foreign(source, molecule, first, second) + 1e-9
        shift = frame.positions - source.positions
        moved = molecule == molecule[b]
        assert np.abs(shift[~moved]).max() == 0  # nothing else moves
        assert np.allclose(shift[moved], shift[moved][0], atol=1e-12)  # one translation: the molecule is rigid
        assert np.linalg.norm(shift[moved][0]) > 0
    again = contact_candidates(frames, sources=3, per_source=6, seed=1)
    assert all(np.array_equal(x.positions, y.positions) for x, y in zip(candidates, again))  # resumable labelling


def test_one_molecule_gives_a_clear_error():
    frame = water_cluster(seed=0)
    single = frame[molecule_labels(frame) == 0]
    with pytest.raises(UserError, match="none of the 2 frames has two molecules"):
        contact_candidates([single, single], sources=1, per_source=1)


def test_keep_below_compares_each_contact_with_its_own_source():
    frames = []
    for source, role, energy in [(0, "source", -10.0), (0, "contact", -9.0), (0, "contact", 15.0), (1, "contact", -5.0),
                                 (2, "source", 100.0), (2, "contact", 101.5)]:
        atoms = water_cluster(seed=0)
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=np.zeros((len(atoms), 3)))
        atoms.info.update(contact_source=source, contact_role=role)
        frames.append(atoms)
    kept, counts = keep_below(frames, max_energy=2.0)
    assert [a.info["contact_energy_eV"] for a in kept] == [1.0, 1.5]
    assert counts == {"contacts": 4, "kept": 2, "too_high": 1, "no_source": 1}


def test_nnp_data_contacts_labels_with_xtb_and_resumes(tmp_path, capsys):
    pytest.importorskip("tblite")
    ase.io.write(tmp_path / "clusters.extxyz", [water_cluster(seed=seed) for seed in range(2)])
    command = ["data", "contacts", str(tmp_path / "clusters.extxyz"), "--output", str(tmp_path / "contacts.extxyz"),
               "--sources", "2", "--per-source", "4", "--max-energy", "3", "--no-progress"]
    assert main(command) == 0
    line = capsys.readouterr().out
    kept = ase.io.read(tmp_path / "contacts.extxyz", ":")
    labelled = ase.io.read(tmp_path / "contacts.labelled.extxyz", ":")
    assert f"{len(kept)} of 8 contact frames from 2 source frames kept" in line
    assert len(labelled) == 10 and 0 < len(kept) <= 8
    energies = {a.info["contact_source"]: a.get_potential_energy() for a in labelled if a.info["contact_role"] == "source"}
    rises = [a.get_potential_energy() - energies[a.info["contact_source"]] for a in labelled
             if a.info["contact_role"] == "contact"]
    assert max(rises) > 0.5  # xTB repels molecules pushed closer than they ever were
    for atoms in kept:
        assert atoms.info["contact_energy_eV"] <= 3.0
        assert atoms.get_forces().shape == (len(atoms), 3) and np.all(np.isfinite(atoms.get_forces()))
    assert len(kept) == sum(r <= 3.0 for r in rises)
    before = (tmp_path / "contacts.labelled.extxyz").read_bytes()
    assert main(command) == 0  # done: nothing is labelled again
    assert (tmp_path / "contacts.labelled.extxyz").read_bytes() == before
    assert len(ase.io.read(tmp_path / "contacts.extxyz", ":")) == len(kept)


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_nnp_data_contacts_refuses_a_wall_height_that_is_not_one(tmp_path, capsys, value):
    ase.io.write(tmp_path / "clusters.extxyz", water_cluster(seed=0))
    assert main(["data", "contacts", str(tmp_path / "clusters.extxyz"), "--output", str(tmp_path / "c.extxyz"),
                 "--max-energy", value]) == 2
    assert "--max-energy is a height in eV above the source frame" in capsys.readouterr().err


def test_nnp_learn_adds_contact_frames_of_its_candidates_to_the_data(tmp_path):
    """One iteration on a water trimer from scratch (xTB labels): the labelled candidates give contact frames, kept
    up to the wall height and merged into the data after the candidates; learn.json counts them as labels; the next
    training gives them ``contacts.weight`` as a loss weight."""
    pytest.importorskip("tblite")
    import yaml

    from nnp.data.generate.xtb import xtb_calculator
    from nnp.learn import learn_config_from_dict, run_learning
    from nnp.learn.labelling import label_frames, read_labelled

    frames = []
    for seed in range(16):
        frame = water_cluster(seed=0)
        frame.positions += np.random.default_rng(seed).normal(0, 0.03, frame.positions.shape)
        frames.append(frame)
    label_frames(frames, tmp_path / "init.extxyz", xtb_calculator)
    ase.io.write(tmp_path / "start.xyz", water_cluster(seed=0))
    (tmp_path / "scratch.yaml").write_text(yaml.safe_dump({
        "name": "trimer", "model": {"kind": "egnn", "cutoff": 4.0, "hidden": 16, "layers": 2, "num_rbf": 8},
        "data": {"val_fraction": 0.2, "test_fraction": 0.0}, "train": {"epochs": 4, "batch_size": 4, "lr": 0.005}}))
    config = learn_config_from_dict({
        "output_dir": str(tmp_path / "run"), "start": str(tmp_path / "scratch.yaml"),
        "initial_data": str(tmp_path / "init.extxyz"), "ensemble": 2, "train": ["train.epochs=4"],
        "explore": {"systems": [{"structure": str(tmp_path / "start.xyz"), "temperatures": [300], "steps": 100,
                                 "replicas": 1}], "timestep_fs": 0.5, "out_freq": 10},
        "deviation": {"lo": 0.0, "hi": 50.0}, "select": {"per_iteration": 3},
        "contacts": {"sources": 2, "per_source": 2, "max_energy": 5.0, "weight": 0.25},
        "stop": {"max_labels": 100, "max_iterations": 1}})
    summary = run_learning(config, progress=False, log=lambda *_: None)
    row = summary["iterations"][0]
    it = tmp_path / "run" / "iter-000"
    candidates, contacts = read_labelled(it / "labelled.extxyz"), read_labelled(it / "contacts.extxyz")
    assert row["contacts"]["contacts"] == 4 and row["contacts"]["kept"] == len(contacts)
    assert row["new_labels"] == len(candidates) + len(contacts) and row["labels"] == 16 + row["new_labels"]
    assert all(a.info["contact_energy_eV"] <= 5.0 for a in contacts)
    merged = ase.io.read(tmp_path / "run" / "data-001.extxyz", ":")
    assert len(merged) == 16 + len(candidates) + len(contacts)
    for frame, contact in zip(merged[16 + len(candidates):], contacts):
        assert np.array_equal(frame.positions, contact.positions)
        source = candidates[contact.info["contact_source"]]  # made from the iteration's own labelled candidates
        moved = np.any(contact.positions != source.positions, axis=1)
        assert 0 < moved.sum() < len(source)
    # the next iteration's members train on data-001 with the contacts' weight (none on the initial data)
    from nnp.config import load_config
    from nnp.learn.loop import contact_weight
    from nnp.train.data import prepare_data

    assert contact_weight(config, tmp_path / "init.extxyz") == []
    override = contact_weight(config, tmp_path / "run" / "data-001.extxyz")
    run = load_config(tmp_path / "scratch.yaml", [f"data.path={tmp_path / 'run' / 'data-001.extxyz'}", *override])
    prepared = prepare_data(run, progress=False)
    weights = [float(split.graph(p).weight) for split in prepared.splits.values() for p in range(len(split))]
    assert sorted(weights) == sorted([0.25] * len(contacts) + [1.0] * (16 + len(candidates)))


def test_nnp_learn_refuses_contacts_for_a_single_molecule(tmp_path):
    from nnp.config import ConfigError
    from nnp.learn import learn_config_from_dict, run_learning

    single = molecule("H2O")
    single.calc = SinglePointCalculator(single, energy=0.0, forces=np.zeros((3, 3)))
    ase.io.write(tmp_path / "init.extxyz", [single])
    config = learn_config_from_dict({
        "output_dir": str(tmp_path / "run"), "start": "organic-xtb", "initial_data": str(tmp_path / "init.extxyz"),
        "explore": {"systems": [{"structure": str(tmp_path / "init.extxyz")}]}, "contacts": {"sources": 2}})
    with pytest.raises(ConfigError, match="no frame of .* has two molecules"):
        run_learning(config, progress=False, log=lambda *_: None)
    with pytest.raises(ConfigError, match="contacts needs sources >= 0"):
        learn_config_from_dict({**config.to_dict(), "contacts": {"sources": 2, "max_energy": float("nan")}})

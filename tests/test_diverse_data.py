"""diverse-xtb: random molecules (valid, unique, deterministic, aspirin excluded), resumable generation, card, pack."""

import hashlib
import json

import ase.io
import numpy as np
import pytest

pytest.importorskip("tblite")
pytest.importorskip("rdkit")

from rdkit import Chem

from helpers import kill_during_generation
from nnp.cli import main
from nnp.data.generate.diverse import generate_diverse_xtb, write_partial_card
from nnp.data.generate.molecule_graphs import ASPIRIN, canonical_smiles, composition, embeds, random_molecules
from nnp.data.generate.xtb import Segment, sample_md
from nnp.data.pack import PackedDataset, pack_dataset

SMALL = dict(n_molecules=2, frames_per_molecule=4, max_heavy_atoms=4, seed=3, progress=False)


def test_random_molecules_are_valid_unique_and_deterministic():
    a = random_molecules(200, seed=1)
    assert a.smiles == random_molecules(200, seed=1).smiles
    assert a.smiles != random_molecules(200, seed=2).smiles
    assert len(set(a.smiles)) == 200
    for s in a.smiles:
        mol = Chem.AddHs(Chem.MolFromSmiles(s))
        assert mol is not None and Chem.MolToSmiles(Chem.RemoveHs(mol)) == s
        assert Chem.GetFormalCharge(mol) == 0
        assert sum(atom.GetAtomicNum() for atom in mol.GetAtoms()) % 2 == 0  # closed shell
        assert 1 <= mol.GetNumHeavyAtoms() <= 9
        assert {atom.GetSymbol() for atom in mol.GetAtoms()} <= {"H", "C", "N", "O", "F", "S", "Cl"}
    stats = composition(a.smiles)
    assert stats["molecules"] == 200
    assert sum(v for k, v in stats["ring_count_histogram"].items() if k != "0") > 30  # not all chains
    assert stats["molecules_with_aromatic_ring"] > 0
    groups = stats["molecules_with_functional_group"]
    assert min(groups[g] for g in ("alcohol", "ether", "carbonyl", "amine", "halide", "alkene")) > 0
    assert set(stats["molecules_containing_element"]) == {"H", "C", "N", "O", "F", "S", "Cl"}
    assert embeds("CCO") and not embeds("Oc1c2ccnc1CC2")  # a bridged benzene has no 3D structure


def test_a_molecule_that_keeps_failing_is_given_up_not_looped_on(tmp_path):
    from tblite.ase import TBLite

    from nnp.data.generate.diverse import conformer

    def one_scf_iteration():  # a real calculator whose SCF cannot converge
        return TBLite(method="GFN2-xTB", verbosity=0, accuracy=0.01, max_iterations=1)

    segments = [Segment("ethanol", lambda: conformer("CCO", 1), 500.0, 3)]
    path = sample_md(tmp_path / "fail.extxyz", segments, "fail", interval=2, equilibration_steps=4, progress=False,
                     calculator=one_scf_iteration, max_failures=5)
    card = json.loads(path.with_name(path.name + ".card.json").read_text())
    assert card["frames"] == 0 and path.read_text() == ""
    assert card["failed_equilibrations"] == 1 and card["dropped_failed_scf"] == 5
    assert card["skipped_segments"] == 1 and card["skipped_frames"] == 3


def test_excluded_molecules_are_never_returned():
    first = random_molecules(30, seed=0).smiles
    victim = first[5]
    again = random_molecules(30, seed=0, exclude=(ASPIRIN, victim))
    assert victim not in again.smiles and again.excluded[victim] >= 1
    assert canonical_smiles("O=C(O)c1ccccc1OC(C)=O") in again.excluded  # aspirin, whatever the spelling
    big = random_molecules(100, seed=0, max_heavy_atoms=13)
    assert canonical_smiles(ASPIRIN) not in big.smiles
    with pytest.raises(RuntimeError, match="distinct molecules"):
        random_molecules(50, seed=0, max_heavy_atoms=1, max_attempts=300)  # only six one-heavy-atom molecules exist


def test_cli_generates_labelled_frames_with_a_card(tmp_path, capsys):
    out = tmp_path / "diverse.extxyz"
    assert main(["data", "generate", "diverse-xtb", "--output", str(out), "--molecules", "2",
                 "--frames-per-molecule", "3", "--seed", "5"]) == 0
    frames = ase.io.read(out, ":")
    assert len(frames) == 6
    assert sorted(f.info["temperature_K"] for f in frames) == [500.0] * 4 + [1000.0] * 2  # 2 + 1 per molecule
    for f in frames:
        assert np.isfinite(f.get_potential_energy()) and np.isfinite(f.get_forces()).all()
        assert np.abs(f.get_forces().sum(0)).max() < 1e-3  # isolated molecule: no net force
    card = json.loads(out.with_name(out.name + ".card.json").read_text())
    smiles = json.loads(out.with_name(out.name + ".molecules.json").read_text())
    assert card["complete"] and card["frames"] == 6 and card["composition"]["molecules"] == 2 == len(smiles)
    assert {f.info["system"].split("@")[0] for f in frames} == set(smiles)
    assert card["exclusions"][0]["canonical_smiles"] == canonical_smiles(ASPIRIN)
    stats = card["frame_statistics"]
    symbols = [s for f in frames for s in f.get_chemical_symbols()]
    assert stats["frames"] == 6 and stats["atoms_per_element"] == {s: symbols.count(s) for s in set(symbols)}
    assert stats["frames_containing_element"]["H"] == 6
    assert set(stats["force_component_rms_eV_per_A"]) == set(symbols)
    assert card["temperatures_K"] == [500.0, 1000.0] and "GFN2-xTB" in card["level_of_theory"]
    assert card["generation_seconds"] > 0 and card["finite_difference_check"]["frames_checked"] >= 1
    assert "aspirin" in out.with_name(out.name + ".card.md").read_text()
    # a generation's extxyz packs, and the pack holds the same frames
    pack = PackedDataset(pack_dataset([out], tmp_path / "diverse.pack", progress=False))
    assert pack.metadata["n_frames"] == 6
    np.testing.assert_allclose(pack.atoms(5).get_forces(), frames[5].get_forces())
    assert pack.atoms(2).get_potential_energy() == pytest.approx(frames[2].get_potential_energy())


def test_killed_generation_resumes_to_the_same_frames(tmp_path):
    reference = generate_diverse_xtb(tmp_path / "straight.extxyz", **SMALL)
    target = tmp_path / "killed.extxyz"
    code = ("from nnp.data.generate.diverse import generate_diverse_xtb; "
            f"generate_diverse_xtb({str(target)!r}, **{SMALL!r})")
    state = target.with_name(target.name + ".state.json")
    kill_during_generation(code, state, frames=3, timeout=300, poll=0.02)
    done = json.loads(state.read_text())["frames"]
    card = json.loads(write_partial_card(target, n_molecules=2, frames_per_molecule=4, max_heavy_atoms=4,
                                         seed=3).read_text())
    assert not card["complete"] and card["frames"] == card["frame_statistics"]["frames"] == done
    with open(target, "a") as handle:  # as if killed in the middle of writing the next frame
        handle.write("9\nProperties=species:S:1:pos:R:3 energy=-1.0\nC 0.0 0.0")
    generate_diverse_xtb(target, **SMALL)
    a, b = ase.io.read(reference, ":"), ase.io.read(target, ":")
    assert len(a) == len(b) == 8
    card = json.loads(write_partial_card(target, n_molecules=2, frames_per_molecule=4, max_heavy_atoms=4,
                                         seed=3).read_text())  # of the finished generation
    assert card["complete"] and card["segments_completed"] == card["systems"] and card["frames"] == 8
    for x, y in zip(a, b):  # SCF from a cached guess: agreement to SCF precision
        assert x.info["system"] == y.info["system"]
        np.testing.assert_allclose(x.positions, y.positions, atol=1e-6)
        np.testing.assert_allclose(x.get_forces(), y.get_forces(), atol=1e-4)


def test_resume_checks_file_and_parameters(tmp_path):
    path = generate_diverse_xtb(tmp_path / "d.extxyz", n_molecules=1, frames_per_molecule=2, max_heavy_atoms=3,
                                progress=False)
    text = path.read_text()
    generate_diverse_xtb(path, n_molecules=1, frames_per_molecule=2, max_heavy_atoms=3, progress=False)
    assert path.read_text() == text  # finished: nothing recomputed or appended
    with pytest.raises(ValueError, match="different parameters"):
        generate_diverse_xtb(path, n_molecules=1, frames_per_molecule=3, max_heavy_atoms=3, progress=False)
    path.write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match="file was modified"):
        generate_diverse_xtb(path, n_molecules=1, frames_per_molecule=2, max_heavy_atoms=3, progress=False)


def test_shards_partition_the_molecules_and_pack_together(tmp_path):
    common = dict(n_molecules=3, frames_per_molecule=1, temperatures=(500.0,), max_heavy_atoms=3, progress=False)
    paths = [generate_diverse_xtb(tmp_path / f"shard{k}.extxyz", shard=k, shards=2, **common) for k in range(2)]
    systems = [[f.info["system"].split("@")[0] for f in ase.io.read(p, ":")] for p in paths]
    assert len(systems[0]) == 2 and len(systems[1]) == 1
    assert systems[0] + systems[1] != random_molecules(3, seed=0, max_heavy_atoms=3).smiles  # interleaved
    assert sorted(systems[0] + systems[1]) == sorted(random_molecules(3, seed=0, max_heavy_atoms=3).smiles)
    card = json.loads(paths[1].with_name(paths[1].name + ".card.json").read_text())
    assert card["parameters"]["shard"] == [1, 2] and card["composition"]["molecules"] == 1
    assert PackedDataset(pack_dataset(paths, tmp_path / "all.pack", progress=False)).metadata["n_frames"] == 3
    # one card for the whole set: counts summed, composition and statistics over every shard's frames
    assert main(["data", "merge-cards", *map(str, paths), "--output", str(tmp_path / "all.card.json")]) == 0
    merged = json.loads((tmp_path / "all.card.json").read_text())
    frames = [f for p in paths for f in ase.io.read(p, ":")]
    symbols = [s for f in frames for s in f.get_chemical_symbols()]
    assert merged["complete"] and merged["frames"] == merged["frame_statistics"]["frames"] == 3
    assert merged["composition"]["molecules"] == 3 and [s["shard"] for s in merged["shards"]] == [[0, 2], [1, 2]]
    assert "file_sha256" not in merged and [s["file_sha256"] for s in merged["shards"]] == [
        hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    assert merged["frame_statistics"]["atoms_per_element"] == {s: symbols.count(s) for s in set(symbols)}
    forces_h = np.concatenate([f.get_forces()[np.array(f.get_chemical_symbols()) == "H"].ravel() for f in frames])
    assert merged["frame_statistics"]["force_component_rms_eV_per_A"]["H"] == pytest.approx(
        np.sqrt((forces_h**2).mean()))
    assert "3 frames; 3 of 3 distinct molecules" in (tmp_path / "all.card.md").read_text()
    assert main(["data", "merge-cards", str(paths[0]), str(paths[0]), "--output", str(tmp_path / "x.json")]) == 2
    assert main(["data", "merge-cards", str(tmp_path / "none.extxyz"), "--output", str(tmp_path / "x.json")]) == 2
    with pytest.raises(ValueError, match="shard must be"):
        generate_diverse_xtb(tmp_path / "bad.extxyz", shard=2, shards=2, **common)


V2_SMALL = dict(n_molecules=6, max_heavy_atoms=5, seed=2, progress=False, frames_per_molecule=1,
                temperatures=(300.0, 500.0, 1000.0), one_temperature_per_molecule=True, displaced_frames=1,
                max_displacement=0.05, cluster_share=0.3, cluster_frames=1)


def test_v2_samples_each_molecule_once_with_displaced_frames_and_clusters(tmp_path):
    from nnp.data.generate.clusters import contact_fraction
    from nnp.data.generate.diverse import CLUSTER
    from nnp.data.generate.molecule_graphs import HELD_OUT
    from nnp.data.molecules import find_molecules

    path = generate_diverse_xtb(tmp_path / "v2.extxyz", **V2_SMALL)
    frames = ase.io.read(path, ":")
    smiles = json.loads(path.with_name(path.name + ".molecules.json").read_text())
    md = [f for f in frames if not f.info["system"].startswith(CLUSTER) and not f.info["system"].endswith("@displaced")]
    displaced = [f for f in frames if f.info["system"].endswith("@displaced")]
    clusters = [f for f in frames if f.info["system"].startswith(CLUSTER)]
    # one MD temperature per molecule, cycling 300/500/1000 K; one displaced frame per molecule
    assert [f.info["temperature_K"] for f in md] == [300.0, 500.0, 1000.0] * 2
    assert [f.info["system"].split("@")[0] for f in md] == smiles == [f.info["system"].split("@")[0] for f in displaced]
    assert all(0.01 - 1e-9 <= f.info["displacement_sigma_A"] <= 0.05 for f in displaced)
    # clusters: 2-3 molecules, not bonded to each other, at contact distances; their share as asked
    share = 0.3 * 2 / (1 * 0.7)  # clusters per molecule (Sampling.clusters_per_molecule)
    assert len(clusters) == int(6 * share)
    for f in clusters:
        members = f.info["system"][len(CLUSTER):].rsplit("@", 1)[0].split(".")
        assert 2 <= len(members) <= 3 and len(find_molecules(f)) >= 2
        parts = find_molecules(f)
        fractions = [contact_fraction(f[parts[a]], f[parts[b]]) for a in range(len(parts)) for b in range(a)]
        assert 0.5 < min(fractions) < 1.1  # at contact after a short MD from 0.65-0.9
    held_out = {canonical_smiles(s) for s in HELD_OUT.values()}
    used = set(smiles) | {m for f in clusters for m in f.info["system"][len(CLUSTER):].rsplit("@", 1)[0].split(".")}
    assert not used & held_out
    card = json.loads(path.with_name(path.name + ".card.json").read_text())
    stats = card["frame_statistics"]
    assert stats["frames_per_kind"] == {"molecule_md": 6, "displaced": 6, "cluster": len(clusters)}
    assert stats["cluster_frame_share"] == pytest.approx(len(clusters) / len(frames))
    assert card["parameters"]["cluster_share"] == 0.3 and card["parameters"]["displaced_frames"] == 1
    assert {x["canonical_smiles"] for x in card["exclusions"]} == held_out
    assert "uracil: held-out benchmark molecule" in json.dumps(card["exclusions"])
    assert "cluster share" in path.with_name(path.name + ".card.md").read_text()


def test_v2_resumes_inside_displaced_and_cluster_segments(tmp_path):
    reference = generate_diverse_xtb(tmp_path / "straight.extxyz", **V2_SMALL)
    target = tmp_path / "killed.extxyz"
    code = ("from nnp.data.generate.diverse import generate_diverse_xtb; "
            f"generate_diverse_xtb({str(target)!r}, **{V2_SMALL!r})")
    kill_during_generation(code, target.with_name(target.name + ".state.json"), frames=5, timeout=300)
    generate_diverse_xtb(target, **V2_SMALL)
    a, b = ase.io.read(reference, ":"), ase.io.read(target, ":")
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.info["system"] == y.info["system"]
        np.testing.assert_allclose(x.positions, y.positions, atol=1e-6)
        np.testing.assert_allclose(x.get_forces(), y.get_forces(), atol=1e-4)


def test_cli_v2_preset_and_held_out_molecule_trajectories(tmp_path):
    out = tmp_path / "ethanol.extxyz"
    assert main(["data", "generate", "molecule-xtb", "--molecule", "ethanol", "--frames", "3", "--interval", "2",
                 "--output", str(out)]) == 0
    frames = ase.io.read(out, ":")
    assert len(frames) == 3 and frames[0].get_chemical_formula() == "C2H6O"
    assert main(["data", "generate", "molecule-xtb", "--output", str(out)]) == 2  # no --molecule
    v2 = tmp_path / "v2.extxyz"
    assert main(["data", "generate", "diverse-xtb", "--preset", "v2", "--molecules", "2", "--max-heavy-atoms", "4",
                 "--output", str(v2)]) == 0
    card = json.loads(v2.with_name(v2.name + ".card.json").read_text())
    assert card["parameters"]["one_temperature_per_molecule"] and card["parameters"]["max_heavy_atoms"] == 4
    assert card["frame_statistics"]["frames_per_kind"]["displaced"] == 2

"""Packed datasets: exact round trip, one-pass statistics, resumable packing, clear errors for bad
frames and damaged packs, the CLI, and reading from DataLoader workers."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import ase.db
import lmdb
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from nnp.data.dataset import (build_graphs, dataset_species, load_structures,
                              mean_num_neighbors)
from helpers import fit_reference_energies, force_rms
from nnp.data.errors import DatasetError
from nnp.data.info import dataset_info
from nnp.data.pack import (PackedDataset, PackError, frame_key, is_pack, iter_structures, pack_dataset,
                           subset_statistics)
from nnp.data.readers import LabelKeys, bundled_dataset, read_structures, write_extxyz

CUTOFF = 3.0


def water_frames(n=6, seed=0):
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        atoms = Atoms("OH2", positions=rng.normal(size=(3, 3)) + 2.5, cell=np.eye(3) * 5, pbc=True)
        atoms.calc = SinglePointCalculator(atoms, energy=float(rng.normal()) - 14.0, forces=rng.normal(size=(3, 3)),
                                           stress=rng.normal(size=6) * 0.01)
        frames.append(atoms)
    return frames


def write_md17_methane(path, n=5, seed=1):
    """MD17-style file (kcal/mol, E of shape (n, 1), z uint8) of a molecule unlike water."""
    rng = np.random.default_rng(seed)
    np.savez(path, R=rng.normal(size=(n, 5, 3)) * 1.2, z=np.array([6, 1, 1, 1, 1], dtype=np.uint8),
             E=rng.normal(size=(n, 1)) * 3 - 25000, F=rng.normal(size=(n, 5, 3)) * 20, name=np.array("methane"))
    return path


@pytest.fixture
def sources(tmp_path):
    return [write_extxyz(tmp_path / "water.extxyz", water_frames()), write_md17_methane(tmp_path / "md17_ch4.npz")]


@pytest.fixture
def pack(tmp_path, sources):
    return pack_dataset(sources, tmp_path / "mixed.pack", cutoff=CUTOFF, progress=False, commit_every=4)


def in_memory(sources):
    return [atoms for path in sources for atoms in read_structures(path)]


def assert_same_atoms(a, b):
    for name in ("positions", "numbers", "pbc"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.cell.array, b.cell.array)
    assert a.positions.dtype == np.float64
    assert set(a.calc.results) == set(b.calc.results)
    for key, value in b.calc.results.items():
        np.testing.assert_array_equal(a.calc.results[key], value)


def test_pack_holds_every_frame_exactly(pack, sources):
    frames = in_memory(sources)
    ds = PackedDataset(pack)
    assert is_pack(pack) and len(ds) == len(frames) == 11
    for k, expected in enumerate(frames):
        assert_same_atoms(ds.atoms(k), expected)
    assert_same_atoms(ds[-1], frames[-1])
    with pytest.raises(IndexError, match="frame 11 is out of range; the pack holds 11"):
        ds.atoms(11)
    assert [a.get_potential_energy() for a in load_structures(str(pack), max_frames=3)] == \
        [a.get_potential_energy() for a in frames[:3]]


def test_iter_structures_streams_like_read_structures(sources):
    for path in sources:
        streamed = list(iter_structures(path))
        assert [k for k, _ in streamed] == list(range(len(read_structures(path))))
        for (_, a), b in zip(streamed, read_structures(path)):
            assert_same_atoms(a, b)
        assert [k for k, _ in iter_structures(path, start=2)][0] == 2


def test_statistics_match_the_in_memory_ones(pack, sources):
    frames = in_memory(sources)
    species = dataset_species(frames)
    meta = PackedDataset(pack).metadata
    json.dumps(meta)
    assert meta["elements"] == species == ["H", "C", "O"]
    assert meta["element_counts"] == {"H": 6 * 2 + 5 * 4, "C": 5, "O": 6}
    assert meta["n_frames"] == 11 and meta["n_atoms"] == 6 * 3 + 5 * 5 and meta["labelled"] is True
    assert meta["cutoff"] == CUTOFF and meta["format_version"] == 1
    assert [s["frames"] for s in meta["sources"]] == [6, 5]
    np.testing.assert_allclose([meta["reference_energies"][s] for s in species],
                               fit_reference_energies(frames, species), rtol=1e-10, atol=1e-10)
    assert meta["force_rms"] == pytest.approx(force_rms(frames), rel=1e-10)
    graphs = build_graphs(frames, species, CUTOFF, progress=False)
    assert meta["avg_num_neighbors"] == pytest.approx(mean_num_neighbors(graphs), rel=1e-10)
    e = np.array([a.get_potential_energy() / len(a) for a in frames])
    assert meta["energy_per_atom"]["mean"] == pytest.approx(e.mean(), rel=1e-10)
    assert meta["energy_per_atom"]["std"] == pytest.approx(e.std(), rel=1e-8)


def test_subset_statistics_match_the_fit_on_the_subset(pack, sources):
    frames = in_memory(sources)
    ds = PackedDataset(pack)
    summary = ds.summary()
    assert summary["composition"].shape == (11, 3) and summary["n_atoms"].dtype == np.int64
    subset = [0, 2, 3, 7, 9, 10]
    chosen = [frames[k] for k in subset]
    species = ["H", "C", "N", "O"]  # a model may know more elements than the data holds
    stats = subset_statistics(summary, subset, species)
    np.testing.assert_allclose(stats["reference_energies"], fit_reference_energies(chosen, species),
                               rtol=1e-10, atol=1e-10)
    assert stats["force_rms"] == pytest.approx(force_rms(chosen), rel=1e-10)
    graphs = build_graphs(chosen, ["H", "C", "O"], CUTOFF, progress=False)
    assert stats["avg_num_neighbors"] == pytest.approx(mean_num_neighbors(graphs), rel=1e-10)
    assert stats["n_frames"] == 6
    with pytest.raises(ValueError, match="element.*C.*not in species"):
        subset_statistics(summary, subset, ["H", "O"])


def test_info_reads_only_the_metadata(pack):
    text = dataset_info(str(pack))
    assert "nnp pack" in text and "frames: 11; atoms per frame: 3-5" in text and "C (5), H (32), O (6)" in text


def test_positions_only_pack(tmp_path):
    frames = water_frames(3)
    for atoms in frames:
        atoms.calc = None
    path = write_extxyz(tmp_path / "plain.extxyz", frames)
    with pytest.raises(DatasetError, match="plain.extxyz: frame 0: no energy or forces label"):
        pack_dataset([path], tmp_path / "a.pack", progress=False)
    ds = PackedDataset(pack_dataset([path], tmp_path / "b.pack", require_labels=False, progress=False))
    assert ds.metadata["labelled"] is False and ds.metadata["energy_per_atom"] is None
    assert np.isnan(ds.summary()["energy"]).all() and ds.atoms(1).calc.results == {}


# ----------------------------------------------------------------------------------------- resumability

def _big_water_file(path, copies=5):
    """Several hundred 192-atom frames: the bundled water, each copy shifted a little."""
    base = read_structures(bundled_dataset())
    frames = []
    for c in range(copies):
        for atoms in base:
            atoms = atoms.copy()
            atoms.positions += 0.001 * c
            atoms.calc = SinglePointCalculator(atoms, **base[0].calc.results)
            frames.append(atoms)
    return write_extxyz(path, frames)


def _committed_frames(pack):
    with lmdb.open(str(pack), readonly=True, lock=False) as env, env.begin() as txn:
        return json.loads(txn.get(b"state"))["n_frames"]


def test_killed_packing_resumes_to_the_same_pack(tmp_path):
    source = _big_water_file(tmp_path / "water_big.extxyz")
    out = tmp_path / "killed.pack"
    script = (f"from nnp.data.pack import pack_dataset; pack_dataset([{str(source)!r}], {str(out)!r}, "
              f"progress=False, commit_every=5)")
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (out / "data.mdb").exists() and (out / "data.mdb").stat().st_size > 600_000:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "packing finished before it could be killed; make the file larger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = _committed_frames(out)
    assert 0 < done < 500
    with pytest.raises(PackError, match=rf"packing did not finish \({done} frames so far\); re-run the same"):
        PackedDataset(out)

    pack_dataset([source], out, progress=False, commit_every=5)
    whole = PackedDataset(pack_dataset([source], tmp_path / "whole.pack", progress=False, commit_every=7))
    resumed = PackedDataset(out)
    assert len(resumed) == len(whole) == 500
    assert {k: v for k, v in resumed.metadata.items() if k != "created"} == \
        {k: v for k, v in whole.metadata.items() if k != "created"}
    for name, column in whole.summary().items():
        np.testing.assert_array_equal(resumed.summary()[name], column)
    for k in range(0, 500, 7):
        assert_same_atoms(resumed.atoms(k), whole.atoms(k))


def test_resuming_with_changed_sources_is_refused(tmp_path, sources, pack):
    assert pack_dataset(sources, pack, cutoff=CUTOFF, progress=False) == pack  # finished: left as it is
    with pytest.raises(PackError, match=r"mixed.pack: was packed from .*; re-run the command that started it, "
                                        r"or delete .*mixed.pack"):
        pack_dataset(sources[:1], pack, cutoff=CUTOFF, progress=False)
    with pytest.raises(PackError, match="was packed with options"):
        pack_dataset(sources, pack, cutoff=4.0, progress=False)
    write_extxyz(sources[0], water_frames(7))
    with pytest.raises(PackError, match=r"source .*water.extxyz changed since it was packed .*delete .*mixed.pack"):
        pack_dataset(sources, pack, cutoff=CUTOFF, progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(PackError, match="other: exists and is not an nnp pack"):
        pack_dataset(sources, tmp_path / "other", progress=False)


# ------------------------------------------------------------------------------------ malformed frames

def _extxyz_with(change):
    def make(tmp_path):
        frames = water_frames(4)
        change(frames)
        return write_extxyz(tmp_path / "bad.extxyz", frames)
    return make


def _db_wrong_force_shape(tmp_path):
    with ase.db.connect(tmp_path / "bad.db") as db:
        for k, atoms in enumerate(water_frames(3)):
            atoms.calc = SinglePointCalculator(atoms, energy=1.0, forces=np.zeros((2 if k == 2 else 3, 3)))
            db.write(atoms)
    return tmp_path / "bad.db"


def _extxyz_unknown_symbol(tmp_path):
    good = "1\nProperties=species:S:1:pos:R:3:forces:R:3 energy=1.0 pbc=\"F F F\"\nH 0 0 0 0 0 0\n"
    path = tmp_path / "bad.extxyz"
    path.write_text(good + good.replace("H 0", "Xx 0"))
    return path


def _npz_nan_energy(tmp_path):
    path = write_md17_methane(tmp_path / "bad.npz")
    arrays = dict(np.load(path))
    arrays["E"][3, 0] = np.nan
    np.savez(path, **arrays)
    return path


def _drop_energy(frames):
    frames[3].calc = SinglePointCalculator(frames[3], forces=frames[3].get_forces())


BAD_FRAMES = {
    "nan positions": (_extxyz_with(lambda fr: fr[2].positions.__setitem__((1, 0), np.nan)),
                      "bad.extxyz: frame 2: positions contain NaN or infinity \\(atom 1\\)"),
    "nan forces": (_extxyz_with(lambda fr: fr[1].calc.results["forces"].__setitem__((2, 1), np.nan)),
                   "bad.extxyz: frame 1: forces contain NaN or infinity \\(atom 2\\)"),
    "wrong force shape": (_db_wrong_force_shape, r"bad.db: frame 2: forces have shape \(2, 3\), expected \(3, 3\)"),
    "unknown element": (_extxyz_unknown_symbol, "bad.extxyz: frame 1: unknown element symbol 'Xx'"),
    "missing energy": (_extxyz_with(_drop_energy), "bad.extxyz: frame 3: no energy label"),
    "nan energy (MD17)": (_npz_nan_energy, "bad.npz: frame 3: energy is NaN"),
}


@pytest.mark.parametrize("case", list(BAD_FRAMES))
def test_every_malformed_frame_names_file_and_frame(tmp_path, case):
    make, message = BAD_FRAMES[case]
    path = make(tmp_path)
    with pytest.raises(DatasetError, match=message):
        pack_dataset([path], tmp_path / "bad.pack", progress=False, commit_every=1)
    with pytest.raises(PackError, match="packing did not finish"):
        PackedDataset(tmp_path / "bad.pack")


# ---------------------------------------------------------------------------------------- damaged packs

def _copy(pack, tmp_path, name):
    return shutil.copytree(pack, tmp_path / name)


def test_truncated_pack(pack, tmp_path):
    damaged = _copy(pack, tmp_path, "truncated.pack")
    data = damaged / "data.mdb"
    os.truncate(data, data.stat().st_size // 2)
    with pytest.raises(PackError, match=r"truncated.pack: data.mdb is truncated \(\d+ bytes, its header needs"):
        PackedDataset(damaged)
    os.truncate(data, 100)
    with pytest.raises(PackError, match="data.mdb is not an LMDB file"):
        PackedDataset(damaged)


def test_flipped_bytes_in_a_record(pack, tmp_path):
    damaged = _copy(pack, tmp_path, "flipped.pack")
    with lmdb.open(str(pack), readonly=True, lock=False) as env, env.begin() as txn:
        record = txn.get(frame_key(4))
    raw = bytearray((damaged / "data.mdb").read_bytes())
    at = raw.find(record)
    assert at > 0
    while at >= 0:  # copy-on-write leaves older copies of a page in the file: flip the byte in each
        raw[at + len(record) // 2] ^= 0xFF
        at = raw.find(record, at + 1)
    (damaged / "data.mdb").write_bytes(bytes(raw))
    ds = PackedDataset(damaged)
    ds.atoms(3)
    with pytest.raises(PackError, match="flipped.pack: frame 4: record checksum does not match.*pack the data again"):
        ds.atoms(4)


def test_missing_data_file_and_other_directories(pack, tmp_path):
    damaged = _copy(pack, tmp_path, "nodata.pack")
    (damaged / "data.mdb").unlink()
    assert is_pack(damaged)
    with pytest.raises(PackError, match="nodata.pack: has no data.mdb; .*delete it and pack the data again"):
        PackedDataset(damaged)
    with pytest.raises(PackError, match="nope.pack: does not exist"):
        PackedDataset(tmp_path / "nope.pack")
    garbage = tmp_path / "garbage.pack"
    garbage.mkdir()
    (garbage / "data.mdb").write_bytes(os.urandom(20000))
    with pytest.raises(PackError, match="garbage.pack: data.mdb is not an LMDB file"):
        PackedDataset(garbage)
    foreign = tmp_path / "foreign.lmdb"
    with lmdb.open(str(foreign)) as env, env.begin(write=True) as txn:
        txn.put(b"state", b"\x80\x04pickled")
    with pytest.raises(PackError, match="foreign.lmdb: pack metadata is unreadable"):
        PackedDataset(foreign)


# ------------------------------------------------------------------------------------- CLI, DataLoader

def test_cli_packs_and_reports_bad_input_in_one_line(tmp_path, sources):
    out = tmp_path / "cli.pack"
    cli = [sys.executable, "-m", "nnp.cli", "data", "pack"]
    done = subprocess.run([*cli, *map(str, sources), "--output", str(out), "--cutoff", str(CUTOFF), "--no-progress"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "11 frames" in done.stdout and PackedDataset(out).metadata["cutoff"] == CUTOFF
    bad = _extxyz_with(lambda fr: fr[2].positions.__setitem__((1, 0), np.nan))(tmp_path)
    done = subprocess.run([*cli, str(bad), "--output", str(tmp_path / "bad.pack")], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("nnp data pack: error: ") and "bad.extxyz: frame 2: positions contain NaN" in done.stderr


def test_dataloader_workers_read_the_right_frames(pack, sources):
    frames = in_memory(sources)
    ds = PackedDataset(pack)
    ds.atoms(0)  # the parent has its own handle open before the workers fork
    loader = torch.utils.data.DataLoader(ds, batch_size=3, shuffle=False, num_workers=2, collate_fn=list)
    got = [atoms for batch in loader for atoms in batch]
    assert len(got) == len(frames)
    for a, b in zip(got, frames):
        assert_same_atoms(a, b)


def test_labels_under_other_keys_are_packed_and_trained_from(tmp_path):
    """``nnp data pack --energy-key REF_energy --forces-key REF_forces``: the pack holds the labels (the same as an
    extxyz with ASE's names), records the keys, and refuses to resume with others; a training config reads the
    file directly with data.energy_key / data.forces_key."""
    from test_readers import mace_style_extxyz

    from nnp.config import DataConfig, RunConfig
    from nnp.train.data import prepare_data

    frames = water_frames(4)
    for atoms in frames:  # a stress label too (MACE's 9 numbers)
        atoms.calc.results["stress"] = np.linspace(-0.01, 0.01, 6)
    source = mace_style_extxyz(tmp_path / "mace.extxyz", frames)
    out = tmp_path / "mace.pack"
    cli = [sys.executable, "-m", "nnp.cli", "data", "pack", str(source), "--output", str(out), "--no-progress"]
    done = subprocess.run(cli + ["--energy-key", "REF_energy", "--forces-key", "REF_forces", "--stress-key",
                                 "REF_stress"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    packed = PackedDataset(out)
    for k, atoms in enumerate(frames):
        assert packed.atoms(k).get_potential_energy() == pytest.approx(atoms.get_potential_energy(), abs=1e-9)
        np.testing.assert_allclose(packed.atoms(k).get_forces(), atoms.get_forces(), atol=1e-9)
        np.testing.assert_allclose(packed.atoms(k).get_stress(), atoms.get_stress(), atol=1e-9)
    with pytest.raises(PackError, match="was packed with options"):
        pack_dataset([source], out, progress=False, keys=LabelKeys(energy="REF_energy", forces="REF_forces"))
    config = RunConfig(data=DataConfig(path=str(source), energy_key="REF_energy", forces_key="REF_forces",
                                       val_fraction=0.25, test_fraction=0.25))
    data = prepare_data(config, progress=False)
    assert sum(len(split) for split in data.splits.values()) == 4 and data.species == ["H", "O"]

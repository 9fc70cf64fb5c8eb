"""benchmarks/pareto.py on a molecule in MD17 format, and peer_eval.py measuring the same file as a 'peer'."""

import json
import os
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest

from nnp.data.readers import bundled_dataset, read_structures, write_md17_npz

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_molecule_copies_do_not_interact():
    sys.path.insert(0, str(BENCHMARKS))
    from pareto import molecule_copies

    aspirin = read_structures(bundled_dataset("aspirin_xtb_test_small"), index=0)[0]
    cluster = molecule_copies(aspirin, 8)
    assert len(cluster) == 168 and not cluster.pbc.any()
    d = np.linalg.norm(cluster.positions[:, None] - cluster.positions[None], axis=-1)
    copy = np.repeat(np.arange(8), 21)
    assert d[copy[:, None] != copy[None]].min() > 10.0  # beyond every recipe's cutoff
    np.testing.assert_allclose(d[:21, :21], d[-21:, -21:])  # rigid copies


@pytest.mark.slow
def test_pareto_on_md17_file_and_peer_eval_agree(tmp_path):
    frames = read_structures(bundled_dataset("aspirin_xtb_small"))
    write_md17_npz(tmp_path / "train.npz", frames[:60], name="aspirin")
    write_md17_npz(tmp_path / "test.npz", read_structures(bundled_dataset("aspirin_xtb_test_small"))[:10])
    split = tmp_path / "split"
    run("pareto.py", "--data", str(tmp_path / "train.npz"), "--test", str(tmp_path / "test.npz"), "--models", "egnn",
        "--minutes", "0.05", "--steps", "5", "--out", str(tmp_path / "run"), "--write-split", str(split),
        "--json", str(tmp_path / "pareto.json"))
    doc = json.loads((tmp_path / "pareto.json").read_text())
    row = doc["rows"][0]
    assert doc["kind"] == "molecule" and doc["sizes"] == [21, 168] and row["test_frames"] == 10
    assert row["lammps_ms_per_step_168"] > 0 and row["ase_ms_21"] > 0
    assert len(ase.io.read(split / "train.extxyz", ":")) == 54 and len(ase.io.read(split / "val.extxyz", ":")) == 6
    assert len(ase.io.read(split / "size_168.extxyz")) == 168
    # the float64 file measured as a peer would be: same calculator protocol, same test frames, same errors
    run("peer_eval.py", "--calculator", "nnp.calculator:NNPCalculator",
        "--arg", f"model_path={tmp_path / 'run' / 'egnn.float64.nnp.pt'}", "--label", "nnp as a peer",
        "--split", str(split), "--json", str(tmp_path / "peer.json"), "--repeats", "1")
    peer = json.loads((tmp_path / "peer.json").read_text())
    assert peer["force_rmse_meV_A"] == pytest.approx(row["force_rmse_meV_A"], rel=1e-9)
    assert peer["energy_rmse_meV_atom"] == pytest.approx(row["energy_rmse_meV_atom"], rel=1e-9)
    assert peer["sizes"] == [21, 168] and peer["ms_per_step_large"] > 0

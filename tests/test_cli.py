"""The nnp command line: every subcommand has --help, the data/evaluate/export path works, errors are clear."""

import json
import subprocess
import sys

import pytest

from helpers import small_model
from nnp.cli import main, parse_time_ps
from nnp.export import export_model

SUBCOMMANDS = ["train", "pretrain", "finetune", "evaluate", "export", "data", "stability", "stability-compare", "analyze", "quickstart", "models", "learn"]


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: nnp " + command in capsys.readouterr().out


def test_console_script_is_installed():
    done = subprocess.run([sys.executable, "-m", "nnp.cli", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("nnp ")


def test_data_info_and_evaluate(tmp_path, capsys):
    assert main(["data", "info", "bundled:water_tip3p_small"]) == 0
    out = capsys.readouterr().out
    assert "frames: 100" in out and "H (12800)" in out and "flexible TIP3P" in out
    model = export_model(small_model(cutoff=3.0), tmp_path / "m.nnp.pt")
    assert main(["evaluate", "--model", str(model), "--data", "bundled:water_tip3p_small", "--max-frames", "3",
                 "--json", str(tmp_path / "m.json")]) == 0
    assert "F RMSE" in capsys.readouterr().out and (tmp_path / "m.json").exists()


def test_evaluate_reports_stress_errors_when_every_frame_has_a_stress(tmp_path, capsys):
    """Periodic frames labelled with the model's own energy, forces and stress, the stress's xx shifted by 3 meV/Å³
    and yz by -1.5: E and F errors 0, stress MAE (3 + 1.5) / 6, pressure MAE 3 / 3 = 1 meV/Å³ (-trace / 3); a
    set where one frame lacks a stress reports none."""
    import ase.io
    import numpy as np
    from ase.calculators.singlepoint import SinglePointCalculator

    from nnp.calculator import NNPCalculator
    from nnp.data.dataset import load_structures

    model = export_model(small_model(cutoff=3.0), tmp_path / "m.nnp.pt")
    frames = load_structures("bundled:water_tip3p_small", max_frames=3)
    shift = np.array([3e-3, 0.0, 0.0, -1.5e-3, 0.0, 0.0])
    for atoms in frames:
        atoms.calc = NNPCalculator(model)
        labels = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(),
                  "stress": atoms.get_stress() + shift}
        atoms.calc = SinglePointCalculator(atoms, **labels)
    ase.io.write(tmp_path / "stressed.extxyz", frames)
    assert main(["evaluate", "--model", str(model), "--data", str(tmp_path / "stressed.extxyz"),
                 "--json", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert "S MAE" in out and "meV/Å³" in out
    assert "\nstressed.extxyz " in out  # the file's whole name labels the row
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["forces_mae"] < 1e-7 and metrics["energy_per_atom_mae"] < 1e-7  # extxyz keeps 8 decimals
    assert metrics["stress_mae"] == pytest.approx(4.5e-3 / 6, rel=1e-6)
    assert metrics["pressure_mae"] == pytest.approx(1e-3, rel=1e-6)
    frames[0].calc = SinglePointCalculator(frames[0], energy=frames[0].get_potential_energy(),
                                           forces=frames[0].get_forces())
    ase.io.write(tmp_path / "mixed.extxyz", frames)
    assert main(["evaluate", "--model", str(model), "--data", str(tmp_path / "mixed.extxyz")]) == 0
    assert "S MAE" not in capsys.readouterr().out


def test_user_errors_exit_2_with_a_message(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "config file" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epoch: 3\n")
    assert main(["train", "--config", str(bad)]) == 2
    assert "unknown key(s) epoch in section 'train'" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tmp_path / "none.nnp.pt"), "--data", "bundled:water_tip3p_small"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["data", "generate", "aspirin-xtb", "--stress", "--output", str(tmp_path / "a.extxyz")]) == 2
    assert "only water-xtb" in capsys.readouterr().err


def test_time_parsing():
    assert parse_time_ps("300ps") == 300 and parse_time_ps("0.5 ns") == 500 and parse_time_ps("20") == 20
    assert parse_time_ps("2000fs") == pytest.approx(2.0)


def _write(path, text):
    path.write_text(text)
    return path


def user_error_cases(tmp_path):
    """(argv, words the one-line message must contain) for the mistakes a new user makes."""
    import torch
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    model = export_model(small_model(cutoff=3.0), tmp_path / "water.nnp.pt")
    methane = Atoms("CH4", positions=[[0, 0, 0], [0.6, 0.6, 0.6], [-0.6, -0.6, 0.6], [0.6, -0.6, -0.6],
                                      [-0.6, 0.6, -0.6]])
    methane.calc = SinglePointCalculator(methane, energy=-1.0, forces=[[0, 0, 0]] * 5)
    write(tmp_path / "methane.extxyz", methane)
    text = _write(tmp_path / "notes.txt", "not a checkpoint\n")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "tensor.pt")
    schnet = _write(tmp_path / "schnet.yaml", "model:\n  kind: schnet\ndata:\n  path: bundled:water_tip3p_small\n")
    missing_data = _write(tmp_path / "nodata.yaml", "data:\n  path: nowhere.extxyz\n")
    bad_yaml = _write(tmp_path / "bad.yaml", "train: [1, 2\n")
    cases = [
        (["train", "--config", str(tmp_path / "nope.yaml")], ["config file", "does not exist"]),
        (["train", "--config", str(bad_yaml)], ["not valid YAML"]),
        (["train", "--config", str(schnet)], ["schnet", "egnn"]),
        (["train", "--config", str(missing_data)], ["nowhere.extxyz", "does not exist"]),
        (["train", "--config", str(schnet), "--set", "model.kind=egnn", "--set", "train.epochs=0"], ["epochs"]),
        (["pretrain", "--config", str(schnet)], ["schnet"]),
        (["finetune", "--config", str(missing_data), "--from", str(text)], ["not an nnp checkpoint"]),
        (["finetune", "--config", str(missing_data), "--from", str(tmp_path / "none.ckpt")], ["does not exist"]),
        (["evaluate", "--model", str(tmp_path / "none.nnp.pt"), "--data", "bundled:water_tip3p_small"],
         ["does not exist"]),
        (["evaluate", "--model", str(text), "--data", "bundled:water_tip3p_small"], ["not", "model file"]),
        (["evaluate", "--model", str(model), "--data", str(tmp_path / "none.extxyz")], ["does not exist"]),
        (["evaluate", "--model", str(model), "--data", str(tmp_path / "methane.extxyz")], ["C", "not known"]),
        (["export", "--checkpoint", str(text), "--output", str(tmp_path / "x.nnp.pt")], ["not an nnp checkpoint"]),
        (["export", "--checkpoint", str(tmp_path / "tensor.pt"), "--output", str(tmp_path / "x.nnp.pt")],
         ["not an nnp checkpoint"]),
        (["export", "--checkpoint", str(tmp_path / "none.ckpt"), "--output", str(tmp_path / "x.nnp.pt")],
         ["does not exist"]),
        (["data", "info", str(tmp_path / "none.extxyz")], ["does not exist"]),
        (["data", "pack", str(tmp_path / "none.extxyz"), "--output", str(tmp_path / "x.pack")], ["does not exist"]),
        (["stability", "--model", str(tmp_path / "none.nnp.pt"), "--system", "water"], ["does not exist"]),
        (["stability", "--model", str(model), "--system", "water", "--time", "soon"], ["cannot read time"]),
        (["analyze", "--model", str(tmp_path / "none.nnp.pt"), "--reference", str(tmp_path / "methane.extxyz")],
         ["does not exist"]),
        (["analyze", "--model", str(model), "--reference", str(tmp_path / "none.extxyz")], ["does not exist"]),
    ]
    if not torch.cuda.is_available():
        cases.append((["train", "--config", str(schnet), "--set", "model.kind=egnn", "--set", "train.device=cuda",
                       "--set", "train.epochs=1"], ["no CUDA"]))
    return cases


def test_every_user_error_is_one_line_with_exit_code_2(tmp_path, capsys):
    for argv, words in user_error_cases(tmp_path):
        code = main(argv)
        err = capsys.readouterr().err.strip()
        assert code == 2, (argv, err[-2000:])
        assert len(err.splitlines()) == 1 and err.startswith(f"nnp {argv[0]}"), (argv, err)
        for word in words:
            assert word in err, (argv, word, err)

"""The nnp command line: every subcommand has --help, the data/evaluate/export path works, errors are clear."""

import subprocess
import sys

import pytest

from helpers import small_model
from nnp.cli import main, parse_time_ps
from nnp.export import export_model

SUBCOMMANDS = ["train", "pretrain", "finetune", "evaluate", "export", "data", "stability", "analyze", "quickstart"]


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


def test_user_errors_exit_2_with_a_message(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "config file" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epoch: 3\n")
    assert main(["train", "--config", str(bad)]) == 2
    assert "unknown key(s) epoch in section 'train'" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tmp_path / "none.nnp.pt"), "--data", "bundled:water_tip3p_small"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_time_parsing():
    assert parse_time_ps("300ps") == 300 and parse_time_ps("0.5 ns") == 500 and parse_time_ps("20") == 20
    assert parse_time_ps("2000fs") == pytest.approx(2.0)

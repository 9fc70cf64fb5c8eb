"""The training recipes and the second seed's experiment script, run for real at a tiny size."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

from nnp.config import load_config

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "training").glob("*/*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recipes_are_valid_configs(recipe):
    config = load_config(recipe)  # unknown keys and bad values are errors
    assert config.model.kind


@pytest.mark.slow
def test_seed2_aspirin_end_to_end(tmp_path, monkeypatch):
    """pretrain -> finetune vs scratch -> MAE matching (one forced extension) -> replica MD -> analyses -> JSON."""
    results = tmp_path / "seed2.json"
    argv = ["seed2_aspirin.py", "--pretrain-data", "bundled:g2_xtb_small", "--pretrain-max-frames", "40",
            "--aspirin-max-frames", "30", "--pretrain-minutes", "0.01", "--train-minutes", "0.01",
            "--extend-minutes", "0.01", "--match-tolerance", "-1", "--max-extensions", "1",
            "--replicas", "2", "--time-ps", "0.02", "--displacements", "3", "--analysis-frames", "2",
            "--output", str(tmp_path / "run"), "--results", str(results)]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(ROOT / "training" / "experiments" / "seed2_aspirin.py"), run_name="__main__")
    summary = json.loads(results.read_text())
    assert set(summary["models"]) == {"scratch", "pretrained"}
    assert len(summary["match_rounds"]) == 1  # tolerance -1 (never met): scratch was trained on once
    assert summary["match_rounds"][0]["extended"] == "scratch"
    assert summary["models"]["scratch"]["epochs"] == 2  # resumed from its first epoch, not restarted
    assert summary["models"]["pretrained"]["epochs"] == 1
    rows = summary["trajectories"]
    assert [r["model"] for r in rows] == ["scratch"] * 2 + ["pretrained"] * 2
    assert all(0 < r["stable_ps"] <= 0.02 + 1e-9 for r in rows)
    for name in ("scratch", "pretrained"):
        model = summary["models"][name]
        assert model["force_mae_meV_A"] > 0 and model["smoothness_median"] > 0
    assert 0.0 <= summary["logrank"]["logrank_p"] <= 1.0
    assert len(summary["plots"]) == 3 and all(Path(p).parent == tmp_path and Path(p).exists() for p in summary["plots"])
    assert "seed2_aspirin.py" in summary["command"]

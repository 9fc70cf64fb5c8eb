"""The training recipes and the second seed's experiment script, run for real at a tiny size."""

from __future__ import annotations

import csv
import json
import os
import runpy
import sys
from pathlib import Path

import pytest
import torch
import yaml

from nnp.config import load_config
from nnp.learn import learn_config_from_dict

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted([*(ROOT / "training").glob("*/*.yaml"), *(ROOT / "examples").glob("*/*.yaml")])


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recipes_are_valid_configs(recipe):
    """Training recipes (training/, examples/) as `nnp train` reads them, `nnp learn` configs (an `explore` section)
    as `nnp learn` does; unknown keys and bad values are errors either way."""
    raw = yaml.safe_load(recipe.read_text())
    if "explore" in raw:
        config = learn_config_from_dict(raw)
        assert config.explore.systems and config.ensemble >= 2
    else:
        assert load_config(recipe).model.kind


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


@pytest.mark.slow
def test_seed1_water_end_to_end(tmp_path, monkeypatch):
    """TIP3P + xTB data -> per-seed masked pretraining -> lr search -> paired finetuning at scratch's lr -> JSON."""
    results = tmp_path / "seed1.json"
    argv = ["seed1_water.py", "--models", "egnn", "--sizes", "4", "--seeds", "0", "1", "--methods", "scratch", "masked",
            "--pretrain-frames", "16", "--test-frames", "2", "--pool", "bundled:water_xtb_small",
            "--pretrain-epochs", "1", "--finetune-minutes", "0.001", "--scratch-lr-grid", "1e-3", "3e-3",
            "--at-scratch-lr", "--fixed-lr-sizes", "40", "--output", str(tmp_path / "run"), "--results", str(results)]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(ROOT / "training" / "experiments" / "seed1_water.py"), run_name="__main__")
    doc = json.loads(results.read_text())
    assert doc["complete"] and doc["scratch_lr"]["egnn"] in (1e-3, 3e-3)
    assert sorted((p["method"], p["seed"]) for p in doc["pretraining"]) == [("masked", 0), ("masked", 1)]
    runs = {(r["method"], r["seed"]): r for r in doc["runs"]}
    assert sorted(runs) == [("masked@scratch-lr", 0), ("masked@scratch-lr", 1), ("scratch", 0), ("scratch", 1)]
    for seed in (0, 1):  # paired: same lr, each seed finetunes from its own pretraining
        assert runs["masked@scratch-lr", seed]["lr"] == runs["scratch", seed]["lr"] == doc["scratch_lr"]["egnn"]
        assert runs["masked@scratch-lr", seed]["pretrain_seed"] == seed
        assert runs["scratch", seed]["n_test"] == 2 and runs["scratch", seed]["test_force_rmse_meV_A"] > 0
    (row,) = [r for r in doc["summary"] if r["method"] == "masked@scratch-lr"]
    low, high = row["test_force_rmse_meV_A_diff_ci95"]
    assert low <= row["test_force_rmse_meV_A_diff_vs_scratch"] <= high
    assert results.with_suffix(".png").exists()
    script = runpy.run_path(str(ROOT / "training" / "experiments" / "seed1_water.py"), run_name="seed1")
    for lr in (3e-4, 3e-3):  # the schedule decays to half its lr at every lr (the 3e-4 grid point once rose)
        cfg = script["finetune_config"](script["SCALES"]["cpu"], "egnn", "x.extxyz", 10, 40, 0, tmp_path, lr)
        assert cfg["train"]["min_lr"] == pytest.approx(lr / 2)


def run_script(argv: list[str], monkeypatch) -> None:
    """``python training/experiments/<argv[0]> argv[1:]`` in this process; it must exit 0."""
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(ROOT / "training" / "experiments" / argv[0]), run_name="__main__")
    assert done.value.code == 0


@pytest.mark.slow
def test_transfer_end_to_end(tmp_path, monkeypatch):
    """Held-out xTB data -> scratch lr search -> the bundled model finetuned (with and without replay) vs
    scratch, paired by seed, in parallel processes -> JSON with CPU minutes, paired summary, plot; resumes."""
    from nnp.data.generate.xtb import generate_molecule_xtb

    data = tmp_path / "heldout"
    generate_molecule_xtb(data / "ethanol_pool.extxyz", "ethanol", n_frames=22, interval=2, progress=False)
    generate_molecule_xtb(data / "ethanol_test.extxyz", "ethanol", n_frames=4, interval=2, seed=1, progress=False)
    results = tmp_path / "transfer.json"
    argv = ["transfer.py", "--targets", "ethanol", "--sizes", "10", "--seeds", "0", "1", "--minutes", "0.5",
            "--minutes-at", "10=0.02", "ethanol:10=0.01",
            "--lr-grid", "1e-3", "3e-3", "--objectives", "supervised", "supervised+replay", "scratch", "masked",
            "denoise", "denoise-small", "--pretrain-data", str(data / "ethanol_pool.extxyz"), "--pretrain-minutes", "0.01",
            "--stability-sizes", "10", "--stability-replicas", "2", "--stability-ps", "0.02", "--analysis-frames", "3",
            "--replay-frames", "5", "--general", "3", "--general-data", str(data / "ethanol_pool.extxyz"),
            "--data", str(data), "--output", str(tmp_path / "runs"), "--results", str(results)]

    def transfer():
        run_script(argv, monkeypatch)

    transfer()
    doc = json.loads(results.read_text())
    rows = doc["runs"]
    keys = {"objective", "target", "n_train", "seed", "test_force_mae_meV_A", "test_energy_mae_meV_atom", "cpu_minutes"}
    assert all(keys <= set(r) for r in rows)
    objectives = ("denoise", "denoise-small", "masked", "scratch", "supervised", "supervised+replay")
    assert sorted((r["objective"], r["seed"]) for r in rows if r["n_train"] == 10) == [
        (o, s) for o in objectives for s in (0, 1)]
    # every self-supervised objective pretrained (no labels) and its finetuned runs name that checkpoint
    assert sorted(p["objective"] for p in doc["pretrainings"]) == ["denoise", "denoise-small", "masked"]
    for p in doc["pretrainings"]:
        assert all(r["pretrained_sha256_8"] == p["checkpoint_sha256_8"] for r in rows if r["objective"] == p["objective"])
    # stability of the first seed's model of every objective at N = 10; log-rank of each against scratch
    assert sorted({t["objective"] for t in doc["trajectories"]}) == sorted(objectives)
    assert all(t["n_train"] == 10 and t["seed"] == 0 and {"stable_ps", "collapsed"} <= set(t) for t in doc["trajectories"])
    assert len(doc["trajectories"]) == 2 * len(objectives) and len(doc["stability"]) == len(objectives)
    assert sorted(doc["logrank"]) == sorted(f"ethanol/n10/{o}" for o in objectives if o != "scratch")
    assert (tmp_path / "transfer-survival-ethanol-n10.png").exists()
    # the force-field analyses of the same models, one row per objective
    assert sorted(a["objective"] for a in doc["analyses"]) == sorted(objectives)
    assert all({"latent_silhouette", "smoothness_median", "delta_force_rmse"} <= set(a) for a in doc["analyses"])
    assert [r["objective"] for r in rows if r["n_train"] == 0] == ["supervised"]  # zero-shot
    assert all(r["cpu_minutes"] > 0 and r["test_force_mae_meV_A"] > 0 for r in rows if r["n_train"])
    # the per-target budget wins over the per-N one and the default, and names the runs' folders
    assert doc["minutes_per_model"] == {"ethanol/n10": 0.01} and all(r["minutes"] == 0.01 for r in rows if r["n_train"])
    assert doc["scratch_lr"]["ethanol/n10"] in (1e-3, 3e-3) and len(doc["lr_search"]) == 2
    finetuned = next(s for s in doc["summary"] if s["objective"] == "supervised")
    assert len(finetuned["test_force_mae_meV_A_ratio_ci95"]) == 2
    # forgetting: every pretrained model (zero-shot, finetuned, with replay) is tested on the general frames
    assert all(r["general_force_mae_meV_A"] > 0 for r in rows if r["objective"] != "scratch")
    assert not any("general_force_mae_meV_A" in r for r in rows if r["objective"] == "scratch")
    assert results.with_suffix(".png").exists()
    # the splits are shared by the objectives (paired), and a second call reads every run back
    assert len(list((tmp_path / "runs" / "splits").glob("*.extxyz"))) == 2
    stamps = {p: p.stat().st_mtime for p in (tmp_path / "runs").glob("ethanol/*/row.json")}
    stamps.update({p: p.stat().st_mtime for p in (tmp_path / "runs").rglob("stability.json")})
    stamps.update({p: p.stat().st_mtime for p in (tmp_path / "runs").glob("pretrain-*/best.ckpt")})
    # an analysis made for fewer models (an earlier call with fewer objectives) is redone, not read back
    stored = tmp_path / "runs" / "analysis-ethanol-n10-s0" / "analysis.json"
    analysis = json.loads(stored.read_text())
    analysis["models"].pop(next(name for name in analysis["models"] if name.startswith("masked")))
    stored.write_text(json.dumps(analysis))
    transfer()
    assert {p: p.stat().st_mtime for p in stamps} == stamps
    assert sorted(a["objective"] for a in json.loads(results.read_text())["analyses"]) == sorted(objectives)
    # the masked start finetuned with scratch's recipe and tuned lr instead: a separate arm, paired with scratch;
    # its second seed's model (not the first's) runs MD, analysed in a folder of its own
    argv += ["--objectives", "masked", "--finetune-schedule", "scratch", "--stability-seeds", "1"]
    transfer()
    again = json.loads(results.read_text())
    arm = [r for r in again["runs"] if r["objective"] == "masked@scratch-schedule"]
    masked = next(p for p in doc["pretrainings"] if p["objective"] == "masked")
    assert sorted(r["seed"] for r in arm) == [0, 1] and {r["lr"] for r in arm} == {doc["scratch_lr"]["ethanol/n10"]}
    assert all(r["pretrained_sha256_8"] == masked["checkpoint_sha256_8"] and "training/aspirin/painn.yaml" in r["command"]
               for r in arm)
    directories = list((tmp_path / "runs" / "ethanol").glob("masked-*-fscratch-*"))
    assert len(directories) == 2
    for directory in directories:
        assert json.loads((directory / "results.json").read_text())["pretrained_from"].endswith("pretrain-masked/best.ckpt")
    assert again["finetune_defaults_sha256_6"] == doc["finetune_defaults_sha256_6"]  # still merges with the others
    assert {s["objective"] for s in again["summary"]} == {"masked@scratch-schedule"}
    assert {(t["objective"], t["seed"]) for t in again["trajectories"]} == {("masked@scratch-schedule", 1)}
    assert [(a["objective"], a["seed"]) for a in again["analyses"]] == [("masked@scratch-schedule", 1)]
    assert (tmp_path / "runs" / "analysis-ethanol-n10-s1" / "analysis.json").exists() and stored.exists()
    # a one-model analysis is never read back for another model file of the same short name (model.nnp.pt)
    argv += ["--objectives", "scratch"]
    transfer()
    alone = json.loads(results.read_text())["analyses"]
    assert [(a["objective"], a["seed"]) for a in alone] == [("scratch", 1)]
    assert alone[0]["force_rmse"] != again["analyses"][0]["force_rmse"]
    # budgets in CPU minutes of the training process: their own folders (-c), the trainer's CPU limit stops them
    argv += ["--objectives", "scratch", "--clock", "cpu", "--scratch-lr", "1e-3", "--stability-sizes"]
    transfer()
    cpu = json.loads(results.read_text())
    assert cpu["budget_clock"] == "cpu" and [r["clock"] for r in cpu["runs"] if r["n_train"]] == ["cpu", "cpu"]
    assert all("train.cpu_limit_minutes=0.01" in r["command"] and "train.time_limit_minutes=null" in r["command"]
               and r["stopped_by"] == "cpu limit" for r in cpu["runs"] if r["n_train"])  # the recipe's wall limit off
    assert len(list((tmp_path / "runs" / "ethanol").glob("scratch-lr0.001-c0.01-n10-s*"))) == 2
    # or exactly N epochs, no time limit at all
    argv += ["--epochs", "2"]
    transfer()
    fixed = [r for r in json.loads(results.read_text())["runs"] if r["n_train"]]
    assert [(r["clock"], r["epochs"], r["stopped_by"]) for r in fixed] == [("epochs", 2, "epochs")] * 2
    assert all("train.cpu_limit_minutes=null" in r["command"] for r in fixed)
    assert len(list((tmp_path / "runs" / "ethanol").glob("scratch-lr0.001-e2-n10-s*"))) == 2


def test_transfer_merge(tmp_path, monkeypatch):
    """Results of separate invocations (e.g. the molecules and the water box) merge into one file: rows of both,
    a row in two files once, one model's trajectories kept whole, summary, log-rank tests and plots afresh; an arm
    whose rows come from two starts is refused, arms of different starts side by side are not."""
    molecules = json.loads((ROOT / "results" / "transfer.json").read_text())
    other = json.loads(json.dumps(molecules).replace('"ethanol', '"ethanol2'))  # the rows as another target
    other["command"] = "transfer.py --targets ethanol2"
    paths = [tmp_path / "molecules.json", tmp_path / "ethanol2.json"]
    paths[0].write_text(json.dumps(molecules))
    paths[1].write_text(json.dumps(other))
    merged_path = tmp_path / "transfer.json"
    run_script(["transfer.py", "--merge", *map(str, paths), paths[0].as_posix(), "--results", str(merged_path)], monkeypatch)
    merged = json.loads(merged_path.read_text())
    copied = [r for r in other["runs"] if r["target"] == "ethanol2"]
    assert copied and len(merged["runs"]) == len(molecules["runs"]) + len(copied)
    assert len(merged["trajectories"]) == len(molecules["trajectories"]) + len(
        [t for t in other["trajectories"] if t["target"] == "ethanol2"])  # 32 identical stable rows are 32 replicas
    assert {s["target"] for s in merged["summary"]} == {s["target"] for s in molecules["summary"]} | {"ethanol2"}
    assert merged["sizes"]["ethanol2"] == molecules["sizes"]["ethanol"]
    first = molecules["command"] if isinstance(molecules["command"], list) else [molecules["command"]]  # merged or not
    assert merged["command"] == [*first, other["command"]]  # a file merged twice: its invocations once
    assert "ethanol2/n10/supervised" in merged["logrank"] and merged_path.with_suffix(".png").exists()
    assert (tmp_path / "transfer-survival-ethanol2-n10.png").exists()
    larger = json.loads(json.dumps(molecules))  # the same target at a new N, run apart: its sizes are added
    larger["sizes"] = {"ethanol": [5000]}
    larger["runs"] = [dict(r, n_train=5000) for r in molecules["runs"] if r["target"] == "ethanol" and r["n_train"] == 100]
    (tmp_path / "ethanol-n5000.json").write_text(json.dumps(larger))
    run_script(["transfer.py", "--merge", paths[0].as_posix(), str(tmp_path / "ethanol-n5000.json"),
                "--results", str(tmp_path / "both.json")], monkeypatch)
    both = json.loads((tmp_path / "both.json").read_text())
    assert both["sizes"]["ethanol"] == sorted({*molecules["sizes"]["ethanol"], 5000})
    assert {s["n_train"] for s in both["summary"] if s["target"] == "ethanol"} >= {5000, 100}
    # stability run apart from scratch's (a self-supervised arm's own invocation): merged, it is tested against scratch
    from nnp.md.survival import logrank_test

    base = [t for t in molecules["trajectories"] if (t["target"], t["n_train"], t["objective"]) == ("ethanol", 10, "scratch")]
    arm = json.loads(json.dumps(molecules))
    arm["runs"], arm["stability"], arm["analyses"], arm["logrank"] = [], [], [], {}
    arm["trajectories"] = [dict(t, objective="masked@apart", stable_ps=min(20.0, 2 * t["stable_ps"])) for t in base]
    arm["pretrained_checkpoint_sha256_8"] = "11111111"  # run when another model was bundled: its arm does not use it
    (tmp_path / "masked.json").write_text(json.dumps(arm))
    run_script(["transfer.py", "--merge", paths[0].as_posix(), str(tmp_path / "masked.json"),
                "--results", str(tmp_path / "with-masked.json")], monkeypatch)
    mine = arm["trajectories"]
    expected = logrank_test([t["stable_ps"] for t in mine], [t["collapsed"] for t in mine],
                            [t["stable_ps"] for t in base], [t["collapsed"] for t in base])
    tested = json.loads((tmp_path / "with-masked.json").read_text())["logrank"]["ethanol/n10/masked@apart"]
    assert tested == {"vs": "scratch", "chi2": pytest.approx(expected.chi2), "p": pytest.approx(expected.p_value)}
    assert 0 < tested["p"] < 1
    with_masked = json.loads((tmp_path / "with-masked.json").read_text())
    masked_start = next(p for p in molecules["pretrainings"] if p["objective"] == "masked")["checkpoint_sha256_8"]
    assert with_masked["provenance"]["masked@apart"] == {"start_sha256_8": masked_start, "finetune": "apart"}
    assert with_masked["pretrained_checkpoint_sha256_8"] == [molecules["pretrained_checkpoint_sha256_8"], "11111111"]
    # an arm's pretraining comes from the file of its rows: a masked arm from another pretraining merges beside
    masked_only = json.loads(json.dumps(arm))
    masked_only["pretrainings"] = [dict(p, checkpoint_sha256_8="22222222") for p in arm["pretrainings"]]
    masked_only["runs"] = [dict(r, target="ethanol3") for r in molecules["runs"] if r["objective"] == "masked"]
    masked_only["trajectories"] = []
    (tmp_path / "masked-only.json").write_text(json.dumps(masked_only))
    run_script(["transfer.py", "--merge", str(tmp_path / "masked-only.json"), str(tmp_path / "masked.json"),
                "--results", str(tmp_path / "two-starts.json")], monkeypatch)
    two = json.loads((tmp_path / "two-starts.json").read_text())
    assert two["provenance"]["masked"]["start_sha256_8"] == "22222222"
    assert two["provenance"]["masked@apart"]["start_sha256_8"] == masked_start
    assert next(p for p in two["pretrainings"] if p["objective"] == "masked")["checkpoint_sha256_8"] == "22222222"
    # one arm from two bundled models (ethanol2's supervised rows from another start) is not one curve: refused
    other["pretrained_checkpoint_sha256_8"] = "00000000"
    paths[1].write_text(json.dumps(other))
    monkeypatch.setattr(sys, "argv", ["transfer.py", "--merge", *map(str, paths), "--results", str(merged_path)])
    with pytest.raises(SystemExit, match="rows of supervised come from different starts"):
        runpy.run_path(str(ROOT / "training" / "experiments" / "transfer.py"), run_name="__main__")


@pytest.mark.slow
def test_active_learning_experiment_end_to_end(tmp_path, monkeypatch):
    """Held-out xTB data -> nnp learn from the bundled model and from scratch, the random baseline with as
    many labels, stability replicas, test errors, log-rank against random -> JSON with the issue's keys;
    a second call reads every stage back."""
    import ase.io

    from nnp.data.generate.xtb import generate_molecule_xtb

    data = tmp_path / "heldout"
    generate_molecule_xtb(data / "ethanol_pool.extxyz", "ethanol", n_frames=16, interval=2, progress=False)
    generate_molecule_xtb(data / "ethanol_test.extxyz", "ethanol", n_frames=3, interval=2, seed=1, progress=False)
    results = tmp_path / "active_learning.json"
    argv = ["active_learning.py", "--targets", "ethanol", "--data", str(data), "--output", str(tmp_path / "runs"),
            "--results", str(results), "--initial", "4", "--ensemble", "2", "--train-minutes", "0.01",
            "--explore-ps", "0.02", "--explore-replicas", "1", "--per-iteration", "2", "--max-labels", "6",
            "--max-iterations", "2", "--lo", "0.0", "--hi", "100", "--replicas", "2", "--time-ps", "0.02"]

    def experiment():
        run_script(argv, monkeypatch)

    experiment()
    doc = json.loads(results.read_text())
    rows = {r["method"]: r for r in doc["targets"]}
    assert set(rows) == {"active", "random", "random_long", "random_cpu",
                         "active_scratch", "random_scratch", "random_scratch_long", "random_scratch_cpu"}
    keys = {"target", "method", "labels", "test_force_mae_meV_A", "replicas", "replicas_stable", "time_ps",
            "km_median_ps", "logrank_p_vs_random"}
    assert all(keys <= set(r) for r in rows.values())
    assert {r["pool_temperature_K"] for r in rows.values()} == {500.0}  # the generator's default, read from the pool
    # every deviation is a candidate (lo 0, hi 100): the loop labels 2 per iteration up to the budget
    assert all(r["labels"] == 6 for r in rows.values())
    frames = {b: ase.io.read(tmp_path / "runs" / "ethanol" / b / "random-6.extxyz", index=":")
              for b in ("random", "random_long", "random_scratch", "random_scratch_long")}
    assert all(len(f) == 6 for f in frames.values())
    assert [a.positions.tolist() for a in frames["random_long"]] == [a.positions.tolist() for a in frames["random"]]
    # the loop labels once (4 -> 6) and trains twice (before and after): a long baseline trains as long as both
    assert rows["active"]["train_minutes_budget"] == rows["random_long"]["train_minutes_budget"] == pytest.approx(0.02)
    assert rows["random"]["train_minutes_budget"] == pytest.approx(0.01)
    limits = {m: torch.load(tmp_path / "runs" / "ethanol" / m / "train-6" / "last.ckpt", weights_only=True)
              ["config"]["train"]["time_limit_minutes"] for m in ("random", "random_long", "random_scratch_long")}
    assert limits == pytest.approx({"random": 0.01, "random_long": 0.02, "random_scratch_long": 0.02})
    # the equal-compute baselines: trained for member 0's CPU time, the sum of its epochs' recorded cpu_seconds
    for loop, baseline in (("active", "random_cpu"), ("active_scratch", "random_scratch_cpu")):
        member0 = sum(float(r["cpu_seconds"]) for i in range(2) for r in csv.DictReader(
            (tmp_path / "runs" / "ethanol" / loop / f"iter-{i:03d}" / "train" / "member0" / "metrics.csv").open()))
        assert rows[loop]["member0_cpu_minutes"] == pytest.approx(member0 / 60) and member0 > 0
        assert member0 / 60 < rows[loop]["cpu_minutes"]["train"]  # one member of two, setup and export excluded
        trained = torch.load(tmp_path / "runs" / "ethanol" / baseline / "train-6" / "last.ckpt", weights_only=True)
        assert trained["config"]["train"]["cpu_limit_minutes"] == pytest.approx(member0 / 60)
        assert trained["config"]["train"]["time_limit_minutes"] is None and rows[baseline]["budget"] == "cpu_limit_minutes"
        assert 0 <= rows[loop]["logrank_p_vs_random_cpu"] <= 1
    assert all(r["replicas"] == 2 and r["test_force_mae_meV_A"] > 0 for r in rows.values())
    assert rows["random"]["logrank_p_vs_random"] is None and rows["random_scratch"]["logrank_p_vs_random"] is None
    assert all(0 <= rows[m]["logrank_p_vs_random_long"] <= 1 for m in ("active", "active_scratch"))
    assert rows["random"]["calibration"] is None  # one model, no ensemble
    assert all(rows[m]["calibration"]["frames"] == 3 and rows[m]["calibration"]["members"] == 2
               for m in ("active", "active_scratch"))
    assert all(0 <= rows[m]["logrank_p_vs_random"] <= 1 for m in ("active", "active_scratch"))
    assert (tmp_path / "active_learning-ethanol.png").exists()
    stamps = {p: p.stat().st_mtime for p in (tmp_path / "runs").rglob("stability.json")}
    assert len(stamps) == 8
    experiment()
    assert {p: p.stat().st_mtime for p in (tmp_path / "runs").rglob("stability.json")} == stamps
    again = {r["method"]: r for r in json.loads(results.read_text())["targets"]}
    assert again["random"]["cpu_minutes"] == rows["random"]["cpu_minutes"] and rows["random"]["cpu_minutes"]["train"] > 0
    # a baseline trained for another budget is refused on read-back, never silently reused
    changed = [*argv[:argv.index("--train-minutes") + 1], "0.02", *argv[argv.index("--train-minutes") + 2:]]
    monkeypatch.setattr(sys, "argv", [*changed, "--methods", "active", "random"])
    with pytest.raises(SystemExit, match="trained with time_limit_minutes 0.01, this comparison needs 0.02 min"):
        runpy.run_path(str(ROOT / "training" / "experiments" / "active_learning.py"), run_name="__main__")
    # labels to stability: the loop's state after its first training (the 4 initial labels), baselines alike,
    # read while the loop is still running (learn.json has row 0 only, no end): the loop is read, never resumed
    summary = tmp_path / "runs" / "ethanol" / "active_scratch" / "learn.json"
    running = json.loads(summary.read_text())
    running = {"iterations": running["iterations"][:1]}
    summary.write_text(json.dumps(running))
    early = tmp_path / "at-0.json"
    run_script([*argv[:argv.index("--results")], "--results", str(early), *argv[argv.index("--results") + 2:],
                "--methods", "active_scratch", "random_scratch_long", "--at-iteration", "0"], monkeypatch)
    at0 = {r["method"]: r for r in json.loads(early.read_text())["targets"]}
    assert {r["iteration"] for r in at0.values()} == {0} and all(r["labels"] == 4 for r in at0.values())
    assert at0["active_scratch"]["model"].endswith("iter-000/train/member0/model.nnp.pt")
    assert at0["random_scratch_long"]["train_minutes_budget"] == pytest.approx(0.01)
    assert (tmp_path / "runs" / "ethanol" / "stability-active_scratch-it0" / "stability.json").exists()
    assert 0 <= at0["active_scratch"]["logrank_p_vs_random_long"] <= 1
    assert (tmp_path / "at-0-ethanol-it0.png").exists()
    assert json.loads(summary.read_text()) == running and at0["active_scratch"]["stopped_by"] is None
    both = tmp_path / "both.json"  # the end and iteration 0 of the same loop merge side by side
    run_script(["active_learning.py", "--merge", str(results), str(early), "--results", str(both)], monkeypatch)
    assert {r["iteration"] for r in json.loads(both.read_text())["targets"] if r["method"] == "active_scratch"} == {0, None}
    # another stability protocol: its own folder beside the first run, which is neither read back nor overwritten
    more = [*argv[:argv.index("--replicas") + 1], "3", *argv[argv.index("--replicas") + 2:]]
    more[more.index("--results") + 1] = str(tmp_path / "three.json")
    run_script([*more, "--methods", "active", "random"], monkeypatch)
    three = {r["method"]: r for r in json.loads((tmp_path / "three.json").read_text())["targets"]}
    assert three["active"]["replicas"] == 3 and three["random"]["replicas"] == 3
    assert (tmp_path / "runs" / "ethanol" / "stability-active-3x0.02ps" / "stability.json").exists()
    assert {p: p.stat().st_mtime for p in stamps} == stamps


def test_active_learning_merge(tmp_path, monkeypatch):
    """A loop and its random baseline run apart merge into one file whose log-rank test is made on the merged
    rows (each apart had none); a row in two files counts once; seeds merge side by side, with a log-rank test
    stratified by seed; files of another protocol are refused."""
    from nnp.md.survival import logrank_test, stratified_logrank_test

    committed = json.loads((ROOT / "results" / "active_learning.json").read_text())
    rows = {r["method"]: r for r in committed["targets"] if r["target"] == "ethanol"}
    loop, baseline = json.loads(json.dumps(committed)), json.loads(json.dumps(committed))
    loop["targets"] = [dict(rows["active_scratch"], logrank_p_vs_random=None, temperature_K=500.0)]
    loop["command"], loop["protocol"]["temperature"] = "active_learning.py --methods active_scratch", None  # its rows'
    baseline["targets"] = [dict(rows["random_scratch"], stable_ps=[t / 2 for t in rows["random_scratch"]["stable_ps"]])]
    baseline["command"], baseline["protocol"]["output"] = "active_learning.py --methods random_scratch", "elsewhere"
    paths = [tmp_path / "loop.json", tmp_path / "baseline.json"]
    for path, doc in zip(paths, (loop, baseline)):
        path.write_text(json.dumps(doc))
    merged_path = tmp_path / "merged.json"
    run_script(["active_learning.py", "--merge", *map(str, paths), str(paths[0]), "--results", str(merged_path)],
               monkeypatch)
    merged = json.loads(merged_path.read_text())
    assert [r["method"] for r in merged["targets"]] == ["active_scratch", "random_scratch"]
    assert merged["command"] == [loop["command"], baseline["command"]]
    halved = baseline["targets"][0]
    expected = logrank_test(rows["active_scratch"]["stable_ps"], rows["active_scratch"]["collapsed"],
                            halved["stable_ps"], halved["collapsed"]).p_value
    assert merged["targets"][0]["logrank_p_vs_random"] == pytest.approx(expected)
    assert merged["targets"][1]["logrank_p_vs_random"] is None
    assert (tmp_path / "merged-ethanol.png").exists()
    assert merged["logrank_stratified_by_seed"] == []  # one seed: the per-row test says it all
    # a second seed (the same loop and baseline run again with --seed 1): each loop is tested against its own
    # seed's baseline, and once over both seeds, stratified by seed
    other = []
    for path, doc in zip(paths, (loop, baseline)):
        again = json.loads(json.dumps(doc))
        again["protocol"]["seed"] = 1
        again["targets"] = [dict(r, stable_ps=[min(t * 1.5, r["time_ps"]) for t in r["stable_ps"]]) for r in doc["targets"]]
        other.append(path.with_name(f"{path.stem}-seed1.json"))
        other[-1].write_text(json.dumps(again))
    run_script(["active_learning.py", "--merge", *map(str, paths + other), "--results", str(merged_path)], monkeypatch)
    merged = json.loads(merged_path.read_text())
    by = {(r["method"], r["seed"]): r for r in merged["targets"]}
    assert sorted(by) == [("active_scratch", 0), ("active_scratch", 1), ("random_scratch", 0), ("random_scratch", 1)]
    assert by["active_scratch", 0]["logrank_p_vs_random"] == pytest.approx(expected)
    pairs = [(by["active_scratch", k], by["random_scratch", k]) for k in (0, 1)]
    assert by["active_scratch", 1]["logrank_p_vs_random"] == pytest.approx(logrank_test(
        pairs[1][0]["stable_ps"], pairs[1][0]["collapsed"], pairs[1][1]["stable_ps"], pairs[1][1]["collapsed"]).p_value)
    [stratified] = merged["logrank_stratified_by_seed"]
    assert (stratified["method"], stratified["baseline"], stratified["state"], stratified["seeds"]) == (
        "active_scratch", "random_scratch", "end", [0, 1])
    assert stratified["p"] == pytest.approx(stratified_logrank_test(
        [(a["stable_ps"], a["collapsed"], b["stable_ps"], b["collapsed"]) for a, b in pairs]).p_value)
    # a second target with one seed: no per-target test of its own, but one over both targets, stratified by
    # target and seed (three strata)
    third = tmp_path / "other-target.json"
    doc = json.loads(json.dumps(loop))
    doc["targets"] = [dict(r, target="aspirin", temperature_K=500.0, stable_ps=[t * 0.8 for t in r["stable_ps"]])
                      for r in loop["targets"] + baseline["targets"]]
    third.write_text(json.dumps(doc))
    run_script(["active_learning.py", "--merge", *map(str, paths + other), str(third), "--results", str(merged_path)],
               monkeypatch)
    tests = {t["target"]: t for t in json.loads(merged_path.read_text())["logrank_stratified_by_seed"]}
    assert sorted(tests) == ["all", "ethanol"]
    assert (tests["all"]["targets"], tests["all"]["seeds"]) == (["ethanol", "ethanol", "aspirin"], [0, 1, 0])
    assert tests["all"]["p"] == pytest.approx(stratified_logrank_test(
        [(a["stable_ps"], a["collapsed"], b["stable_ps"], b["collapsed"]) for a, b in [*pairs, doc["targets"]]]).p_value)
    baseline["protocol"]["calibrate"] = 10
    paths[1].write_text(json.dumps(baseline))
    monkeypatch.setattr(sys, "argv", ["active_learning.py", "--merge", *map(str, paths), "--results", str(merged_path)])
    with pytest.raises(SystemExit, match="calibrate"):
        runpy.run_path(str(ROOT / "training" / "experiments" / "active_learning.py"), run_name="__main__")


@pytest.mark.slow
def test_active_learning_experiment_on_a_periodic_liquid(tmp_path, monkeypatch):
    """A periodic pool (water) switches the experiment to the liquid protocol: exploration and stability at
    300 K, nnp stability's water protocol (one LAMMPS run per trajectory), its times read as stable times;
    EMT labels the pool and the loop (cheap, periodic)."""
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator
    from helpers import water_box

    from nnp.data.atomic import write_frames

    def labelled(seeds):
        frames = []
        for seed in seeds:
            atoms = water_box(seed=seed)
            atoms.calc = EMT()
            atoms.calc = SinglePointCalculator(atoms, energy=atoms.get_potential_energy(), forces=atoms.get_forces())
            frames.append(atoms)
        return frames

    data = tmp_path / "heldout"
    data.mkdir()
    write_frames(data / "water_pool.extxyz", labelled(range(10)))
    write_frames(data / "water_test.extxyz", labelled(range(100, 103)))
    results = tmp_path / "active_learning.json"
    monkeypatch.setenv("PYTHONPATH", f"{ROOT / 'tests'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")  # the labeller
    run_script(["active_learning.py", "--targets", "water", "--methods", "active", "random", "--data", str(data),
                "--output", str(tmp_path / "runs"), "--results", str(results), "--labeller", "emt_labeller:SlowEMT",
                "--initial", "4", "--ensemble", "2", "--train-minutes", "0.01", "--explore-ps", "0.01",
                "--explore-replicas", "1", "--per-iteration", "2", "--max-labels", "6", "--max-iterations", "2",
                "--lo", "0.0", "--hi", "1000", "--replicas", "2", "--time-ps", "0.02"], monkeypatch)
    rows = {r["method"]: r for r in json.loads(results.read_text())["targets"]}
    assert set(rows) == {"active", "random"}
    assert all(r["system"] == "water" and r["temperature_K"] == 300.0 and r["replicas"] == 2 for r in rows.values())
    assert all(r["labels"] == 6 for r in rows.values())
    learn = yaml.safe_load((tmp_path / "runs" / "water" / "active" / "learn.yaml").read_text())
    assert learn["explore"]["systems"][0]["temperatures"] == [300.0]
    stability = json.loads((tmp_path / "runs" / "water" / "stability-active" / "stability.json").read_text())
    assert stability["protocol"]["system"] == "water" and stability["protocol"]["temperature"] == 300.0
    assert rows["active"]["stable_ps"] == [t["time_ps"] for t in stability["trajectories"]]
    # the same again with the MD in float32 files: loops and baselines read back, new stability runs only
    run_script(["active_learning.py", "--targets", "water", "--methods", "active", "random", "--data", str(data),
                "--output", str(tmp_path / "runs"), "--results", str(results), "--labeller", "emt_labeller:SlowEMT",
                "--initial", "4", "--ensemble", "2", "--train-minutes", "0.01", "--explore-ps", "0.01",
                "--explore-replicas", "1", "--per-iteration", "2", "--max-labels", "6", "--max-iterations", "2",
                "--lo", "0.0", "--hi", "1000", "--replicas", "2", "--time-ps", "0.02", "--md-file", "float32"],
               monkeypatch)
    from nnp.export import load_exported

    again = {r["method"]: r for r in json.loads(results.read_text())["targets"]}
    for method, row in again.items():
        md = tmp_path / "runs" / "water" / f"stability-{method}-float32" / "model-float32.nnp.pt"
        assert row["md_model"] == str(md) and rows[method]["md_model"] == rows[method]["model"]
        assert load_exported(md)[1]["dtype"] == "float32" and load_exported(row["model"])[1]["dtype"] == "float64"
        assert row["test_force_mae_meV_A"] == rows[method]["test_force_mae_meV_A"]  # of the trained file


def test_water_hot_runs_each_model_once_and_compares_them(tmp_path, monkeypatch):
    """training/experiments/water_hot.py: nnp stability at the given temperature for each model (skipped where its
    stability.json exists), one JSON with stable times, closest distances and the log-rank p, one plot."""
    from helpers import small_model

    from nnp.data.atomic import write_frames
    from nnp.data.readers import bundled_dataset, read_structures
    from nnp.export import export_model

    def soft(seed: int, path: Path) -> Path:  # nearly no forces: at 1 K the atoms hardly move in 10 fs
        model = small_model(cutoff=3.0, layers=2, seed=seed)
        with torch.no_grad():
            for p in model.backbone.parameters():
                p.mul_(0.05)
        return export_model(model, path)

    a, b = soft(0, tmp_path / "a.nnp.pt"), soft(1, tmp_path / "b.nnp.pt")
    reference = tmp_path / "box.extxyz"  # one frame, started from at 1 K: its RDF stays the reference's
    write_frames(reference, read_structures(bundled_dataset())[:1])
    results, out = tmp_path / "hot.json", tmp_path / "runs"
    argv = ["water_hot.py", "--model", f"a={a}", "--model", f"b={b}", "--compare", "a", "b", "--temperature", "1",
            "--replicas", "2", "--time-ps", "0.01", "--reference", str(reference), "--output", str(out),
            "--results", str(results)]
    run_script(argv, monkeypatch)
    doc = json.loads(results.read_text())
    assert [r["label"] for r in doc["models"]] == ["a", "b"]
    for r in doc["models"]:
        stability = json.loads((out / r["label"] / "stability.json").read_text())
        assert stability["protocol"]["temperature"] == 1.0 and r["replicas"] == 2 == r["replicas_stable"]
        assert r["stable_ps"] == [t["stable_ps"] for t in stability["trajectories"]]
        assert all(set(c) == {"O-O", "O-H", "H-H"} for c in r["closest_A"])
    assert 0.0 <= doc["comparisons"][0]["logrank_p"] <= 1.0 and Path(doc["plot"]).exists()
    written = (out / "a" / "stability.json").stat().st_mtime_ns
    run_script(argv, monkeypatch)  # read back, not run again
    assert (out / "a" / "stability.json").stat().st_mtime_ns == written
    monkeypatch.setattr(sys, "argv", [*argv[:5], "--compare", "a", "c"])
    with pytest.raises(SystemExit) as refused:
        runpy.run_path(str(ROOT / "training" / "experiments" / "water_hot.py"), run_name="__main__")
    assert refused.value.code == 2

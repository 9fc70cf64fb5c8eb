"""Does pretraining pay off on molecules the model never saw? Label-efficiency runs, paired by seed.

    .venv/bin/python training/experiments/transfer.py --targets aspirin ethanol paracetamol --sizes 100 \
        --seeds 0 1 2 --minutes 2.5 --jobs 2

For each target (``--data DIR`` holds ``<target>_pool.extxyz`` and a separate test trajectory
``<target>_test.extxyz``, made by ``nnp data generate molecule-xtb``, or for the water box by ``nnp data
generate water-xtb``), training size N and seed s:

* the split: the first N frames of a permutation of the pool drawn from s train, the next
  ``max(10, N // 10)`` validate (one file per (target, N, s), shared by every objective: paired);
* ``scratch``: the pretrained model's architecture from random weights (seed s), the molecule recipe
  ``training/aspirin/painn.yaml``, learning rate tuned on validation over ``--lr-grid`` (seed 0, at every N;
  ``--lr-from T``: on target T only, used for every target of T's kind, molecule or water);
* ``supervised``: the bundled pretrained model (``--pretrained``) finetuned with the defaults of
  ``nnp finetune --from`` (one fixed schedule);
* ``supervised+replay``: the same with ``--replay``: frames of the pretraining set's replay slice mixed
  into the training split (does keeping the general data in view change accuracy?);
* ``masked``, ``denoise``, ``denoise-small``: the same architecture pretrained without labels on the
  pretraining set's positions (``--pretrain-recipe``, the supervised model's CPU budget; masked hydrogens
  with the force-direction target and negative cosine loss; denoising as the paper ran it on water,
  sigma 1 Å with the displacement as target, and a smaller sigma 0.04 Å predicting the unit noise), each
  finetuned with the same fixed schedule as ``supervised``;
* ``--finetune-schedule scratch``: the pretrained arms finetuned instead with scratch's recipe and tuned
  learning rate, as the masked-pretraining paper finetuned (rows ``<objective>@scratch-schedule``, a
  separate arm: does the fixed schedule, made for the supervised model, hold the other starts back?);
* ``zero-shot`` rows: the pretrained model as shipped.

Stability (``--stability-sizes``, ``--stability-targets``, ``--stability-seeds``): the first seed's (or those seeds')
model of every objective at those N runs ``nnp stability``
(``--stability-replicas`` × ``--stability-ps``, nnp stability's protocol for the target: molecules at 500 K with
MDsim's bond criterion, a periodic water box at 300 K with its RDF criterion); the trajectories, each
model's Kaplan–Meier median and the log-rank test against scratch at the same N (the replicas of every
seed's model pooled) go into the JSON. A
stability run that fails is an error, never a collapse. The same models get the three force-field analyses of
``nnp analyze`` on the test frames (``analyses``: latent silhouette, force smoothness, force-difference error).

Forgetting: every pretrained and finetuned model is also tested on ``--general`` frames of the pretraining
set's own validation split (evenly spaced, drawn as the pretraining run drew it; ``general_force_mae_meV_A``),
so that what finetuning (with or without replay) costs on the chemistry it was pretrained on can be read off.

Every model of a target and training size N trains for the same wall-clock budget (``--minutes``, or
``--minutes-at [TARGET:]N=M``) in its own process on one thread
(``--jobs`` processes side by side); its CPU minutes are measured (user + system time of the process).
A wall-clock budget is fair only with one model per idle core; ``--clock cpu`` makes every budget count the
training process's CPU minutes instead (``train.cpu_limit_minutes``: its epochs, not start-up or export),
for runs beside other work; that is fairer, not fair: an oversubscribed CPU gets less done per CPU minute
(water scratch N = 10: 174 epochs in 7.75 CPU minutes with five processes on the 2 cores, 237 with one model per core).
``--epochs N`` trains exactly N epochs with no time limit: a model rebuilt from its row's epoch count.
Test errors come from the exported model file on the target's test trajectory. Resumable: a finished
run is read back from its directory (a finetuned run's directory names the first 8 hex digits of its
start checkpoint's SHA-256, so a retrained bundled model is run afresh, never read back). Writes
``results/transfer.json`` (``runs``, paired ``summary``) and a learning-curve plot beside it;
``--merge A.json B.json ... --results R.json`` makes one file of invocations run apart (e.g. molecules and water,
or one arm's MD run after scratch's: the log-rank tests are made on the merged trajectories; arms from different
starts side by side, each arm's start in ``provenance``; one arm's rows from two starts are refused).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import shlex
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NNP = str(Path(sys.executable).with_name("nnp"))
SPLIT_LOCK = threading.Lock()
SCRATCH_RECIPE = "training/aspirin/painn.yaml"
DEFAULTS_OF_OLD_FILES = {"budget_clock": "wall"}  # keys that files from before them lack, and what they meant
LIMIT_KEYS = {"wall": "time_limit_minutes", "cpu": "cpu_limit_minutes"}  # --clock: the train.* key of the budget
SCRATCH_SCHEDULE = "@scratch-schedule"  # suffix of the arms of --finetune-schedule scratch
# self-supervised objectives: `nnp pretrain` overrides of --pretrain-recipe
SELF_SUPERVISED = {
    "masked": ["pretrain.task=masked", "pretrain.target=force", "pretrain.mask_embedding=true", "pretrain.mask_ratio=0.5"],
    "denoise": ["pretrain.task=denoise", "pretrain.target=force", "pretrain.mask_embedding=false",
                "pretrain.noise_sigma=1.0", "pretrain.noise_target=displacement"],
    "denoise-small": ["pretrain.task=denoise", "pretrain.target=force", "pretrain.mask_embedding=false",
                      "pretrain.noise_sigma=0.04", "pretrain.noise_target=eps"],
}
OBJECTIVES = ["scratch", "supervised", "supervised+replay", *SELF_SUPERVISED]
COLOURS = {"scratch": "tab:gray", "supervised": "tab:blue", "supervised+replay": "tab:green",
           "masked": "tab:red", "denoise": "tab:purple", "denoise-small": "tab:orange"}  # of every plot, per objective


@dataclass(frozen=True)
class Run:
    target: str
    objective: str  # one of OBJECTIVES
    n_train: int
    seed: int
    lr: float | None = None  # scratch, and the arms finetuned with its recipe
    pretrained: str | None = None  # finetuned runs: digest of the checkpoint they start from
    schedule: str | None = None  # finetuned runs: digest of nnp finetune's defaults, or "scratch" (scratch's recipe)
    minutes: float = 2.5  # budget
    clock: str = "wall"  # what the budget counts: wall-clock minutes, or the training process's CPU minutes
    epochs: int | None = None  # instead of a time budget: exactly this many epochs (--epochs)

    @property
    def budget_kind(self) -> str:
        """What the budget counts: ``wall`` or ``cpu`` minutes, or ``epochs``."""
        return "epochs" if self.epochs else self.clock

    @property
    def label(self) -> str:
        """The objective as rows name it: a pretrained arm finetuned with scratch's recipe is a separate arm."""
        return self.objective + (SCRATCH_SCHEDULE if self.schedule == "scratch" else "")  # scratch's own: None

    def directory(self, root: Path) -> Path:
        """One directory per run; a finetuned run's names its start and the finetuning defaults, so a new bundled
        model or new defaults are never read back as the old ones; every run's names its budget (``-m``: wall-clock
        minutes, ``-c``: CPU minutes, ``-e``: epochs)."""
        tag = f"-lr{self.lr:g}" if self.lr is not None else ""
        tag += f"-{self.pretrained}" if self.pretrained is not None else ""
        tag += f"-f{self.schedule}" if self.schedule is not None else ""
        budget = {"epochs": f"e{self.epochs}", "wall": f"m{self.minutes:g}", "cpu": f"c{self.minutes:g}"}[self.budget_kind]
        return root / self.target / f"{self.objective}{tag}-{budget}-n{self.n_train}-s{self.seed}"


def schedule_digest() -> str:
    """First 6 hex digits of the SHA-256 of nnp finetune's defaults (nnp.train.finetune.FINETUNE_DEFAULTS)."""
    import hashlib

    from nnp.train.finetune import FINETUNE_DEFAULTS

    return hashlib.sha256(json.dumps(FINETUNE_DEFAULTS, sort_keys=True).encode()).hexdigest()[:6]


def digest(path: Path) -> str:
    """First 8 hex digits of the file's SHA-256."""
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:8]


def split_file(pool: Path, n: int, seed: int, out: Path) -> tuple[Path, float]:
    """Train + validation frames of (pool, N, seed) in one file, and the validation fraction of it."""
    path = out / f"{pool.stem}-n{n}-s{seed}.extxyz"
    n_val = max(10, n // 10)
    with SPLIT_LOCK:  # parallel runs share split files
        if not path.exists():
            _write_split(pool, n + n_val, seed, path)
    return path, n_val / (n + n_val)


def _write_split(pool: Path, count: int, seed: int, path: Path) -> None:
    """The first ``count`` frames of a permutation of ``pool`` drawn from ``seed``, written atomically."""
    import ase.io

    path.parent.mkdir(parents=True, exist_ok=True)
    frames = ase.io.read(pool, ":")
    if count > len(frames):
        raise SystemExit(f"{pool} has {len(frames)} frames; the split needs {count} (train + validation)")
    order = np.random.default_rng(seed).permutation(len(frames))[:count]
    tmp = path.with_name(path.name + ".tmp")
    ase.io.write(tmp, [frames[k] for k in order], format="extxyz")
    os.replace(tmp, path)


def command(run: Run, data: Path, val_fraction: float, args, architecture: dict) -> list[str]:
    common = ["--set", f"output_dir={run.directory(args.output)}", "--no-progress",
              "--set", f"data.val_fraction={val_fraction}", "--set", "data.test_fraction=0.0",
              "--set", f"data.split_seed={run.seed}", "--set", f"train.seed={run.seed}",
              *[x for clock, key in LIMIT_KEYS.items()  # the budget's limit, and no other (the recipe's included)
                for x in ("--set", f"train.{key}={run.minutes if clock == run.budget_kind else 'null'}")],
              "--set", f"train.epochs={run.epochs or 100000}"]
    model = [x for key, value in architecture.items() for x in ("--set", f"model.{key}={value}")]
    recipe = [*model, *common, "--set", f"train.lr={run.lr}", "--set", "train.early_stopping_patience=40"]
    if run.objective == "scratch":
        return [NNP, "train", "--config", SCRATCH_RECIPE, "--set", f"data.path={data}", *recipe]
    start = args.pretrained if run.objective.startswith("supervised") else str(pretraining_dir(run.objective, args) / "best.ckpt")
    replay = ["--replay", str(args.replay_frames)] if run.objective == "supervised+replay" else []
    if run.schedule == "scratch":  # scratch's recipe and learning rate, from the pretrained weights
        return [NNP, "finetune", "--from", start, "--config", SCRATCH_RECIPE, "--data", str(data), *replay, *recipe]
    return [NNP, "finetune", "--from", start, "--data", str(data), *replay, *common]


def minute_budgets(args, sizes: dict[str, list[int]]) -> dict[tuple[str, int], float]:
    """Wall-clock minutes per (target, N), for the targets and their lr sources: ``--minutes``, then ``--minutes-at``
    N=M (every target), then TARGET:N=M."""
    budget = {(source, n): args.minutes for t in args.targets for n in sizes[t] for source in (t, lr_source(t, args))}
    for item in sorted(args.minutes_at, key=lambda x: ":" in x):  # the per-target ones last: they win
        key, minutes = item.split("=")
        target, _, n = key.rpartition(":")
        budget.update({(t, m): float(minutes) for t, m in budget if m == int(n) and target in ("", t)})
    return budget


def target_kind(target: str, args) -> str:
    """``molecule`` or ``water`` (a periodic pool): nnp stability's protocol for the target."""
    return _kind_of(args.data / f"{target}_pool.extxyz")


@functools.lru_cache
def _kind_of(pool: Path) -> str:
    import ase.io

    from nnp.md.protocol import stability_system

    return stability_system(ase.io.read(pool, index=0))


def stability_runs(runs: list[Run], args) -> list[Run]:
    """The runs whose models run MD and the analyses: ``--stability-seeds``' (default: the first seed's), at
    ``--stability-sizes``, of ``--stability-targets`` (default: every target)."""
    seeds = args.stability_seeds if args.stability_seeds is not None else args.seeds[:1]
    return [r for r in runs if r.n_train in args.stability_sizes and r.seed in seeds
            and r.target in (args.stability_targets or args.targets)]


def lr_source(target: str, args) -> str:
    """The target whose validation frames choose ``target``'s scratch learning rate (``--lr-from`` for its kind)."""
    if args.lr_from and target_kind(target, args) == target_kind(args.lr_from, args):
        return args.lr_from
    return target


def pretraining_dir(objective: str, args) -> Path:
    return args.output / f"pretrain-{objective}"


def pretrain(objective: str, args) -> dict:
    """``nnp pretrain`` of one self-supervised objective (read back when done; a killed run resumes)."""
    directory = pretraining_dir(objective, args)
    if not (directory / "results.json").exists():
        directory.mkdir(parents=True, exist_ok=True)
        extra = ["--set", f"data.path={args.pretrain_data}"] if args.pretrain_data is not None else []
        if args.pretrain_minutes is not None:
            extra += ["--set", f"train.time_limit_minutes={args.pretrain_minutes}"]
        cmd = [NNP, "pretrain", "--config", args.pretrain_recipe, "--no-progress", "--set", f"output_dir={directory}",
               "--set", f"name=pretrain-{objective}", *[x for o in SELF_SUPERVISED[objective] for x in ("--set", o)],
               *extra]
        with open(directory / "pretrain.log", "a") as log:
            if subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT) != 0:
                raise RuntimeError(f"{shlex.join(cmd)} failed; see {directory / 'pretrain.log'}")
    summary = json.loads((directory / "results.json").read_text())
    return {"objective": objective, "checkpoint": str(directory / "best.ckpt"),
            "checkpoint_sha256_8": digest(directory / "best.ckpt"), "epochs": summary["epochs"],
            "stopped_by": summary["stopped_by"], "best_val_loss": summary["best_val_loss"]}


def stability(run: Run, args) -> dict:
    """``nnp stability`` of a finished run's model on its target (read back when done); failure is an error."""
    directory = run.directory(args.output) / "stability"
    result = directory / "stability.json"
    if not result.exists():
        test = args.data / f"{run.target}_test.extxyz"  # molecules: 500 K, bond criterion; water: 300 K, RDF criterion
        cmd = [NNP, "stability", "--model", str(run.directory(args.output) / "model.nnp.pt"),
               "--system", target_kind(run.target, args), "--reference", str(test),
               "--replicas", str(args.stability_replicas),
               "--time", f"{args.stability_ps:g}ps", "--seed", str(run.seed), "--output", str(directory)]
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory.with_suffix(".log"), "w") as log:
            code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if code != 0:
            raise RuntimeError(f"{shlex.join(cmd)} failed (exit {code}); see {directory.with_suffix('.log')}")
    return json.loads(result.read_text())


def stability_tables(runs: list[Run], rows: list[dict], args) -> tuple[list[dict], list[dict], dict]:
    """Stability of the chosen models (``stability_runs``): trajectories, summaries, log-rank vs scratch."""
    errors = {(r["target"], r["n_train"], r["objective"], r["seed"]): r["test_force_mae_meV_A"] for r in rows if r["n_train"]}
    chosen = stability_runs(runs, args)
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda r: stability(r, args), chosen))
    trajectories, summaries = [], []
    for run, result in zip(chosen, results):
        for t in result["trajectories"]:
            trajectories.append({"objective": run.label, "target": run.target, "n_train": run.n_train,
                                 "seed": run.seed, "stable_ps": t["stable_ps"], "collapsed": t["collapsed"],
                                 "reason": t.get("reason")})
        km = result["kaplan_meier"]
        summaries.append({"objective": run.label, "target": run.target, "n_train": run.n_train, "seed": run.seed,
                          "replicas": km["n"], "collapsed": km["collapses"], "km_median_ps": km["median_ps"],
                          "km_median_ci_ps": km["median_ci_ps"], "time_ps": args.stability_ps,
                          "h_r_mae": result.get("h_r_mae"),
                          "test_force_mae_meV_A": errors[(run.target, run.n_train, run.label, run.seed)]})
    return trajectories, summaries, logrank_vs_scratch(trajectories)


def logrank_vs_scratch(trajectories: list[dict]) -> dict:
    """Log-rank test of every pretrained objective's trajectories against scratch's at the same (target, N),
    the replicas of every seed's model pooled, keyed ``target/nN/objective``; groups without scratch
    trajectories are left out."""
    from nnp.md.survival import logrank_test

    groups: dict[tuple, list[dict]] = {}
    for t in trajectories:
        groups.setdefault((t["target"], t["n_train"], t["objective"]), []).append(t)
    logrank = {}
    for (target, n, objective), mine in groups.items():
        base = groups.get((target, n, "scratch"))
        if objective != "scratch" and base:
            test = logrank_test([t["stable_ps"] for t in mine], [t["collapsed"] for t in mine],
                                [t["stable_ps"] for t in base], [t["collapsed"] for t in base])
            logrank[f"{target}/n{n}/{objective}"] = {"vs": "scratch", "chi2": test.chi2, "p": test.p_value}
    return logrank


def analyses(runs: list[Run], args) -> list[dict]:
    """The three force-field analyses (latent structure, force smoothness, force-difference consistency; ``nnp
    analyze``) of the stability runs' models, per (target, N) on the target's test frames; read back when done."""
    from nnp.data.dataset import load_structures
    from nnp.md.analysis import compare_models, model_names

    rows = []
    chosen = stability_runs(runs, args)
    for target, n in sorted({(r.target, r.n_train) for r in chosen}):
        mine = [r for r in chosen if (r.target, r.n_train) == (target, n)]
        models = [r.directory(args.output) / "model.nnp.pt" for r in mine]
        names = model_names(models)
        out = args.output / f"analysis-{target}-n{n}-s{'-'.join(str(s) for s in sorted({r.seed for r in mine}))}"
        summary = json.loads((out / "analysis.json").read_text()) if (out / "analysis.json").exists() else None
        paths = {name: str(path.resolve()) for path, name in zip(models, names)}
        if summary is None or any(k not in summary["models"] or summary.get("model_paths", {}).get(k) != v
                                  for k, v in paths.items()):
            # read back only an analysis of every one of these model files (a short name can mean another file)
            summary = compare_models(models, load_structures(str(args.data / f"{target}_test.extxyz")), out,
                                     max_frames=args.analysis_frames)
        for run, name in zip(mine, names):
            rows.append({"objective": run.label, "target": target, "n_train": n, "seed": run.seed,
                         **summary["models"][name], "plots": summary["plots"]})
    return rows


def plot_survival(path: Path, trajectories: list[dict]) -> list[str]:
    """Kaplan–Meier curves of every objective, one plot per (target, N): ``<path stem>-survival-<target>-n<N>.png``."""
    from nnp.md.survival import kaplan_meier
    from nnp.plotting import plot_kaplan_meier

    written = []
    for target, n in sorted({(t["target"], t["n_train"]) for t in trajectories}):
        mine = [t for t in trajectories if (t["target"], t["n_train"]) == (target, n)]
        curves = {o: kaplan_meier([t["stable_ps"] for t in mine if t["objective"] == o],
                                  [t["collapsed"] for t in mine if t["objective"] == o])
                  for o in sorted({t["objective"] for t in mine})}
        out = path.with_name(f"{path.stem}-survival-{target}-n{n}.png")
        written.append(str(plot_kaplan_meier(curves, max(t["stable_ps"] for t in mine), out,
                                             colours={o: COLOURS.get(o.split("@")[0]) for o in curves})))
    return written


def general_frames(args) -> list:
    """``--general`` frames, evenly spaced, of ``--general-data`` or else of the pretrained model's own validation
    split (drawn as its training drew it; cached in the output folder); none when ``--general 0``."""
    import ase.io

    from nnp.config import config_from_dict
    from nnp.data.dataset import split_indices
    from nnp.pretrained import checkpoint_for
    from nnp.train.checkpoint import load_checkpoint
    from nnp.train.data import open_frames

    def evenly(frames, indices) -> list:
        return [frames.atoms(int(k)) for k in indices[np.linspace(0, len(indices) - 1, min(args.general, len(indices))).astype(int)]]

    if args.general < 1:
        return []
    if args.general_data is not None:
        frames = open_frames(str(args.general_data))
        return evenly(frames, np.arange(len(frames)))
    cache = args.output / f"general-{args.general}.extxyz"
    if cache.exists():
        return ase.io.read(cache, index=":", format="extxyz")
    config = config_from_dict(load_checkpoint(checkpoint_for(args.pretrained))["config"], "checkpoint").data
    if not Path(config.path).exists():
        print(f"no forgetting test: the pretraining data {config.path} is not here", flush=True)
        return []
    frames = open_frames(config.path)
    n = len(frames) if not config.max_frames else min(config.max_frames, len(frames))
    picks = evenly(frames, split_indices(n, config.val_fraction, config.test_fraction, config.split_seed)["val"])
    cache.parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(cache, picks, format="extxyz")
    return picks


def with_general(row: dict, model_file: Path | str, general: list) -> dict:
    """``row`` with the model's force MAE on the general frames (pretrained models only: scratch knows one molecule)."""
    from nnp.train.evaluate import evaluate_model_file

    if general and row["objective"] != "scratch" and "general_force_mae_meV_A" not in row:
        row["general_force_mae_meV_A"] = 1000 * evaluate_model_file(model_file, general)["forces_mae"]
    return row


def execute(run: Run, args, architecture: dict, general: list) -> dict:
    """Train (or read back) one run; its test errors on the target's test trajectory and CPU minutes."""
    from nnp.data.atomic import write_text
    from nnp.data.dataset import load_structures
    from nnp.train.evaluate import evaluate_model_file

    directory = run.directory(args.output)
    row_file = directory / "row.json"
    if row_file.exists():
        row = json.loads(row_file.read_text())
        if "general_force_mae_meV_A" not in row:  # a run from before the forgetting test
            with_general(row, directory / "model.nnp.pt", general)
            if "general_force_mae_meV_A" in row:
                write_text(row_file, json.dumps(row, indent=1))
        return row
    data, val_fraction = split_file(args.data / f"{run.target}_pool.extxyz", run.n_train, run.seed,
                                    args.output / "splits")
    cmd = command(run, data, val_fraction, args, architecture)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "train.log", "w") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "OMP_NUM_THREADS": "1"})
        _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed; see {directory / 'train.log'}")
    summary = json.loads((directory / "results.json").read_text())
    test = evaluate_model_file(directory / "model.nnp.pt", load_structures(str(args.data / f"{run.target}_test.extxyz")))
    row = {"objective": run.label, "target": run.target, "n_train": run.n_train, "seed": run.seed, "lr": run.lr,
           "pretrained_sha256_8": run.pretrained, "finetune_defaults_sha256_6": run.schedule,
           "test_force_mae_meV_A": 1000 * test["forces_mae"], "test_energy_mae_meV_atom": 1000 * test["energy_per_atom_mae"],
           "val_force_mae_meV_A": 1000 * summary["metrics"]["val"]["forces_mae"],
           "minutes": None if run.epochs else run.minutes, "clock": run.budget_kind,
           "cpu_minutes": (usage.ru_utime + usage.ru_stime) / 60, "epochs": summary["epochs"],
           "stopped_by": summary["stopped_by"], "command": shlex.join(cmd)}
    write_text(row_file, json.dumps(with_general(row, directory / "model.nnp.pt", general), indent=1))
    return row


def zero_shot(target: str, args, general: list) -> dict:
    from nnp.data.dataset import load_structures
    from nnp.train.evaluate import evaluate_model_file

    test = evaluate_model_file(args.pretrained, load_structures(str(args.data / f"{target}_test.extxyz")))
    row = {"objective": "supervised", "target": target, "n_train": 0, "seed": None, "lr": None,
           "test_force_mae_meV_A": 1000 * test["forces_mae"], "test_energy_mae_meV_atom": 1000 * test["energy_per_atom_mae"],
           "cpu_minutes": 0.0, "epochs": 0, "stopped_by": "zero-shot"}
    return with_general(row, args.pretrained, general)


def paired_summary(runs: list[dict]) -> list[dict]:
    """Per target and N: each objective's mean test errors and its paired ratio to scratch (95 % t-interval)."""
    from scipy import stats

    out = []
    for target, n in sorted({(r["target"], r["n_train"]) for r in runs if r["n_train"] > 0}):
        base = {r["seed"]: r for r in runs if (r["target"], r["n_train"], r["objective"]) == (target, n, "scratch")}
        for objective in sorted({r["objective"] for r in runs if (r["target"], r["n_train"]) == (target, n)}):
            mine = {r["seed"]: r for r in runs if (r["target"], r["n_train"], r["objective"]) == (target, n, objective)}
            row = {"target": target, "n_train": n, "objective": objective, "seeds": sorted(mine),
                   "cpu_minutes_mean": float(np.mean([r["cpu_minutes"] for r in mine.values()]))}
            for metric in ("test_force_mae_meV_A", "test_energy_mae_meV_atom"):
                row[metric + "_mean"] = float(np.mean([r[metric] for r in mine.values()]))
                common = sorted(set(mine) & set(base))
                if objective != "scratch" and len(common) > 1:
                    ratio = np.array([mine[s][metric] / base[s][metric] for s in common])
                    half = float(stats.t.ppf(0.975, len(ratio) - 1) * ratio.std(ddof=1) / np.sqrt(len(ratio)))
                    row[metric + "_ratio_to_scratch"] = float(ratio.mean())
                    row[metric + "_ratio_ci95"] = [float(ratio.mean() - half), float(ratio.mean() + half)]
            general = [r["general_force_mae_meV_A"] for r in mine.values() if "general_force_mae_meV_A" in r]
            if general:  # forgetting: the finetuned models' error on the pretraining chemistry
                row["general_force_mae_meV_A_mean"] = float(np.mean(general))
            out.append(row)
    return out


def plot(path: Path, runs: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = sorted({r["target"] for r in runs})
    fig, axes = plt.subplots(1, len(targets), figsize=(4 * len(targets), 3.5), squeeze=False)
    for ax, target in zip(axes[0], targets):
        labels = {r["objective"] for r in runs if r["target"] == target and r["n_train"] > 0}
        for objective in sorted(labels, key=lambda o: (list(COLOURS).index(o.split("@")[0]), o)):
            mine = [r for r in runs if r["target"] == target and r["objective"] == objective and r["n_train"] > 0]
            sizes = sorted({r["n_train"] for r in mine})
            values = [[r["test_force_mae_meV_A"] for r in mine if r["n_train"] == n] for n in sizes]
            ax.errorbar(sizes, [np.mean(v) for v in values], yerr=[np.std(v) for v in values], marker="o",
                        color=COLOURS[objective.split("@")[0]], ls="--" if "@" in objective else "-",
                        label={"supervised": "supervised (organic-xtb), finetuned"}.get(objective, objective))
        zero = [r for r in runs if r["target"] == target and r["n_train"] == 0]
        if zero:
            ax.axhline(zero[0]["test_force_mae_meV_A"], color="tab:blue", ls=":", label="organic-xtb, zero-shot")
        ax.set(xscale="log", yscale="log", title=target, xlabel="training frames N", ylabel="test force MAE (meV/Å)")
    legend = {}  # one legend for every panel, beside them: the curves of one panel are too close for one inside
    for ax in axes[0]:
        legend.update(zip(*reversed(ax.get_legend_handles_labels())))
    fig.legend(legend.values(), legend.keys(), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def arm_provenance(doc: dict, objective: str) -> dict:
    """What an arm's rows in one results file start from: nothing (scratch), a self-supervised pretraining's
    checkpoint or the bundled model's, finetuned with nnp finetune's defaults (their digest) or scratch's recipe."""
    if objective == "scratch":
        return {}
    if objective in doc.get("provenance", {}):  # a merged file knows each arm's
        return doc["provenance"][objective]
    base, _, schedule = objective.partition("@")
    pretrainings = {p["objective"]: p["checkpoint_sha256_8"] for p in doc.get("pretrainings", [])}
    start = pretrainings.get(base, doc["pretrained_checkpoint_sha256_8"])
    return {"start_sha256_8": start, "finetune": schedule or doc["finetune_defaults_sha256_6"]}


def merge(files: list[Path], results: Path) -> dict:
    """One results file from several invocations (e.g. the molecules and the water box run apart): the lists
    concatenated (a row in two files counts once), the per-key dicts united, summary, log-rank tests against
    scratch (an arm whose MD ran apart from scratch's too) and plots made afresh.
    One arm (objective) whose kept rows come from different starts (pretrained checkpoint) or finetuning
    schedules is not one curve: refused. Arms of different starts side by side are fine (``provenance``)."""
    docs = [json.loads(Path(f).read_text()) for f in files]
    sources: dict[str, set[int]] = {}  # objective -> the files its kept rows come from

    def rows(key: str, identity: tuple[str, ...]) -> list[dict]:
        """Rows of ``key``; all rows of one identity come from the first file that has that identity
        (the trajectories of one model are many rows with one identity)."""
        owner, out = {}, []
        for index, d in enumerate(docs):
            for row in d.get(key, []):
                if owner.setdefault(tuple(json.dumps(row.get(k)) for k in identity), index) == index:
                    out.append(row)
                    if "objective" in row and key in ("runs", "trajectories"):
                        sources.setdefault(row["objective"], set()).add(index)
        return out

    def united(key: str) -> dict:
        return {k: v for d in docs for k, v in d.get(key, {}).items()}

    def listed(value) -> list:  # a merged file holds lists where a single run's file holds one value
        return value if isinstance(value, list) else [value]

    def sizes() -> dict[str, list[int]]:  # a target's N of every file (one file may add N to another's target)
        return {t: sorted({n for d in docs for n in d.get("sizes", {}).get(t, [])})
                for t in dict.fromkeys(t for d in docs for t in d.get("sizes", {}))}

    runs = rows("runs", ("objective", "target", "n_train", "seed"))
    trajectories = rows("trajectories", ("objective", "target", "n_train", "seed"))
    provenance = {}
    for objective, indices in sorted(sources.items()):
        starts = {json.dumps(arm_provenance(docs[i], objective), sort_keys=True) for i in indices}
        if len(starts) > 1:
            raise SystemExit(f"--merge: the rows of {objective} come from different starts or finetuning schedules "
                             f"({'; '.join(f'{files[i]}: {arm_provenance(docs[i], objective)}' for i in sorted(indices))}); "
                             "they are not one curve: rerun the older ones with this start, or merge them apart")
        provenance[objective] = json.loads(starts.pop())

    pretrainings: dict[str, dict] = {}  # each self-supervised arm's, from the file its rows come from (else the first)
    for i, d in enumerate(docs):
        for p in d.get("pretrainings", []):
            if i == min(sources.get(p["objective"], {i})):
                pretrainings.setdefault(p["objective"], p)

    def agreed(key: str):  # one value where the files agree, else each file's
        values = list(dict.fromkeys(json.dumps(d.get(key, DEFAULTS_OF_OLD_FILES.get(key)), sort_keys=True) for d in docs))
        return json.loads(values[0]) if len(values) == 1 else [json.loads(v) for v in values]

    doc = {"command": list(dict.fromkeys(c for d in docs for c in listed(d["command"]))),  # each invocation once
           "merged_from": [str(f) for f in files], "provenance": provenance,
           **{k: agreed(k) for k in ("pretrained", "finetune_defaults", "finetune_defaults_sha256_6",
                                     "pretrained_checkpoint_sha256_8", "budget_clock", "threads_per_model", "cpu")},
           "parallel_jobs": sorted({j for d in docs for j in listed(d["parallel_jobs"])}),
           "minutes_per_model": united("minutes_per_model"), "sizes": sizes(), "scratch_lr": united("scratch_lr"),
           "lr_search": rows("lr_search", ("target", "n_train", "lr")),
           "pretrainings": list(pretrainings.values()), "runs": runs, "summary": paired_summary(runs),
           "trajectories": trajectories, "stability": rows("stability", ("objective", "target", "n_train", "seed")),
           "logrank": logrank_vs_scratch(trajectories), "analyses": rows("analyses", ("objective", "target", "n_train", "seed"))}
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(doc, indent=1))
    plot(results.with_suffix(".png"), runs)
    plot_survival(results, trajectories)
    return doc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", nargs="+", default=["aspirin", "ethanol", "paracetamol"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--minutes", type=float, default=2.5, help="budget of every model (see --clock)")
    parser.add_argument("--clock", choices=sorted(LIMIT_KEYS), default="wall",
                        help="what the budgets count: wall-clock minutes (fair only with one model per idle core), "
                             "or the training process's CPU minutes (for runs beside other work; see the header)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="instead of a time budget: train every model exactly this many epochs, no time limit "
                             "(e.g. to rebuild a model whose row recorded its epochs, on a busy machine)")
    parser.add_argument("--minutes-at", nargs="*", default=[], metavar="[TARGET:]N=MINUTES",
                        help="another budget for the models of training size N, of every target or of one "
                             "(e.g. 1000=6 water:10=8)")
    parser.add_argument("--lr-grid", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2])
    parser.add_argument("--scratch-lr", type=float, default=None, help="skip the search")
    parser.add_argument("--sizes-at", nargs="*", default=[], metavar="TARGET=N,N,..",
                        help="other training sizes for one target (e.g. water=10,40,160)")
    parser.add_argument("--lr-from", default=None,
                        help="search scratch's lr on this target only (at every N), use it for the targets of the same "
                             "kind (molecules or water); a target of the other kind searches its own")
    parser.add_argument("--pretrained", default="organic-xtb")
    parser.add_argument("--data", type=Path, default=Path("data/heldout"))
    parser.add_argument("--output", type=Path, default=Path("runs/transfer"))
    parser.add_argument("--results", type=Path, default=Path("results/transfer.json"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--objectives", nargs="+", default=["supervised", "scratch"], choices=OBJECTIVES)
    parser.add_argument("--finetune-schedule", choices=["defaults", "scratch"], default="defaults",
                        help="how the pretrained arms are finetuned: nnp finetune's defaults (one fixed schedule), or "
                             f"scratch's recipe with its tuned lr (the masked paper's protocol; rows '<objective>{SCRATCH_SCHEDULE}')")
    parser.add_argument("--pretrain-recipe", default="training/organic/painn-selfsup.yaml",
                        help="nnp pretrain config of the self-supervised objectives")
    parser.add_argument("--pretrain-data", default=None, help="their data (default: the recipe's)")
    parser.add_argument("--pretrain-minutes", type=float, default=None, help="their budget (default: the recipe's)")
    parser.add_argument("--stability-sizes", type=int, nargs="*", default=[], help="N whose models run MD")
    parser.add_argument("--stability-targets", nargs="*", default=None, help="targets whose models run MD (default: all)")
    parser.add_argument("--stability-seeds", type=int, nargs="*", default=None,
                        help="seeds whose models run MD (default: the first of --seeds)")
    parser.add_argument("--stability-replicas", type=int, default=32)
    parser.add_argument("--analysis-frames", type=int, default=50, help="test frames of the force-field analyses")
    parser.add_argument("--stability-ps", type=float, default=20.0)
    parser.add_argument("--replay-frames", type=int, default=200, help="frames replayed by supervised+replay")
    parser.add_argument("--general", type=int, default=200,
                        help="frames for the forgetting test (0: none), of the pretraining validation split or --general-data")
    parser.add_argument("--general-data", type=Path, default=None, help="frames file for the forgetting test")
    parser.add_argument("--merge", type=Path, nargs="+", default=None,
                        help="only merge these results files (e.g. molecules and water run apart) into --results")
    args = parser.parse_args()
    if args.merge:
        merge(args.merge, args.results)
        return 0
    from nnp.pretrained import checkpoint_for, get

    start = digest(checkpoint_for(args.pretrained))
    architecture = {k: v for k, v in get(args.pretrained).card["architecture"].items()}
    architecture["cutoff"] = get(args.pretrained).card["cutoff_A"]
    general = general_frames(args)

    def run_all(runs: list[Run]) -> list[dict]:
        with ThreadPoolExecutor(args.jobs) as pool:
            return list(pool.map(lambda r: execute(r, args, architecture, general), runs))

    sizes = {t: args.sizes for t in args.targets} | {
        t: [int(n) for n in v.split(",")] for t, v in (x.split("=") for x in args.sizes_at)}
    budget = minute_budgets(args, sizes)
    lrs, searched = {}, []  # scratch's learning rate per (target, N), tuned on seed 0's validation frames

    def search(target: str, n: int) -> float:
        if args.scratch_lr is not None:
            return args.scratch_lr
        found = run_all([Run(target, "scratch", n, 0, lr, minutes=budget[target, n], clock=args.clock, epochs=args.epochs)
                         for lr in args.lr_grid])
        searched.extend(found)
        best = min(found, key=lambda r: r["val_force_mae_meV_A"])["lr"]
        print(f"{target} N={n}: scratch lr {best:g} (validation force MAE "
              + ", ".join(f"{r['lr']:g}: {r['val_force_mae_meV_A']:.1f}" for r in found) + ")", flush=True)
        return best

    scratch_lr_needed = "scratch" in args.objectives or args.finetune_schedule == "scratch"
    for target in args.targets if scratch_lr_needed else []:
        source = lr_source(target, args)
        for n in sizes[target]:
            if (source, n) not in lrs:
                lrs[source, n] = search(source, n)
            lrs[target, n] = lrs[source, n]
    pretrainings = [pretrain(o, args) for o in args.objectives if o in SELF_SUPERVISED]
    starts = {"supervised": start, "supervised+replay": start,
              **{p["objective"]: p["checkpoint_sha256_8"] for p in pretrainings}}
    defaults = schedule_digest()
    schedule = "scratch" if args.finetune_schedule == "scratch" else defaults
    runs = [Run(t, objective, n, s, lrs[t, n] if objective == "scratch" or schedule == "scratch" else None,
                starts.get(objective), None if objective == "scratch" else schedule, budget[t, n], args.clock, args.epochs)
            for n in sorted({n for _, n in budget}) for s in args.seeds for t in args.targets if n in sizes[t]
            for objective in args.objectives]
    rows = [zero_shot(t, args, general) for t in args.targets] + run_all(runs)
    trajectories, stability_summary, logrank = stability_tables(runs, rows, args)
    analysis_rows = analyses(runs, args)
    from nnp.train.finetune import FINETUNE_DEFAULTS

    doc = {"command": shlex.join([".venv/bin/python", *sys.argv]), "pretrained": args.pretrained,
           "finetune_defaults": FINETUNE_DEFAULTS, "finetune_defaults_sha256_6": defaults,
           "pretrained_checkpoint_sha256_8": start,
           "minutes_per_model": {f"{t}/n{n}": m for (t, n), m in budget.items() if t in args.targets},
           "budget_clock": "epochs" if args.epochs else args.clock, "threads_per_model": 1, "parallel_jobs": args.jobs,
           "sizes": sizes, "scratch_lr": {f"{t}/n{n}": lr for (t, n), lr in lrs.items() if t in args.targets}, "lr_search": searched, "pretrainings": pretrainings, "runs": rows,
           "summary": paired_summary(rows), "trajectories": trajectories, "stability": stability_summary,
           "logrank": logrank, "analyses": analysis_rows, "cpu": os.uname().machine,
           "rusage_children_cpu_minutes": (lambda u: (u.ru_utime + u.ru_stime) / 60)(
               resource.getrusage(resource.RUSAGE_CHILDREN))}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(doc, indent=1))
    plot(args.results.with_suffix(".png"), rows)
    plot_survival(args.results, trajectories)
    for row in doc["summary"]:
        ratio = row.get("test_force_mae_meV_A_ratio_to_scratch")
        print(f"{row['target']:<12} N={row['n_train']:<5} {row['objective']:<11} F MAE "
              f"{row['test_force_mae_meV_A_mean']:7.1f} meV/Å  E MAE {row['test_energy_mae_meV_atom_mean']:6.2f} meV/atom"
              + (f"  ratio to scratch {ratio:.2f} {row['test_force_mae_meV_A_ratio_ci95']}" if ratio else "")
              + (f"  general F MAE {row['general_force_mae_meV_A_mean']:.1f}" if "general_force_mae_meV_A_mean" in row else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

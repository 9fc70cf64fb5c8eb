"""Does active learning give a stable potential, and does its selection matter? (issue 25)

    .venv/bin/python training/experiments/active_learning.py --targets ethanol paracetamol

For each target (``--data DIR`` holds ``<target>_pool.extxyz`` and a separate test set ``<target>_test.extxyz``):
a molecule (an xTB trajectory at 500 K made by ``nnp data generate molecule-xtb``; explored and tested at 500 K,
stability as replicas in one LAMMPS run, MDsim's bond criterion) or a periodic liquid (``water``: the project's
xTB water box, ``nnp data generate water-xtb``; explored and tested at 300 K with nnp stability's water protocol,
MDsim's RDF criterion, one LAMMPS run per trajectory). ``--temperature`` and ``--time-ps`` override the
protocol's. The random baselines draw from the pool, so a pool sampled cooler than the test (its own ``--data``
folder with the same test set; rows record ``pool_temperature_K``) asks what the selection buys over a cheaper
reference run (RESULTS §14.3).

* ``active``: ``nnp learn`` from the bundled model ``--start``: ``--initial`` frames of the pool (drawn by
  ``--seed``) to begin with, exploration at 500 K from the pool's first frame, DeePMD-kit's trust levels
  ``--lo``/``--hi`` on the ensemble's force deviation, ``--per-iteration`` labels (GFN2-xTB) per iteration,
  until the loop converges or reaches ``--max-labels``;
* ``random``: the same start finetuned on as many labelled frames as ``active`` ended with, drawn at random
  from the pool (the initial frames among them): the same labels without the selection;
* ``active_scratch``: the same loop from random weights (``--scratch-recipe``);
* ``random_scratch``: that recipe trained on as many random frames as ``active_scratch`` ended with;
* ``random_long``, ``random_scratch_long``: the same frames as ``random`` / ``random_scratch``, trained for as
  long as the loop's driving member was trained in all (``--train-minutes`` × its trainings: the loop warm-starts
  every iteration from the last, so its final model has had that much training, a single baseline run one).
* ``random_cpu``, ``random_scratch_cpu``: the same frames again, trained for as much CPU time as the loop's driving
  member had in all (``train.cpu_limit_minutes``): a comparison at equal compute that the box's load cannot skew.
  Member 0's CPU is the sum of its epochs' ``cpu_seconds`` (``metrics.csv``); for loops trained before those were
  recorded, the ensemble's training CPU divided by its members (setup and export included, so a little more than
  member 0's epochs had: in the baseline's favour).

Each method's driving model (ensemble member 0) then runs ``nnp stability`` (``--replicas`` trajectories ×
``--time-ps``), its force MAE is measured on the test trajectory, and a
log-rank test compares its stable times with those of the random baselines of the same start
(``random``, ``random_long`` and ``random_cpu`` for ``active``, ``random_scratch``, ``random_scratch_long`` and
``random_scratch_cpu`` for ``active_scratch``: ``logrank_p_vs_random``, ``logrank_p_vs_random_long``,
``logrank_p_vs_random_cpu``). Every stage leaves files that a second call
reads back (``nnp learn`` resumes itself, ``nnp stability`` continues from its checkpoint), so a killed run
continues where it stopped. Writes
``results/active_learning.json`` (a list ``targets``, one row per target and method) and survival curves
beside it (``active_learning-<target>.png``). ``--merge A.json B.json ... --results R.json`` makes one file of
invocations run apart (a loop, then its random baseline; or two targets), with the log-rank tests made afresh.

``--at-iteration K`` asks the same of the loop's state after its K-th training instead of its end (labels to
stability; the loop need not have ended, only written iteration K's row to learn.json): the loop's driving model
of iteration K (trained on the labels it had then, K + 1 trainings), and random baselines with that many labels
(``_long``: K + 1 training budgets; ``_cpu``: member 0's CPU up to then). Its rows carry ``iteration`` (None: the
loop's end), its stability runs write ``stability-<method>-it<K>``, its plots ``<results stem>-<target>-it<K>.png``.
A stability folder that holds a run of another ``--replicas``, ``--time-ps`` or ``--temperature`` is left alone:
the new run goes to the same name with ``-<replicas>x<time>ps`` added.

``--md-file float32`` or ``float32-pt2`` runs the stability MD with each driving model exported again from its
``best.ckpt`` (the checkpoint of the trained file) in float32, as TorchScript or compiled (``.nnp.pt2``): the
same weights, the MD precision docs/pair_style.md recommends on CPUs; 2.3x and 6.7x faster on the water box. Test
errors stay those of the trained (float64) file; the stability folders get ``-<md-file>`` added.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

NNP = str(Path(sys.executable).with_name("nnp"))
METHODS = ("active", "random", "random_long", "random_cpu",
           "active_scratch", "random_scratch", "random_scratch_long", "random_scratch_cpu")
# each baseline: the loop whose start and label count it takes
LOOP = {method: ("active_scratch" if "scratch" in method else "active") for method in METHODS if "random" in method}
BUDGETS = ("", "_long", "_cpu")  # a baseline's training: one budget, the loop member's wall clock, its CPU time
# the log-rank test: each loop against the one-budget baseline of its start (BUDGETS' suffixes added for the others)
BASELINE = {loop: baseline for baseline, loop in LOOP.items() if not baseline.endswith(BUDGETS[1:])}

STABILITY_PS = {"molecule": 20.0, "water": 10.0, "periodic": 10.0}  # the stability length per kind of target
MD_FILES = {"trained": None, "float32": ".nnp.pt", "float32-pt2": ".nnp.pt2"}  # --md-file: suffix of the MD export


def budget_of(baseline: str) -> str:
    """A random baseline's budget: its suffix in BUDGETS."""
    return next((suffix for suffix in BUDGETS[1:] if baseline.endswith(suffix)), "")


def child_cpu_minutes() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) / 60


def die_with_parent() -> None:
    """In a child before exec: SIGTERM when this harness dies (Linux's PR_SET_PDEATHSIG), so that killing the
    harness, even with SIGKILL, leaves no training or MD running on."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG


def run_logged(cmd: list[str], log: Path) -> float:
    """Run ``cmd`` (one thread), its output appended to ``log``; returns its CPU minutes; a failure is an error.
    The child ends with the harness (:func:`die_with_parent`)."""
    before = child_cpu_minutes()
    with open(log, "a") as out:
        code = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                               preexec_fn=die_with_parent)
    if code != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed (exit {code}); see {log}")
    return child_cpu_minutes() - before


def pool_frames(pool: list, count: int, seed: int) -> list:
    """The first ``count`` frames of the pool's permutation by ``seed``: the initial frames are its start, and a
    random baseline with more labels extends them with the frames that follow."""
    return [pool[int(k)] for k in np.random.default_rng(seed).permutation(len(pool))[:count]]


def prepare(target: str, args) -> dict:
    """The target's files: initial frames (``--initial`` of the pool, by ``--seed``), exploration start, pool,
    test set; its kind (``system``: ``molecule``, or ``water`` for a periodic pool) and the temperature its pool
    was sampled at (``pool_temperature_K``, as the generator recorded it; None if it did not)."""
    import ase.io

    from nnp.data.atomic import write_frames
    from nnp.md.protocol import stability_system

    root = args.output / target
    files = {"initial": root / "initial.extxyz", "start": root / "start.extxyz",
             "pool": args.data / f"{target}_pool.extxyz", "test": args.data / f"{target}_test.extxyz"}
    first = ase.io.read(files["pool"], index=0)
    files["system"] = stability_system(first)
    files["pool_temperature_K"] = first.info.get("temperature_K")
    if not files["initial"].exists():
        pool = ase.io.read(files["pool"], index=":")
        root.mkdir(parents=True, exist_ok=True)
        write_frames(files["start"], [pool[0]])
        write_frames(files["initial"], pool_frames(pool, args.initial, args.seed))
    return files


def learn(target: str, method: str, files: dict[str, Path], args) -> dict:
    """``nnp learn`` for ``active`` (from ``--start``) or ``active_scratch`` (from ``--scratch-recipe``)."""
    run_dir = args.output / target / method
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "output_dir": str(run_dir),
        "start": args.start if method == "active" else args.scratch_recipe,
        "initial_data": str(files["initial"]),
        "ensemble": args.ensemble,
        "seed": args.seed,
        "train": [f"train.time_limit_minutes={args.train_minutes}", "train.epochs=100000"],
        "explore": {"systems": [{"structure": str(files["start"]), "temperatures": [temperature(files, args)],
                                 "steps": int(round(args.explore_ps * 1000 / 0.5)), "replicas": args.explore_replicas}],
                    "timestep_fs": 0.5, "out_freq": 10},
        "deviation": {"lo": args.lo, "hi": args.hi, "calibrate": args.calibrate},
        "select": {"per_iteration": args.per_iteration},
        "stop": {"candidate_fraction": args.candidate_fraction, "max_labels": args.max_labels,
                 "max_iterations": args.max_iterations},
    }
    if args.labeller:
        config["labeller"] = {"calculator": args.labeller}
    path = run_dir / "learn.yaml"
    summary_path = run_dir / "learn.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {"iterations": []}
    # done: the loop has ended, or (--at-iteration K) it has written row K: a loop still running is read, not joined
    done = "final_models" in summary or any(r["iteration"] == args.at_iteration for r in summary["iterations"])
    minutes = 0.0
    if not done:
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        minutes = run_logged([NNP, "learn", "--config", str(path), "--no-progress"], run_dir / "learn.log")
        summary = json.loads(summary_path.read_text())
    rows = summary["iterations"]

    def cpu_minutes(used: list[dict]) -> dict[str, float]:
        return {stage: sum(r["cpu_seconds"][stage] for r in used) / 60 for stage in ("train", "explore", "select", "label")}

    def member0_cpu_minutes(trainings: int, ensemble_cpu: float) -> float:
        """Member 0's training CPU over its first ``trainings`` runs: its epochs' ``cpu_seconds``, or (for loops
        trained before those were recorded) the ensemble's training CPU over its members."""
        metrics = [run_dir / f"iter-{i:03d}" / "train" / "member0" / "metrics.csv" for i in range(trainings)]
        epochs = [row for m in metrics if m.exists() for row in csv.DictReader(m.read_text().splitlines())]
        if all(m.exists() for m in metrics) and all(row.get("cpu_seconds") for row in epochs):
            return sum(float(row["cpu_seconds"]) for row in epochs) / 60
        return ensemble_cpu / len(rows[0]["models"])

    if args.at_iteration is None:  # the loop's end
        members, labels = summary["final_models"], rows[-1]["labels"]
        trainings = len(list(run_dir.glob("iter-*/train/member0/model.nnp.pt")))  # member 0 warm-started each time
        cpu = cpu_minutes(rows)
    else:  # iteration K's exploring ensemble (iter-K): trained on the labels before K's own, its (K + 1)-th training
        k = args.at_iteration
        row = next((r for r in rows if r["iteration"] == k), None)
        if row is None:
            raise SystemExit(f"--at-iteration {k}: {summary_path} has iterations 0-{len(rows) - 1}")
        # row["models"] of a stopping row names the final ensemble trained after it, so the paths come from iter-K
        members = [str(run_dir / f"iter-{k:03d}" / "train" / f"member{m}" / "model.nnp.pt")
                   for m in range(len(rows[0]["models"]))]
        labels, trainings = row["labels"] - row["new_labels"], k + 1
        cpu = cpu_minutes(rows[:k])  # to reach it: iterations before K, then K's training (a stopping row's
        cpu["train"] += row["cpu_seconds"]["train"] / 60  # includes the final ensemble's)
    return {"model": members[0], "members": members, "labels": labels,
            "iterations": len(rows), "train_minutes_budget": trainings * args.train_minutes,
            "member0_cpu_minutes": member0_cpu_minutes(trainings, cpu["train"]),
            "stopped_by": summary.get("stopped_by"), "cpu_minutes": cpu, "cpu_minutes_this_call": minutes}


def random_baseline(target: str, method: str, labels: int, minutes: float, files: dict[str, Path], args) -> dict:
    """``random(_long, _cpu)``: ``--start`` finetuned, ``random_scratch(_long, _cpu)``: ``--scratch-recipe``
    trained, for ``minutes`` of wall clock (of CPU time for ``_cpu``) on ``labels`` frames: the initial ones and
    the next of the same random permutation of the pool."""
    import ase.io

    from nnp.data.atomic import write_frames

    run_dir = args.output / target / method
    limit = "cpu_limit_minutes" if budget_of(method) == "_cpu" else "time_limit_minutes"
    data = run_dir / f"random-{labels}.extxyz"
    model = run_dir / f"train-{labels}" / "model.nnp.pt"
    if not model.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        write_frames(data, pool_frames(ase.io.read(files["pool"], index=":"), labels, args.seed))
        common = ["--no-progress", "--set", f"output_dir={model.parent}", "--set", f"train.seed={args.seed}",
                  "--set", f"train.{limit}={minutes}", "--set", "train.epochs=100000"]
        if limit == "cpu_limit_minutes":  # the CPU budget alone (a recipe may set a wall-clock one)
            common += ["--set", "train.time_limit_minutes=null"]
        start = (["finetune", "--from", args.start, "--data", str(data)] if LOOP[method] == "active" else
                 ["train", "--config", args.scratch_recipe, "--set", f"data.path={data}"])
        cpu = run_logged([NNP, *start, *common], run_dir / "train.log")
        (model.parent / "cpu_minutes.json").write_text(json.dumps({"train": cpu}))
    else:  # read back: only if it was trained for the budget asked now (a loop rerun may have trained more often)
        from nnp.train.checkpoint import load_checkpoint

        trained = load_checkpoint(model.parent / "last.ckpt")["config"]["train"].get(limit)
        if trained is None or abs(trained - minutes) > 1e-9:
            raise SystemExit(f"{model} was trained with {limit} {trained}, this comparison needs {minutes:g} min "
                             f"(the loop's trainings changed?); remove {model.parent} to train it again")
    recorded = model.parent / "cpu_minutes.json"  # absent for runs trained before it was written: unknown
    return {"model": str(model), "labels": labels, "train_minutes_budget": minutes, "budget": limit,
            "cpu_minutes": json.loads(recorded.read_text()) if recorded.exists() else {"train": None}}


def loop_state(iteration: int | None) -> str:
    """File-name suffix of the loop state measured: '' for the loop's end, '-it<K>' for ``--at-iteration K``."""
    return "" if iteration is None else f"-it{iteration}"


def temperature(files: dict, args) -> float:
    """Of exploration and stability: ``--temperature``, else nnp stability's for the target's kind."""
    from nnp.md.protocol import PROTOCOLS

    return args.temperature or PROTOCOLS[files["system"]]().temperature


def time_ps(files: dict, args) -> float:
    return args.time_ps or STABILITY_PS[files["system"]]


def stability(target: str, method: str, model: str, files: dict, args) -> dict:
    """``nnp stability`` of the driving model: ``--replicas`` trajectories of the target's protocol (molecules as
    replicas in one LAMMPS run, water one LAMMPS run per trajectory); its summary. In ``stability-<method>[-it<K>]``,
    or, when that folder holds a run of another length, count or temperature, in the same name with
    ``-<replicas>x<time>ps`` added: a run is never read back for a protocol it was not made with."""
    suffix = "" if args.md_file == "trained" else f"-{args.md_file}"
    out = args.output / target / f"stability-{method}{loop_state(args.at_iteration)}{suffix}"
    if (out / "stability.json").exists():
        done = json.loads((out / "stability.json").read_text())
        made_with = (len(done["trajectories"]), done["protocol"]["time_ps"], done["protocol"]["temperature"])
        if made_with != (args.replicas, time_ps(files, args), temperature(files, args)):
            out = out.with_name(f"{out.name}-{args.replicas}x{time_ps(files, args):g}ps")
    result = out / "stability.json"
    if not result.exists():
        model = md_model(model, out, args)
        run_logged([NNP, "stability", "--model", model, "--system", files["system"], "--reference", str(files["test"]),
                    "--replicas", str(args.replicas), "--time", f"{time_ps(files, args):g}ps",
                    "--temperature", f"{temperature(files, args):g}", "--seed", str(args.seed), "--output", str(out)],
                   out.with_suffix(".log"))
    return json.loads(result.read_text())


def md_model(model: str, out: Path, args) -> str:
    """The file the stability MD runs: ``model`` itself (``--md-file trained``), or its checkpoint exported again in
    float32 into ``out`` (TorchScript or ``.nnp.pt2``; kept there, so a resumed run finds the same file)."""
    suffix = MD_FILES[args.md_file]
    if suffix is None:
        return model
    exported = out / f"model-float32{suffix}"
    if not exported.exists():
        out.mkdir(parents=True, exist_ok=True)
        run_logged([NNP, "export", "--checkpoint", str(Path(model).with_name("best.ckpt")), "--output", str(exported),
                    "--dtype", "float32"], out.with_suffix(".export.log"))
    return str(exported)


def test_errors(model: str, files: dict[str, Path]) -> dict:
    from nnp.data.dataset import load_structures
    from nnp.train.evaluate import evaluate_model_file

    errors = evaluate_model_file(model, load_structures(str(files["test"])))
    return {"test_force_mae_meV_A": 1000 * errors["forces_mae"],
            "test_energy_mae_meV_atom": 1000 * errors["energy_per_atom_mae_centered"]}


def plot(path: Path, rows: list[dict]) -> list[str]:
    """Kaplan–Meier curves of every method, one plot per target and loop state (``<path stem>-<target>.png``, or
    ``<path stem>-<target>-it<K>.png`` for ``--at-iteration K``)."""
    from nnp.md.survival import kaplan_meier
    from nnp.plotting import plot_kaplan_meier

    written = []
    for target, k in sorted({(r["target"], r.get("iteration")) for r in rows}, key=str):
        mine = [r for r in rows if (r["target"], r.get("iteration")) == (target, k)]
        seeds = len({r.get("seed") for r in mine}) > 1  # merged seeds: say which curve is whose
        curves = {(f"seed {r.get('seed')} " if seeds else "") +
                  f"{r['method']}: {r['labels']} labels, {r['test_force_mae_meV_A']:.0f} meV/Å":
                  kaplan_meier(r["stable_ps"], r["collapsed"]) for r in mine}
        out = path.with_name(f"{path.stem}-{target}{loop_state(k)}.png")
        written.append(str(plot_kaplan_meier(curves, max(r["time_ps"] for r in mine), out)))
    return written


def logrank_vs_random(rows: list[dict]) -> None:
    """Each loop's stable times against those of the random baselines of its own start, target and loop state
    (``logrank_p_vs_random``, ``logrank_p_vs_random_long``, ``logrank_p_vs_random_cpu``; None for a baseline, or
    for a loop whose baseline is not among ``rows``)."""
    from nnp.md.survival import logrank_test

    for row in rows:
        for suffix in BUDGETS:
            base = baseline_of(row, suffix, rows)
            row[f"logrank_p_vs_random{suffix}"] = (None if base is None else logrank_test(
                row["stable_ps"], row["collapsed"], base["stable_ps"], base["collapsed"]).p_value)


def baseline_of(row: dict, suffix: str, rows: list[dict]) -> dict | None:
    """The random baseline (``suffix``: its budget) of a loop's row: same start, target, loop state and seed."""
    wanted = BASELINE[row["method"]] + suffix if row["method"] in BASELINE else None
    return next((b for b in rows if (b["target"], b["method"], b.get("iteration"), b.get("seed"))
                 == (row["target"], wanted, row.get("iteration"), row.get("seed"))), None)


def logrank_over_seeds(rows: list[dict]) -> list[dict]:
    """Each loop against each random baseline over every seed that ran both: a log-rank test stratified by seed
    (a seed's loop and baselines share their initial frames), for the loop's end and for ``--at-iteration`` rows
    (pooled whatever K each seed was measured at: choose K by one rule, e.g. the first iteration whose
    exploration replicas all stayed below hi). Only where two seeds or more ran; where two targets or more ran,
    also one test over all of them (``target`` "all"), stratified by target and seed."""
    from nnp.md.survival import stratified_logrank_test

    def test(target: str, method: str, suffix: str, state: bool, pairs: list[tuple[dict, dict]]) -> dict:
        result = stratified_logrank_test([(r["stable_ps"], r["collapsed"], b["stable_ps"], b["collapsed"])
                                          for r, b in pairs])
        return {"target": target, "method": method, "baseline": BASELINE[method] + suffix,
                "state": "end" if state else "at_iteration", "seeds": [r.get("seed") for r, _ in pairs],
                "targets": [r["target"] for r, _ in pairs], "iterations": [r.get("iteration") for r, _ in pairs],
                "labels": [r["labels"] for r, _ in pairs],
                "stable": [sum(r["replicas_stable"] for r, _ in pairs), sum(r["replicas"] for r, _ in pairs)],
                "baseline_stable": [sum(b["replicas_stable"] for _, b in pairs), sum(b["replicas"] for _, b in pairs)],
                "chi2": result.chi2, "p": result.p_value}

    tests = []
    loops = [r for r in rows if r["method"] in BASELINE]
    for method, state in sorted({(r["method"], r.get("iteration") is None) for r in loops}):
        mine = [r for r in loops if (r["method"], r.get("iteration") is None) == (method, state)]
        for suffix in BUDGETS:
            pairs = [(r, b) for r in mine if (b := baseline_of(r, suffix, rows)) is not None]
            targets = sorted({r["target"] for r, _ in pairs})
            for target in targets:
                own = [(r, b) for r, b in pairs if r["target"] == target]
                if len({r.get("seed") for r, _ in own}) >= 2:
                    tests.append(test(target, method, suffix, state, own))
            if len(targets) >= 2:
                tests.append(test("all", method, suffix, state, pairs))
    return tests


# what may differ between invocations merged into one file: which rows they ran and where they wrote them
PER_INVOCATION = ("targets", "methods", "output", "results", "merge", "at_iteration", "seed")
ROW_KEY = {"temperature": "temperature_K", "time_ps": "time_ps"}  # protocol settings whose None is a default


def merge(files: list[Path], results: Path) -> dict:
    """One results file from invocations run apart (a loop and its random baseline, or two targets): the rows
    concatenated (a target's method once, from the first file that has it), the log-rank tests and plots made
    afresh. Files whose protocols differ in anything but what each ran (e.g. ``--calibrate``) are refused."""
    docs = [json.loads(Path(f).read_text()) for f in files]

    def setting(doc: dict, key: str):
        """The protocol's value; for a None that means the target's default, the value its rows ran with."""
        value = doc["protocol"].get(key)
        if value is None and key in ROW_KEY:
            ran = {row.get(ROW_KEY[key]) for row in doc["targets"]}
            value = ran.pop() if len(ran) == 1 else sorted(ran, key=str)
        return value

    for key in sorted({k for d in docs for k in d["protocol"]} - set(PER_INVOCATION)):
        values = [setting(d, key) for d in docs]
        if any(v != values[0] for v in values):
            raise SystemExit(f"--merge: the files differ in the protocol's {key!r} "
                             f"({', '.join(f'{f}: {v}' for f, v in zip(files, values))}); their rows are not comparable")
    rows, seen = [], set()
    for d in docs:
        for row in d["targets"]:
            row.setdefault("seed", d["protocol"].get("seed"))  # rows written before they carried it
            key = (row["target"], row["method"], row.get("iteration"), row["seed"])
            if key not in seen:
                seen.add(key)
                rows.append(row)
    logrank_vs_random(rows)
    commands = [c for d in docs for c in (d["command"] if isinstance(d["command"], list) else [d["command"]])]
    doc = {"command": list(dict.fromkeys(commands)), "merged_from": [str(f) for f in files], "start": docs[0]["start"],
           "protocol": {k: v for k, v in docs[0]["protocol"].items() if k not in PER_INVOCATION},
           "targets": rows, "logrank_stratified_by_seed": logrank_over_seeds(rows), "cpu": docs[0]["cpu"]}
    results.parent.mkdir(parents=True, exist_ok=True)
    doc["plots"] = plot(results, rows)
    results.write_text(json.dumps(doc, indent=1))
    return doc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", nargs="+", default=["ethanol", "paracetamol"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--data", type=Path, default=Path("data/heldout"))
    parser.add_argument("--output", type=Path, default=Path("runs/active_learning"))
    parser.add_argument("--results", type=Path, default=Path("results/active_learning.json"))
    parser.add_argument("--start", default="organic-xtb", help="bundled model or checkpoint the loop starts from")
    parser.add_argument("--scratch-recipe", default="training/aspirin/painn.yaml")
    parser.add_argument("--labeller", default=None, help="module:Name of an ASE calculator (default: GFN2-xTB)")
    parser.add_argument("--initial", type=int, default=20)
    parser.add_argument("--ensemble", type=int, default=4)
    parser.add_argument("--train-minutes", type=float, default=1.5, help="wall-clock budget of every training run")
    parser.add_argument("--explore-ps", type=float, default=2.0, help="length of each exploration replica")
    parser.add_argument("--explore-replicas", type=int, default=4)
    parser.add_argument("--temperature", type=float, default=None,
                        help="K, of exploration and stability (default: molecules 500, water 300)")
    parser.add_argument("--lo", type=float, default=0.05)
    parser.add_argument("--hi", type=float, default=0.35)
    parser.add_argument("--calibrate", type=int, default=0,
                        help="deviation.calibrate of the loops: random explored frames labelled per iteration to scale "
                             "the deviation to the driving model's error (0: DeePMD's raw trust levels)")
    parser.add_argument("--per-iteration", type=int, default=30)
    parser.add_argument("--candidate-fraction", type=float, default=0.02)
    parser.add_argument("--max-labels", type=int, default=300)
    parser.add_argument("--max-iterations", type=int, default=10)
    parser.add_argument("--replicas", type=int, default=16, help="stability replicas per method")
    parser.add_argument("--time-ps", type=float, default=None,
                        help="stability time per replica (default: molecules 20, water 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--md-file", choices=list(MD_FILES), default="trained",
                        help="the stability MD's model file: the trained one, or its checkpoint in float32 "
                             "(TorchScript or compiled .nnp.pt2)")
    parser.add_argument("--at-iteration", type=int, default=None,
                        help="measure the loop's state after its K-th training (a loop still running too, once it has "
                             "written row K), and random baselines with as many labels, instead of its end "
                             "(labels to stability)")
    parser.add_argument("--merge", type=Path, nargs="+", default=None,
                        help="only merge these results files (invocations run apart) into --results")
    args = parser.parse_args()
    if args.merge:
        merge(args.merge, args.results)
        return 0
    from nnp.data.readers import read_structures
    from nnp.learn.calibration import deviation_calibration
    from nnp.md.report import stable_times

    rows = []
    for target in args.targets:
        files = prepare(target, args)
        runs: dict[str, dict] = {}
        for method in BASELINE:
            baselines = [b for b in METHODS if LOOP.get(b) == method and b in args.methods]
            if method in args.methods or baselines:  # a baseline takes as many labels as its loop
                tick = time.time()
                runs[method] = learn(target, method, files, args)
                print(f"{target} {method}: {runs[method]['labels']} labels, {runs[method]['iterations']} iterations, "
                      f"{runs[method]['stopped_by']} ({time.time() - tick:.0f} s)", flush=True)
            for baseline in baselines:
                minutes = {"_long": runs[method]["train_minutes_budget"], "_cpu": runs[method]["member0_cpu_minutes"]
                           }.get(budget_of(baseline), args.train_minutes)
                runs[baseline] = random_baseline(target, baseline, runs[method]["labels"], minutes, files, args)
        for method in (m for m in METHODS if m in args.methods):
            run = runs[method]
            tick = time.time()
            result = stability(target, method, run["model"], files, args)
            durations, collapsed = stable_times(result)
            row = {"target": target, "system": files["system"], "method": method, "iteration": args.at_iteration,
                   "seed": args.seed,
                   "labels": run["labels"],
                   **test_errors(run["model"], files),
                   "replicas": len(durations), "replicas_stable": int(len(durations) - sum(collapsed)),
                   "temperature_K": temperature(files, args), "time_ps": time_ps(files, args),
                   "pool_temperature_K": files["pool_temperature_K"],
                   "km_median_ps": result["kaplan_meier"]["median_ps"],
                   "h_r_mae": result.get("h_r_mae"),
                   "km_median_ci_ps": result["kaplan_meier"]["median_ci_ps"],
                   "kaplan_meier": result["kaplan_meier"], "stable_ps": durations, "collapsed": collapsed,
                   "model": run["model"], "cpu_minutes": run["cpu_minutes"],
                   "train_minutes_budget": run["train_minutes_budget"], "budget": run.get("budget"),
                   "member0_cpu_minutes": run.get("member0_cpu_minutes"),
                   "md_wall_s": result.get("md_wall_s"), "md_model": result["model"], "stopped_by": run.get("stopped_by"),
                   # the final ensemble's deviation against member 0's real error on the test trajectory
                   "calibration": (deviation_calibration(run["members"], read_structures(str(files["test"])), args.lo)
                                   if "members" in run else None)}
            rows.append(row)
            print(f"{target} {method}: {row['labels']} labels, F MAE {row['test_force_mae_meV_A']:.1f} meV/Å, "
                  f"{row['replicas_stable']}/{row['replicas']} stable for {row['time_ps']:g} ps "
                  f"({time.time() - tick:.0f} s)", flush=True)
    logrank_vs_random(rows)
    doc = {"command": shlex.join([".venv/bin/python", *sys.argv]), "start": args.start,
           "protocol": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           "targets": rows, "cpu": os.uname().machine}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    doc["plots"] = plot(args.results, rows)
    args.results.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

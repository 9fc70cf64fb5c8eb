"""The active-learning loop of ``nnp learn``: train an ensemble, explore, select, label, repeat.

Layout of ``output_dir``::

    data-000.extxyz          the initial frames; data-<k+1> = data-<k> + the labels of iteration k
    iter-000/train/member<i>/   each member's run (model.nnp.pt, best.ckpt), warm-started from iter-<k-1>
    iter-000/explore/<system>-T<temperature>-r<replica>/   frames.extxyz, model_devi.out, result.json
    iter-000/calibration.json, calibration-labelled.extxyz   (deviation.calibrate > 0) random explored frames,
                             labelled, and the deviation's scale measured on them
    iter-000/selection.json, candidates.extxyz
    iter-000/labelled.extxyz (+ .state.json)
    iter-000/contacts.extxyz (contacts.sources > 0) contact frames made from the labelled candidates, labelled
                             (contacts.labelled.extxyz: them and their sources, before the wall-height cut)
    final/member<i>/         (final_train) the production ensemble: every label, trained longer
    learn.json, learn.png    one summary row per iteration and the plot of those rows

Every stage writes its outputs atomically and last, so a loop killed at any point (SIGKILL included)
resumes where it stopped when run again: finished member trainings, replicas and labels are kept
(training itself resumes from its last checkpoint), and no label is lost or made twice.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import ase.io
import numpy as np

from ..config import ConfigError, config_changes, describe_changes
from ..data.atomic import write_frames, write_text
from ..data.contacts import CONFIG_TYPE, has_two_molecules
from ..data.dataset import config_type
from ..data.readers import LabelKeys, read_structures
from ..lammps.data_file import read_lammps_data
from .calibration import deviation_scale
from .changes import LOOP_SECTIONS, check_changes
from .config import LearnConfig
from .contacts import label_contacts
from .exploration import read_frames, run_replica
from .labelling import label_frames, make_labeller
from .selection import ACCURATE, CANDIDATE, FAILED, classify_frames, select_candidates


def _atomic_json(path: Path, value: Any) -> None:
    write_text(path, json.dumps(value, indent=2))


def _data_path(config: LearnConfig, iteration: int) -> Path:
    return config.run_dir / f"data-{iteration:03d}.extxyz"


def _iteration_dir(config: LearnConfig, iteration: int) -> Path:
    return config.run_dir / f"iter-{iteration:03d}"


def _start_data(config: LearnConfig) -> Path:
    """data-000: the initial frames, validated, copied once."""
    path = _data_path(config, 0)
    if not path.exists():
        keys = LabelKeys(**config.initial_data_keys)
        write_frames(path, read_structures(config.initial_data, keys=keys))  # labels required; a clear error otherwise
    return path


def train_ensemble(config: LearnConfig, iteration: int, data: Path, progress: bool) -> tuple[list[str], float]:
    """Each member finetuned (or trained) on ``data``, warm-started from its own weights of the previous iteration;
    returns the model files and the CPU seconds."""
    run_dirs = [_iteration_dir(config, iteration) / "train" / f"member{i}" for i in range(config.ensemble)]
    warm = ([_iteration_dir(config, iteration - 1) / "train" / f"member{i}" / "best.ckpt"
             for i in range(config.ensemble)] if iteration > 0 else None)
    return _train_members(config, run_dirs, data, warm, config.train, f"learn-iter{iteration}", progress)


def train_final(config: LearnConfig, models: list[str], data: Path, progress: bool) -> tuple[list[str], float]:
    """``final_train``: the production ensemble in ``final/``, each member warm-started from ``models`` (the loop's
    last ensemble) on ``data`` (every label) with ``train`` + ``final_train``; the model files and CPU seconds."""
    run_dirs = [config.run_dir / "final" / f"member{i}" for i in range(config.ensemble)]
    warm = [Path(model).parent / "best.ckpt" for model in models]
    return _train_members(config, run_dirs, data, warm, [*config.train, *config.final_train], "learn-final",
                          progress)


def _train_members(config: LearnConfig, run_dirs: list[Path], data: Path, warm: list[Path] | None,
                   overrides: list[str], name: str, progress: bool) -> tuple[list[str], float]:
    """Member ``i`` (seed ``seed + i``) in ``run_dirs[i]``: finetuned from ``warm[i]``, or without ``warm`` from
    the loop's start (a bundled model or checkpoint finetuned, a training config from scratch). A member whose run
    finished is kept (resume)."""
    from ..config import load_config
    from ..pretrained import checkpoint_for
    from ..train.finetune import finetune_config
    from ..train.trainer import run_training

    files, cpu = [], 0.0
    weighted = contact_weight(config, data)
    for member, run_dir in enumerate(run_dirs):
        files.append(str(run_dir / "model.nnp.pt"))
        if (run_dir / "results.json").exists() and (run_dir / "model.nnp.pt").exists():
            continue
        started = time.process_time()
        member_overrides = [*weighted, *overrides, f"train.seed={config.seed + member}", f"output_dir={run_dir}"]
        member_name = f"{name}-member{member}"
        if warm is not None:
            run = finetune_config(warm[member], str(data), member_overrides, name=member_name)
        elif config.from_scratch:
            run = load_config(config.start, [f"data.path={data}", f"name={member_name}", *member_overrides])
        else:
            run = finetune_config(checkpoint_for(config.start), str(data), member_overrides, name=member_name)
        run_training(run, progress=progress)
        cpu += time.process_time() - started
    return files, cpu


def contact_weight(config: LearnConfig, data: Path) -> list[str]:
    """The override giving contact frames ``contacts.weight`` (none at weight 1, or while ``data`` has none)."""
    weight = config.contacts.weight
    if weight == 1.0 or not any(config_type(atoms) == CONFIG_TYPE for atoms in read_structures(str(data))):
        return []
    return [f"train.config_type_weights={{{CONFIG_TYPE}: {weight!r}}}"]


def explore(config: LearnConfig, iteration: int, members: list[str], species: list[str]) -> tuple[list[dict], float]:
    """Every replica of every system, temperature (and pressure); returns their results and the CPU seconds."""
    results, cpu = [], 0.0
    e = config.explore
    for s, system in enumerate(config.explore.systems):
        start = (read_lammps_data(system.structure, system.type_symbols) if system.type_symbols is not None else
                 read_structures(system.structure, index=system.index, require_labels=False)[0])
        for temperature, (p, pressure), replica in itertools.product(
                system.temperatures, enumerate(system.pressures or [None]), range(system.replicas)):
            name = f"system{s}-T{temperature:g}" + ("" if pressure is None else f"-P{pressure:g}") + f"-r{replica}"
            seed = 1 + config.seed * 100003 + iteration * 1009 + s * 101 + replica * 7 + int(temperature) + 13 * p
            result = run_replica(members, species, start, float(temperature), system.steps, seed,
                                 timestep_fs=e.timestep_fs, out_freq=e.out_freq, thermostat_fs=e.thermostat_fs,
                                 hi=config.deviation.hi, vacuum=e.vacuum,
                                 pressure_bar=None if pressure is None else float(pressure), barostat_fs=e.barostat_fs,
                                 barostat=e.barostat,
                                 output_dir=_iteration_dir(config, iteration) / "explore" / name)
            cpu += result.cpu_seconds
            results.append({"replica": name, **result.__dict__})
    return results, cpu


def _explored_frames(config: LearnConfig, iteration: int, replicas: list[dict]) -> list:
    """Every frame the iteration's replicas recorded, each with ``info['max_devi_f']``, in replica order."""
    return [f for r in replicas for f in read_frames(_iteration_dir(config, iteration) / "explore" / r["replica"])]


def calibrate(config: LearnConfig, iteration: int, replicas: list[dict], driver: str, labels_so_far: int,
              make_calculator, progress: bool, with_stress: bool) -> dict:
    """``deviation.calibrate`` explored frames below ``hi``, drawn at random, labelled; the scale that turns the
    deviation into member 0's real error, measured on them. calibration.json; {} when calibration is off."""
    count = min(config.deviation.calibrate, max(config.stop.max_labels - labels_so_far, 0))
    if count == 0:
        return {}
    it_dir = _iteration_dir(config, iteration)
    path = it_dir / "calibration.json"
    if path.exists():
        return json.loads(path.read_text())
    frames = _explored_frames(config, iteration, replicas)
    physical = [f for f, kind in zip(frames, classify_frames(frames, 0.0, config.deviation.hi)) if kind != FAILED]
    rng = np.random.default_rng(1 + config.seed * 7919 + iteration)  # the same draw when resumed
    picked = sorted(rng.choice(len(physical), size=min(count, len(physical)), replace=False).tolist())
    output = it_dir / "calibration-labelled.extxyz"
    state = label_frames([physical[k] for k in picked], output, make_calculator, progress, with_stress)
    labelled = _read_xyz(output)
    result = {"labelled": state["labelled"], "failed": state["failed"], "cpu_seconds": state["cpu_seconds"],
              "scale": 1.0, **(deviation_scale(driver, labelled) if labelled else {})}
    _atomic_json(path, result)
    return result


def select(config: LearnConfig, iteration: int, replicas: list[dict], labels_so_far: int,
           cutoff: float, scale: float = 1.0) -> dict:
    """Classify every explored frame, pick the candidates to label; selection.json + candidates.extxyz.

    ``scale`` (1 unless calibrated) turns the deviation into member 0's error for the lower trust level
    only: accurate means ``scale * max_devi_f < lo``. ``hi`` stays on the raw deviation: it fences off
    structures so far from the data that the members fall apart (unphysical), which calibration does not
    change."""
    it_dir = _iteration_dir(config, iteration)
    path = it_dir / "selection.json"
    if path.exists():
        return json.loads(path.read_text())
    started = time.process_time()
    frames = _explored_frames(config, iteration, replicas)
    devi = np.array([f.info["max_devi_f"] for f in frames], dtype=float)
    lo = min(config.deviation.lo / scale, config.deviation.hi) if scale > 0 else config.deviation.hi
    kinds = classify_frames(frames, lo, config.deviation.hi)
    counts = {k: int((kinds == k).sum()) for k in (ACCURATE, CANDIDATE, FAILED)}
    pool = np.flatnonzero(kinds == CANDIDATE)
    budget = min(config.select.per_iteration, max(config.stop.max_labels - labels_so_far, 0))
    picked = select_candidates([frames[k] for k in pool], devi[pool], budget, cutoff,
                               config.select.fingerprint_bins)
    chosen = [frames[pool[k]] for k in picked]
    write_frames(it_dir / "candidates.extxyz", chosen)
    total = max(len(frames), 1)
    selection = {"frames": len(frames), **counts, "selected": len(chosen), "scale": scale, "lo_raw": lo,
                 "fractions": {k: v / total for k, v in counts.items()},
                 "cpu_seconds": time.process_time() - started}
    _atomic_json(path, selection)
    return selection


def make_contacts(config: LearnConfig, iteration: int, labels_so_far: int, make_calculator, progress: bool,
                  with_stress: bool) -> dict:
    """Contact frames of the iteration's labelled candidates (``contacts``), labelled into contacts.extxyz, as many
    sources as the label budget has room for; {} when off, out of budget or without a candidate of two molecules."""
    spec, it_dir = config.contacts, _iteration_dir(config, iteration)
    candidates = _read_xyz(it_dir / "labelled.extxyz")  # contact_source: the index of a frame in this file
    usable = sum(map(has_two_molecules, candidates))  # frames of one molecule have no contact to make
    sources = min(spec.sources, max(config.stop.max_labels - labels_so_far, 0) // spec.per_source, usable)
    if sources == 0:
        return {}
    return label_contacts(candidates, it_dir / "contacts.extxyz", make_calculator, sources, spec.per_source,
                          spec.max_energy, seed=2 + config.seed * 7919 + iteration, with_stress=with_stress,
                          progress=progress)


def _merge(config: LearnConfig, iteration: int) -> Path:
    """data-<k+1> = data-<k> + iteration k's labels: calibration, candidates, contact frames (written once,
    atomically)."""
    target = _data_path(config, iteration + 1)
    if not target.exists():
        tmp = target.with_name(target.name + ".tmp")
        shutil.copyfile(_data_path(config, iteration), tmp)
        with open(tmp, "a") as handle:
            for name in ("calibration-labelled.extxyz", "labelled.extxyz", "contacts.extxyz"):
                path = _iteration_dir(config, iteration) / name
                if path.exists():
                    with open(path) as labels:
                        shutil.copyfileobj(labels, handle)
        os.replace(tmp, target)
    return target


def _reopen(config: LearnConfig, summary: dict, before: dict, log) -> None:
    """A stopped loop run again with other exploration, trust levels, selection or stopping rule: the stop is
    looked at again. An iteration that labelled frames had them merged and an ensemble trained on them
    (``iter-<k+1>/train``): the loop goes on from there unless a budget still stops it. An iteration that labelled
    nothing (no candidates, converged) runs again with its ensemble kept, from its exploration when ``explore``
    or ``deviation.hi`` changed (the replicas stopped at the old hi), else from its selection. A ``final/``
    ensemble of the old stop is kept as ``final-stopped-at-iter-<k>/``."""
    rows, now = summary["iterations"], config.to_dict()
    row = rows[-1]
    ran_with = row.get("settings") or {k: before.get(k) for k in LOOP_SECTIONS}
    if all(ran_with[k] == now[k] for k in LOOP_SECTIONS):
        return
    k = row["iteration"]
    if row["new_labels"]:
        if row["labels"] >= config.stop.max_labels or k + 1 >= config.stop.max_iterations:
            return
        row["stop_lifted"], row["stop"] = row["stop"], None
        log(f"iteration {k}'s stop ({row['stop_lifted']}) does not hold under the new config: going on from "
            f"iteration {k + 1}")
    else:
        it_dir = _iteration_dir(config, k)
        again_from = "selection"
        if ran_with["explore"] != now["explore"] or ran_with["deviation"]["hi"] != now["deviation"]["hi"]:
            shutil.rmtree(it_dir / "explore", ignore_errors=True)
            again_from = "exploration"
        for name in ("calibration.json", "calibration-labelled.extxyz", "selection.json", "candidates.extxyz",
                     "labelled.extxyz", "labelled.extxyz.state.json", "contacts.extxyz", "contacts.labelled.extxyz",
                     "contacts.labelled.extxyz.state.json"):
            (it_dir / name).unlink(missing_ok=True)
        _data_path(config, k + 1).unlink(missing_ok=True)  # = data-<k>: nothing was labelled
        rows.pop()
        log(f"iteration {k} stopped the loop ({row['stop']}) and labelled nothing: running it again from its "
            f"{again_from} under the new config, with its ensemble")
    final = config.run_dir / "final"
    if final.exists():
        final.rename(config.run_dir / f"final-stopped-at-iter-{k:03d}")
        summary.pop("final_train", None)
    summary.pop("final_models", None)
    summary.pop("stopped_by", None)


def _stable_summary(replicas: list[dict]) -> dict:
    from ..md.survival import summarize

    km = summarize([r["time_ps"] for r in replicas], [r["failed"] for r in replicas])
    ratios = [r["volume_ratio"] for r in replicas if r.get("volume_ratio") is not None]
    return {"replicas": len(replicas), "replicas_stable": sum(not r["failed"] for r in replicas),
            "mean_stable_ps": float(np.mean([r["time_ps"] for r in replicas])), "km_median_ps": km["median_ps"],
            # NPT replicas: how far the barostat took the box (last volume / start volume, lowest and highest)
            "volume_ratio": [min(ratios), max(ratios)] if ratios else None}


def format_row(row: dict) -> str:
    f, volume = row["fractions"], row.get("volume_ratio")
    return (f"iteration {row['iteration']}: {row['labels']} labels (+{row['new_labels']}, {row['label_failures']} "
            f"failed) | accurate {f['accurate']:.1%} candidate {f['candidate']:.1%} failed {f['failed']:.1%} | "
            f"{row['replicas_stable']}/{row['replicas']} replicas stable, mean {row['mean_stable_ps']:.3g} ps | "
            + (f"volume x {volume[0]:.3g}-{volume[1]:.3g} | " if volume else "")
            + (f"deviation x {row['calibration']['scale']:.3g} | " if row.get("calibration") else "")
            + (f"contacts {row['contacts']['kept']}/{row['contacts']['contacts']} kept | " if row.get("contacts") else "") +
            f"CPU s: train {row['cpu_seconds']['train']:.0f}, MD {row['cpu_seconds']['explore']:.0f}, "
            f"label {row['cpu_seconds']['label']:.0f}")


def plot_learning(rows: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["iteration"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    for kind in (ACCURATE, CANDIDATE, FAILED):
        a.plot(x, [r["fractions"][kind] for r in rows], marker="o", label=kind)
    a.set(xlabel="iteration", ylabel="fraction of explored frames", ylim=(0, 1))
    a.legend()
    b.plot(x, [r["labels"] for r in rows], marker="o", color="k", label="labels")
    b.set(xlabel="iteration", ylabel="labelled frames")
    c = b.twinx()
    c.plot(x, [r["mean_stable_ps"] for r in rows], marker="s", color="tab:green")
    c.set_ylabel("mean stable time (ps)", color="tab:green")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _read_xyz(path: Path) -> list:
    return ase.io.read(path, index=":", format="extxyz") if path.exists() and path.stat().st_size else []


def run_learning(config: LearnConfig, progress: bool = True, log=print) -> dict:
    """Run (or resume) the loop until the stopping rule; returns the learn.json content.

    An iteration trains the ensemble on everything labelled so far, explores with it and measures the
    fractions; if candidates + failed frames are below ``stop.candidate_fraction`` the loop has
    converged and that ensemble is the result. Otherwise the selected candidates are labelled and
    added; when a budget (labels, iterations) is then reached, a last ensemble is trained on all labels.
    """
    from ..evaluator import load_evaluator

    config.run_dir.mkdir(parents=True, exist_ok=True)
    recorded = config.run_dir / "learn-config.json"
    now = config.to_dict()
    summary_path = config.run_dir / "learn.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {"iterations": []}
    rows = summary["iterations"]
    if recorded.exists():  # a rerun: what changed, and whether a stop still holds
        before = json.loads(recorded.read_text())
        changes = {k: v for k, v in config_changes(before, now).items() if k != "output_dir"}  # the folder may move
        check_changes(changes, str(config.run_dir))
        if changes:
            log(f"config changed since the last run ({describe_changes(changes)}): the stages still to run use the "
                "new values")
        if rows and rows[-1]["stop"]:
            _reopen(config, summary, before, log)
            _atomic_json(summary_path, summary)  # after _reopen's files went: a kill now resumes from here
    _atomic_json(recorded, now)
    make_calculator = make_labeller(config.labeller.calculator, config.labeller.kwargs)
    initial = _read_xyz(_start_data(config))
    labels = len(initial)
    # labels carry a stress only when the initial frames do (a data set mixes none with some)
    with_stress = all(a.calc is not None and "stress" in a.calc.results for a in initial)
    if config.contacts.sources and not any(map(has_two_molecules, initial)):
        raise ConfigError(f"contacts.sources = {config.contacts.sources}, but no frame of {config.initial_data} has two "
                          "molecules: a contact frame pushes one molecule into another (a liquid, a cluster); set "
                          "contacts.sources to 0 for a single molecule")
    iteration = len(rows)
    if rows:
        labels = rows[-1]["labels"]
    while not (rows and rows[-1]["stop"]):
        data = _data_path(config, iteration)
        members, cpu_train = train_ensemble(config, iteration, data, progress)
        driver = load_evaluator(members[0])
        replicas, cpu_md = explore(config, iteration, members, driver.species)
        calibration = calibrate(config, iteration, replicas, members[0], labels, make_calculator, progress,
                                with_stress)
        labels += calibration.get("labelled", 0)
        selection = select(config, iteration, replicas, labels, driver.cutoff, calibration.get("scale", 1.0))
        f = selection["fractions"]
        row = {"iteration": iteration, "fractions": f, **{k: selection[k] for k in ("frames", ACCURATE, CANDIDATE, FAILED)},
               **_stable_summary(replicas), "models": members, "stop": None, "calibration": calibration or None,
               "settings": {k: now[k] for k in LOOP_SECTIONS}}
        state, contacts = {"labelled": 0, "failed": 0, "cpu_seconds": 0.0}, {}
        if f[CANDIDATE] + f[FAILED] < config.stop.candidate_fraction:
            row["stop"] = (f"converged: candidates + failed {f[CANDIDATE] + f[FAILED]:.1%} of the explored frames "
                           f"< {config.stop.candidate_fraction:.1%}")
            if calibration.get("labelled"):
                _merge(config, iteration)
        else:
            it_dir = _iteration_dir(config, iteration)
            state = label_frames(_read_xyz(it_dir / "candidates.extxyz"), it_dir / "labelled.extxyz",
                                 make_calculator, progress, with_stress)
            contacts = make_contacts(config, iteration, labels + state["labelled"], make_calculator, progress,
                                     with_stress)
            _merge(config, iteration)
            labels += state["labelled"] + contacts.get("kept", 0)
            if labels >= config.stop.max_labels:
                row["stop"] = f"label budget reached ({labels} >= {config.stop.max_labels})"
            elif iteration + 1 >= config.stop.max_iterations:
                row["stop"] = f"iteration budget reached ({iteration + 1})"
            elif selection[CANDIDATE] == 0 and all(r["failed"] and r["steps"] == 0 for r in replicas):
                row["stop"] = (f"no candidates: the deviation at every replica's start structure (step 0, the "
                               f"structure you gave) is already at or above hi = {config.deviation.hi:g} eV/Å, so hi "
                               "cannot tell unphysical frames apart for this ensemble: start from more labelled "
                               "frames (or a pretrained model), or raise deviation.hi and run nnp learn again (the "
                               "loop then goes on from this iteration's exploration)")
            elif selection[CANDIDATE] == 0:  # the replicas jumped past the window: nothing to label
                row["stop"] = (f"no candidates: no explored frame lies between lo and hi ({selection[ACCURATE]} "
                               f"accurate, {selection[FAILED]} at or above hi = {config.deviation.hi:g} eV/Å); the "
                               "ensemble is too far from the data to explore with: start from more labelled frames, "
                               "or raise deviation.hi or sample more often (explore.out_freq) and run nnp learn "
                               "again (the loop then goes on from this iteration's exploration)")
            elif state["labelled"] == 0:
                row["stop"] = "no candidate could be labelled"
        new_labels = state["labelled"] + calibration.get("labelled", 0) + contacts.get("kept", 0)
        if row["stop"] and new_labels:  # the last labels must reach a model: one more ensemble
            row["models"], extra = train_ensemble(config, iteration + 1, _data_path(config, iteration + 1), progress)
            cpu_train += extra
        row.update({"labels": labels, "new_labels": new_labels, "contacts": contacts or None,
                    "label_failures": state["failed"] + calibration.get("failed", 0) + contacts.get("label_failures", 0),
                    "cpu_seconds": {"train": cpu_train, "explore": cpu_md, "select": selection["cpu_seconds"],
                                    "label": state["cpu_seconds"] + calibration.get("cpu_seconds", 0.0)
                                    + contacts.get("label_cpu_seconds", 0.0)}})
        rows.append(row)
        _atomic_json(summary_path, summary)
        plot_learning(rows, config.run_dir / "learn.png")
        log(format_row(row))
        iteration += 1
    summary["final_models"] = rows[-1]["models"]
    summary["stopped_by"] = rows[-1]["stop"]
    if config.final_train:  # also when a stopped loop is run again with final_train added
        before = summary.get("final_train", {})
        if before.get("overrides", config.final_train) != config.final_train and (config.run_dir / "final").exists():
            raise ConfigError(f"{config.run_dir / 'final'} was trained with final_train {before['overrides']}, the "
                              f"config now says {config.final_train}: remove that folder to train the final ensemble "
                              "again")
        # every label: the data the last ensemble was trained on (data-<k+1> when iteration k's labels were merged)
        data = _data_path(config, len(rows))
        if not data.exists():
            data = _data_path(config, len(rows) - 1)
        summary["final_models"], cpu = train_final(config, rows[-1]["models"], data, progress)
        summary["final_train"] = {"overrides": config.final_train, "data": str(data),
                                  "cpu_seconds": before.get("cpu_seconds", 0.0) + cpu}
        log(f"final ensemble ({' '.join(config.final_train)}) on {data.name}: {' '.join(summary['final_models'])} "
            f"| CPU s: train {summary['final_train']['cpu_seconds']:.0f}")
    _atomic_json(summary_path, summary)
    return summary

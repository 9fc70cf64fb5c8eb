"""Turn a finished organic-xtb training run into the bundled model files and their card.

    python training/organic/bundle.py --run runs/organic-xtb-painn --data-card data/diverse-xtb-v2/diverse-xtb-v2.card.json

writes into python/nnp/pretrained/: NAME.nnp.pt (TorchScript float64), NAME-f32.nnp.pt (float32),
NAME.ckpt (weights + config: the start of `nnp finetune --from NAME`), NAME.replay.extxyz (training frames
for `nnp finetune --replay`), NAME.card.json and NAME.card.md.
The card's numbers are measured here: validation errors (per element, per molecule size, molecules vs
clusters) on the run's own validation split, zero-shot errors on held-out molecules (their test
trajectories), LAMMPS MD speed. Its summary also goes to results/organic_xtb.json (``--results``).
A run warm-started from a bundled model (more epochs: ``--set finetune.from_checkpoint=...``) is
bundled the same way; its card lists every training stage.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
from collections import defaultdict
from pathlib import Path

import ase.io
import numpy as np

from nnp.config import config_from_dict
from nnp.data.dataset import load_structures, split_indices
from nnp.data.molecules import find_molecules
from nnp.export import export_model
from nnp.pretrained import BUNDLED_DIR
from nnp.train.checkpoint import load_checkpoint, model_from_checkpoint, save_atomic
from nnp.train.data import open_frames
from nnp.train.evaluate import evaluate_model_file

LIMITS = [
    "GFN2-xTB level of theory (tblite), not DFT: it inherits xTB's errors, e.g. in barriers and dispersion.",
    "Neutral, closed-shell molecules of H C N O F S Cl; no charges, radicals, spin states or metals.",
    "Gas phase molecules with up to 12 heavy atoms and non-bonded clusters of two or three molecules; "
    "never trained on condensed phases or periodic boxes (finetune for liquids).",
    "Cutoff 5 Å: no long-range electrostatics or dispersion beyond it.",
    "Trained on a CPU budget (see training); a starting point for finetuning more than a final potential.",
]


def heavy_atoms(atoms) -> int:
    return int(sum(atoms.numbers > 1))


def grouped_errors(model_file: Path, frames: list, key) -> dict[str, dict]:
    """Errors of the model on ``frames`` grouped by ``key(atoms)``."""
    groups = defaultdict(list)
    for atoms in frames:
        groups[key(atoms)].append(atoms)
    out = {}
    for name in sorted(groups, key=lambda g: (len(str(g)), str(g))):
        m = evaluate_model_file(model_file, groups[name])
        out[str(name)] = {"frames": len(groups[name]), "force_mae_meV_A": 1000 * m["forces_mae"],
                          "energy_mae_meV_atom": 1000 * m["energy_per_atom_mae"]}
    return out


def training_stages(checkpoint: dict, run: Path, args) -> tuple[list[dict], list[dict]]:
    """The training stages that made the run's weights, and their epoch history.

    A run warm-started from a model (``finetune.from_checkpoint``, e.g. more epochs of the bundled model)
    carries on that model's training: its stages (read from its card beside its checkpoint, which must be
    read before this bundle overwrites them) come first, then this run.
    """
    from nnp.pretrained import checkpoint_for

    def seconds(history: list[dict]) -> float:
        return float(sum(h.get("train_seconds", 0.0) for h in history))

    history = checkpoint.get("history") or []
    train = checkpoint["config"]["train"]
    stage = {"run": str(run), "epochs": checkpoint["epoch"], "train_seconds": seconds(history),
             "threads": args.train_threads, "lr": train["lr"], "scheduler": train.get("scheduler"), "recipe": args.recipe}
    parent = (checkpoint["config"].get("finetune") or {}).get("from_checkpoint")
    if not parent:
        return [stage], history
    parent_path = checkpoint_for(parent)
    previous = load_checkpoint(parent_path)
    card_path = parent_path.with_name(parent_path.name.removesuffix(".ckpt") + ".card.json")
    card = json.loads(card_path.read_text())["training"] if card_path.is_file() else {}
    parent_history = previous.get("history") or []
    stage["warm_start"] = str(parent_path)  # a bundled path is overwritten by this bundle: its digest says which weights
    stage["warm_start_sha256_8"] = hashlib.sha256(parent_path.read_bytes()).hexdigest()[:8]
    stages = card.get("stages") or [{"run": None, "epochs": previous["epoch"], "threads": card.get("threads"),
                                     "train_seconds": seconds(parent_history),
                                     "recipe": card.get("recipe")}]
    return [*stages, stage], [*parent_history, *history]


def md_speed(model_file: Path, structure) -> float:
    from nnp.md.run import quick_md

    atoms = structure.copy()
    atoms.center(vacuum=15.0)
    return quick_md(model_file, atoms, steps=200, temperature=300.0)["steps_per_second"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="training run directory (best.ckpt)")
    parser.add_argument("--name", default="organic-xtb")
    parser.add_argument("--data-card", required=True, help="card of the pretraining set (merged shard card)")
    parser.add_argument("--heldout", default="data/heldout", help="directory of <molecule>_test.extxyz files")
    parser.add_argument("--output", default=str(BUNDLED_DIR))
    parser.add_argument("--val-frames", type=int, default=2000, help="validation frames evaluated (evenly spaced)")
    parser.add_argument("--replay-frames", type=int, default=1000, help="frames of the bundled replay slice")
    parser.add_argument("--train-threads", type=int, default=2, help="CPU threads the training ran on (for the card)")
    parser.add_argument("--results", default="results/organic_xtb.json", help="where the card's summary also goes")
    parser.add_argument("--recipe", default="training/organic/painn.yaml", help="the run's command or config (card)")
    parser.add_argument("--comparison", default=None, help="JSON of the architecture comparison (results/)")
    parser.add_argument("--no-pt2", action="store_true", help="skip the .nnp.pt2 (AOTInductor, CPU) variant")
    args = parser.parse_args(argv)

    run, out = Path(args.run), Path(args.output)
    checkpoint = load_checkpoint(run / "best.ckpt")
    config = config_from_dict(checkpoint["config"], "checkpoint")
    model = model_from_checkpoint(checkpoint)
    stages, history = training_stages(checkpoint, run, args)  # before the bundle below replaces a parent's files
    epochs = sum(s["epochs"] for s in stages)
    provenance = {"name": args.name, "run": str(run), "config": checkpoint["config"], "epochs": epochs}
    files = {"float64": f"{args.name}.nnp.pt", "float32": f"{args.name}-f32.nnp.pt", "checkpoint": f"{args.name}.ckpt",
             "replay": f"{args.name}.replay.extxyz"}
    if not args.no_pt2:
        files["pt2"] = f"{args.name}-f32.nnp.pt2"
    export_model(model, out / files["float64"], dtype="float64", provenance=provenance)
    export_model(model, out / files["float32"], dtype="float32", provenance=provenance)
    if not args.no_pt2:  # AOTInductor for any x86-64-v3 (AVX2) CPU: about 1.5 min of compiling, 2.8 MB
        export_model(model, out / files["pt2"], dtype="float32", provenance=provenance, format="pt2", portable=True)
    weights = checkpoint["ema"] if checkpoint.get("ema") is not None else checkpoint["model"]
    bundled_config = {**checkpoint["config"], "finetune": {**checkpoint["config"].get("finetune", {}),
                                                           "from_checkpoint": None}}  # the card lists the stages
    save_atomic({"model": weights, "ema": None, "optimizer": {}, "epoch": epochs,
                 "config": bundled_config, "model_init": checkpoint["model_init"], "history": history},
                out / files["checkpoint"])
    model_file = out / files["float64"]

    # validation split of the run, exactly as training drew it
    frames = open_frames(config.data.path)
    n = len(frames) if not config.data.max_frames else min(config.data.max_frames, len(frames))
    val = split_indices(n, config.data.val_fraction, config.data.test_fraction, config.data.split_seed)["val"]
    val = val[np.linspace(0, len(val) - 1, min(args.val_frames, len(val))).astype(int)]
    val_frames = [frames.atoms(int(k)) for k in val]
    # the replay slice (nnp finetune --replay): training frames, evenly spaced, so finetuning can keep them in view
    train = split_indices(n, config.data.val_fraction, config.data.test_fraction, config.data.split_seed)["train"]
    train = train[np.linspace(0, len(train) - 1, min(args.replay_frames, len(train))).astype(int)]
    ase.io.write(out / files["replay"], [frames.atoms(int(k)) for k in train], format="extxyz")
    validation = evaluate_model_file(model_file, val_frames, progress=True)
    by_size = grouped_errors(model_file, [a for a in val_frames if len(find_molecules(a)) == 1], heavy_atoms)
    by_kind = grouped_errors(model_file, val_frames,
                             lambda a: "single molecule" if len(find_molecules(a)) == 1 else "cluster")

    data_card = json.loads(Path(args.data_card).read_text())
    held_out = [x["reason"].split(":")[0] for x in data_card["exclusions"]]
    zero_shot = {}
    for test in sorted(Path(args.heldout).glob("*_test.extxyz")):
        molecule = test.name.removesuffix("_test.extxyz")
        if molecule not in held_out:  # e.g. the water box: not a molecule the set holds out
            continue
        m = evaluate_model_file(model_file, load_structures(str(test)))
        zero_shot[molecule] = {"frames_file": str(test), "force_mae_meV_A": 1000 * m["forces_mae"],
                               "energy_mae_meV_atom": 1000 * m["energy_per_atom_mae"],
                               "energy_mae_offset_removed_meV_atom": 1000 * m["energy_per_atom_mae_centered"],
                               "force_mae_by_element_meV_A": {k: 1000 * v for k, v in m["forces_mae_by_element"].items()}}
    aspirin_tests = sorted(Path(args.heldout).glob("aspirin_test.extxyz"))
    speed = {}
    if aspirin_tests:
        start = load_structures(str(aspirin_tests[0]))[0]
        speed = {variant: md_speed(out / files[variant], start) for variant in ("float64", "float32")}

    card = {
        "name": args.name,
        "description": "PaiNN potential for neutral organic molecules and their clusters, GFN2-xTB level, "
                       "pretrained on energies and forces of diverse-xtb v2",
        "elements": model.species,
        "cutoff_A": float(model.cutoff),
        "architecture": {"kind": config.model.kind, "hidden": config.model.hidden, "layers": config.model.layers,
                         "num_rbf": config.model.num_rbf},
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "files": files,
        "training": {"data": config.data.path, "frames": n, "validation_frames": len(
            split_indices(n, config.data.val_fraction, config.data.test_fraction, config.data.split_seed)["val"]),
            "epochs": epochs, "train_seconds": sum(s["train_seconds"] for s in stages),
            "cpu": platform.processor() or "x86_64", "threads": args.train_threads, "recipe": args.recipe,
            "stages": stages},
        "data_card": {k: data_card.get(k) for k in ("dataset", "frames", "complete", "generation_seconds",
                                                    "level_of_theory", "command")}
        | {"molecules": data_card["composition"]["molecules"],
           "distinct_molecules_in_frames": data_card["frame_statistics"].get("distinct_molecules_in_frames"),
           "frames_per_kind": data_card["frame_statistics"].get("frames_per_kind"),
           "cluster_frame_share": data_card["frame_statistics"].get("cluster_frame_share"),
           "held_out": held_out},
        "validation": {"frames": len(val_frames), "force_mae_meV_A": 1000 * validation["forces_mae"],
                       "force_rmse_meV_A": 1000 * validation["forces_rmse"],
                       "energy_mae_meV_atom": 1000 * validation["energy_per_atom_mae"],
                       "force_mae_by_element_meV_A": {k: 1000 * v for k, v in validation["forces_mae_by_element"].items()},
                       "by_heavy_atoms": by_size, "by_kind": by_kind},
        "zero_shot": zero_shot,
        "md_speed_steps_per_s_aspirin_1_thread": speed,
        "limits": LIMITS,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if argv is None else "bundle.main()",
    }
    if args.comparison:
        card["architecture_comparison"] = json.loads(Path(args.comparison).read_text())
    zs = ", ".join(f"{k} {v['force_mae_meV_A']:.0f}" for k, v in zero_shot.items())
    card["summary_errors"] = (f"val F MAE {card['validation']['force_mae_meV_A']:.0f} meV/Å"
                              + (f"; zero-shot F MAE {zs} meV/Å" if zs else ""))
    (out / f"{args.name}.card.json").write_text(json.dumps(card, indent=2))
    (out / f"{args.name}.card.md").write_text(markdown(card))
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(card, indent=2))
    print(markdown(card))
    return 0


def markdown(card: dict) -> str:
    t, v, d = card["training"], card["validation"], card["data_card"]
    lines = [
        f"# {card['name']}", "", card["description"] + ".", "",
        f"- Elements: {' '.join(card['elements'])}; cutoff {card['cutoff_A']} Å; "
        f"{card['architecture']['kind']} {card['architecture']['hidden']} × {card['architecture']['layers']} layers, "
        f"{card['parameters']:,} parameters.",
        f"- Use: `pair_style nnp` / `pair_coeff * * {card['name']} C H O ...` in LAMMPS (or `{card['name']}-f32`, "
        f"float32, faster); `NNPCalculator(\"{card['name']}\")` in ASE; "
        f"`nnp finetune --from {card['name']} --data FILE` to finetune.",
        f"- Data: {d['dataset']} v2, {t['frames']:,} frames ({d['frames_per_kind']}, cluster share "
        f"{(d['cluster_frame_share'] or 0):.1%}) of {d['distinct_molecules_in_frames']:,} distinct molecules "
        f"{'(complete)' if d['complete'] else '(the part generated so far)'}; {d['level_of_theory']}.",
        f"- Held out (never in a pretraining frame, alone or in a cluster): {', '.join(d['held_out'])}.",
        "- Training: " + "; then ".join(
            f"{s['epochs']} epochs, {s['train_seconds'] / 3600:.2f} h on {s['threads']} CPU thread(s) (`{s['recipe']}`)"
            for s in t.get("stages") or [t]) + f"; data generation {(d['generation_seconds'] or 0) / 3600:.1f} CPU-h.",
        "", "## Validation errors (its own validation split)", "",
        f"Force MAE {v['force_mae_meV_A']:.1f} meV/Å (RMSE {v['force_rmse_meV_A']:.1f}), energy MAE "
        f"{v['energy_mae_meV_atom']:.2f} meV/atom over {v['frames']} frames.", "",
        "| element | " + " | ".join(v["force_mae_by_element_meV_A"]) + " |",
        "|---" * (len(v["force_mae_by_element_meV_A"]) + 1) + "|",
        "| F MAE (meV/Å) | " + " | ".join(f"{x:.0f}" for x in v["force_mae_by_element_meV_A"].values()) + " |", "",
        "| heavy atoms | frames | F MAE (meV/Å) | E MAE (meV/atom) |", "|---|---|---|---|",
        *[f"| {k} | {g['frames']} | {g['force_mae_meV_A']:.1f} | {g['energy_mae_meV_atom']:.2f} |"
          for k, g in v["by_heavy_atoms"].items()],
        *[f"| {k} | {g['frames']} | {g['force_mae_meV_A']:.1f} | {g['energy_mae_meV_atom']:.2f} |"
          for k, g in v["by_kind"].items()],
        "", "## Zero-shot errors on held-out molecules (500 K GFN2-xTB test trajectories)", "",
        "| molecule | F MAE (meV/Å) | E MAE (meV/atom) | E MAE, constant offset removed (meV/atom) |", "|---|---|---|---|",
        *[f"| {k} | {z['force_mae_meV_A']:.1f} | {z['energy_mae_meV_atom']:.2f} | "
          f"{z['energy_mae_offset_removed_meV_atom']:.2f} |" for k, z in card["zero_shot"].items()],
    ]
    if card["md_speed_steps_per_s_aspirin_1_thread"]:
        s = card["md_speed_steps_per_s_aspirin_1_thread"]
        lines += ["", f"MD speed in LAMMPS (aspirin, 21 atoms, one rank): {s['float64']:.0f} steps/s (float64), "
                      f"{s['float32']:.0f} steps/s (float32)."]
    lines += ["", "## Known limits", "", *[f"- {x}" for x in card["limits"]], ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

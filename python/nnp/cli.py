"""The ``nnp`` command: thin argument parsing over the Python API."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a potential from a YAML config (resumes if the run exists)",
                       description="Train a potential. A run directory that already holds last.ckpt is resumed.")
    p.add_argument("--config", required=True, help="YAML run config (see training/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=5 (repeatable)")
    p.add_argument("--export-dtype", default="float64", choices=["float32", "float64"])
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--ensemble", type=int, default=1, metavar="K",
                   help="train K members differing only in seed (train.seed + i) in <run_dir>/member<i>, for "
                        "model deviation in MD (pair_style nnp ensemble)")
    p.set_defaults(func=cmd_train)


def _add_pretrain(sub) -> None:
    p = sub.add_parser("pretrain", help="self-supervised pretraining (masked atoms, denoising) on positions only",
                       description="Pretrain a backbone with a vector head; the config's pretrain section picks the task.")
    p.add_argument("--config", required=True, help="YAML run config with a pretrain section")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_pretrain)


def _add_finetune(sub) -> None:
    p = sub.add_parser("finetune", help="train a potential starting from a pretrained model or backbone",
                       description="Like train, with the weights initialised from a bundled pretrained model "
                                   "(`nnp models list`) or a pretraining/training checkpoint. Without --config: "
                                   "the pretrained model's architecture with finetuning defaults "
                                   "(docs/training.md) on --data.")
    p.add_argument("--config", default=None, help="YAML run config (same model section as the pretraining)")
    p.add_argument("--from", dest="checkpoint", required=True,
                   help="a bundled pretrained model's name (e.g. organic-xtb) or a checkpoint (best.ckpt)")
    p.add_argument("--data", default=None, help="dataset to finetune on (sets data.path)")
    p.add_argument("--output-dir", default=None, help="run directory (default runs/finetune-<data name>)")
    p.add_argument("--replay", type=int, nargs="?", const=500, default=None, metavar="N",
                   help="mix N (default 500) frames of the pretrained model's replay slice of its pretraining data "
                        "into the training split (a bundled model; else --set finetune.replay=FILE)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--export-dtype", default="float64", choices=["float32", "float64"])
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_finetune)


def _add_models(sub) -> None:
    p = sub.add_parser("models", help="pretrained models that ship with nnp (usable by name in pair_coeff)")
    msub = p.add_subparsers(dest="models_command", required=True)
    msub.add_parser("list", help="name, elements, cutoff, size and errors of each model").set_defaults(
        func=cmd_models_list)
    c = msub.add_parser("card", help="a model's card (Markdown) and the paths of its files")
    c.add_argument("name", help="model name, e.g. organic-xtb")
    c.set_defaults(func=cmd_models_card)


def _add_label_keys(p) -> None:
    """--energy-key/--forces-key/--stress-key: labels stored under other names than ASE's (MACE: REF_energy ...)."""
    p.add_argument("--energy-key", default="energy", help="info key of the energy (default: ASE's; MACE: REF_energy)")
    p.add_argument("--forces-key", default="forces", help="per-atom array of the forces (MACE: REF_forces)")
    p.add_argument("--stress-key", default="stress", help="info key of the stress (MACE: REF_stress)")


def _label_keys(args):
    from .data.readers import LabelKeys

    return LabelKeys(args.energy_key, args.forces_key, args.stress_key)


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="energy/force errors of a model file on a dataset")
    p.add_argument("--model", required=True, help="exported model file (.nnp.pt)")
    p.add_argument("--data", required=True,
                   help="dataset file (extxyz, ASE db, MD17/rMD17 .npz, ANI-1x/SPICE .h5) or bundled:NAME")
    p.add_argument("--format", default=None, help="ASE format name when the suffix is ambiguous")
    _add_label_keys(p)
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--json", dest="json_out", default=None, help="also write the metrics to this JSON file")
    p.set_defaults(func=cmd_evaluate)


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="checkpoint -> model file (TorchScript or compiled .pt2) with metadata")
    p.add_argument("--checkpoint", required=True,
                   help="best.ckpt or last.ckpt of a run, or a bundled model's name (e.g. organic-xtb --format pt2)")
    p.add_argument("--output", required=True, help="model file to write (*.nnp.pt, or *.nnp.pt2 for --format pt2)")
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    p.add_argument("--format", choices=["torchscript", "pt2"], default=None,
                   help="torchscript, or pt2 (torch.export + AOTInductor, compiles for a minute or more); "
                        "default: by the suffix of --output")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None,
                   help="pt2 only: the device the package is compiled for and runs on (default cpu; cuda needs a "
                        "GPU here). pair_style nnp runs a package on its own device; TorchScript runs on any")
    p.set_defaults(func=cmd_export)


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="generate datasets and inspect dataset files")
    dsub = p.add_subparsers(dest="data_command", required=True)
    g = dsub.add_parser(
        "generate", help="generate a dataset (resumable: re-run the same command to continue)",
        description="water-tip3p: classical flexible TIP3P water (LAMMPS). aspirin-xtb: GFN2-xTB NVT MD of aspirin "
                    "(500 K, 0.5 fs). molecule-xtb: the same for any molecule (--molecule). g2-xtb: GFN2-xTB MD of ASE's G2 molecules at 300/600/1000 K. water-xtb: TIP3P "
                    "frames relabelled with periodic GFN2-xTB. diverse-xtb: GFN2-xTB MD of thousands of random small "
                    "molecules (H C N O F S Cl, the rMD17 molecules held out), the large pretraining set "
                    "(docs/datasets.md).")
    g.add_argument("name", choices=["water-tip3p", "aspirin-xtb", "molecule-xtb", "g2-xtb", "water-xtb", "diverse-xtb"],
                   help="dataset to generate")
    g.add_argument("--molecule", default=None,
                   help="molecule-xtb: a revised-MD17 molecule (aspirin, azobenzene, benzene, ethanol, malonaldehyde, "
                        "naphthalene, paracetamol, salicylic acid, toluene, uracil) or any SMILES")
    g.add_argument("--output", required=True, help="extxyz file to write; a .card.json is written beside it")
    g.add_argument("--frames", type=int, default=None,
                   help="frames (g2-xtb: per molecule and temperature); defaults: tip3p 200, aspirin 10000, g2 50, water-xtb 200")
    g.add_argument("--molecules", type=int, default=None, help="water molecules (tip3p 64, water-xtb 32); diverse-xtb: distinct molecules (4000)")
    g.add_argument("--frames-per-molecule", type=int, default=None,
                   help="diverse-xtb: frames per molecule, split over the temperatures (25)")
    g.add_argument("--temperatures", type=float, nargs="+", default=None, help="diverse-xtb: K (500 1000)")
    g.add_argument("--equilibration-steps", type=int, default=None,
                   help="diverse-xtb: MD steps before the first frame of each molecule and temperature (20)")
    g.add_argument("--preset", choices=["v1", "v2"], default="v1",
                   help="diverse-xtb: v1 (4,000 molecules, 500/1000 K) or v2 (20,000 molecules up to 12 heavy atoms, "
                        "300/500/1000 K, displaced frames, 18%% non-bonded clusters, all ten rMD17 molecules held "
                        "out); the flags below override it")
    g.add_argument("--max-heavy-atoms", type=int, default=None, help="diverse-xtb: largest molecule (v1 9, v2 12)")
    g.add_argument("--shard", type=int, nargs=2, default=None, metavar=("I", "N"),
                   help="diverse-xtb: sample only molecules with index %% N == I (parallel processes, separate outputs)")
    g.add_argument("--card-only", action="store_true",
                   help="diverse-xtb: write the card of the frames generated so far (run unfinished or still going)")
    g.add_argument("--max-molecules", type=int, default=None, help="g2-xtb: use only the first N G2 molecules")
    g.add_argument("--temperature", type=float, default=None, help="K (tip3p/water-xtb 300, aspirin 500)")
    g.add_argument("--interval", type=int, default=None, help="MD steps between recorded frames (tip3p 20, xtb 10, diverse-xtb 5)")
    g.add_argument("--source", default=None, help="water-xtb: TIP3P file to relabel (default: generate one)")
    g.add_argument("--stress", action="store_true",
                   help="water-xtb: label the stress too (free with the forces; for NPT and train.stress_weight)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--positions-only", action="store_true", help="water-tip3p: unlabelled frames for pretraining")
    g.set_defaults(func=cmd_data_generate)
    i = dsub.add_parser("info", help="counts, species and label statistics of a dataset file")
    i.add_argument("path")
    i.set_defaults(func=cmd_data_info)
    k = dsub.add_parser(
        "pack", help="pack dataset files (any readable format) into one LMDB dataset for streaming training",
        description="Stream every frame of the inputs into one packed dataset (an LMDB directory) with its "
                    "statistics (reference energies, force RMS, neighbours per atom). Resumable: re-run the same "
                    "command after an interruption. See docs/dataset_format.md.")
    k.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="extxyz, ASE db, MD17/rMD17 .npz, ANI-1x/SPICE .h5 or any ASE format")
    k.add_argument("--output", required=True, help="pack directory to write (conventionally *.pack)")
    k.add_argument("--format", default=None, help="input format (default: from each file's suffix)")
    _add_label_keys(k)
    k.add_argument("--cutoff", type=float, default=5.0, help="Å, for the neighbour statistics (default 5.0)")
    k.add_argument("--positions-only", action="store_true", help="accept unlabelled frames (pretraining data)")
    k.add_argument("--no-progress", action="store_true", help="no progress bar")
    k.set_defaults(func=cmd_data_pack)
    c = dsub.add_parser(
        "contacts", help="frames with two molecules pushed into each other, labelled (teaches a model its short-range wall)",
        description="From frames of two or more molecules (a liquid, clusters), make frames in which one molecule is "
                    "moved rigidly toward another until two of their atoms are closer than that element pair's "
                    "closest distance in the frame (down to half their covalent radii); label them and their source "
                    "frames with the reference method; keep those at most --max-energy above their source. Add the "
                    "output to the training data (docs/datasets.md). Resumable: re-run the same command.")
    c.add_argument("input", help="frames to start from (any readable format; labels not needed)")
    c.add_argument("--output", required=True, help="extxyz of the kept contact frames")
    c.add_argument("--sources", type=int, default=30, help="input frames drawn at random (default 30)")
    c.add_argument("--per-source", type=int, default=3,
                   help="contact frames per source frame, the element pairs in turn (default 3)")
    c.add_argument("--max-energy", type=float, default=None,
                   help="eV above the source frame; higher contacts are dropped (default 20)")
    c.add_argument("--labeller", default=None,
                   help="module:Name of an ASE calculator class or factory (default GFN2-xTB through tblite)")
    c.add_argument("--stress", action="store_true", help="label the stress too (periodic frames)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    c.set_defaults(func=cmd_data_contacts)
    m = dsub.add_parser("merge-cards", help="one dataset card for a diverse-xtb set generated as --shard outputs")
    m.add_argument("outputs", nargs="+", metavar="SHARD", help="the extxyz output of each shard")
    m.add_argument("--output", required=True, help="card to write (.card.json; its .card.md beside it)")
    m.set_defaults(func=cmd_data_merge_cards)


def _add_stability(sub) -> None:
    p = sub.add_parser("stability", help="MD stability of a model in LAMMPS (MDsim protocols)",
                       description="Run independent NVT trajectories with pair_style nnp until collapse or the "
                                   "time limit. aspirin/molecule: 500 K, 0.5 fs, bond deviation > 0.5 Å; water: "
                                   "300 K, 1 fs, RDF error > 3.0 over 1 ps windows; periodic (any other periodic "
                                   "box): water's criterion over every pair of the reference's elements, and (both) "
                                   "a window with two atoms more than --contact-tolerance closer than that pair's "
                                   "closest distance in the reference has collapsed too. The run "
                                   "checkpoints in OUTPUT/checkpoint (every ps of MD): the same command again "
                                   "continues an interrupted run.")
    p.add_argument("--model", required=True, help="exported model file")
    p.add_argument("--system", required=True, choices=["aspirin", "molecule", "water", "periodic"])
    p.add_argument("--reference", default=None,
                   help="frames to start from and compare with (default: bundled aspirin-xtb test set / TIP3P water; "
                        "periodic: required)")
    p.add_argument("--trajectories", type=int, default=4)
    p.add_argument("--time", default=None,
                   help="length per trajectory, e.g. 300ps (default: 300ps molecule, 500ps water and periodic)")
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--timestep-fs", type=float, default=None)
    p.add_argument("--workers", type=int, default=1, help="trajectories run in parallel (separate LAMMPS processes)")
    p.add_argument("--nve-ps", type=float, default=0.0,
                   help="after a stable run, this many ps of NVE to report the energy drift")
    p.add_argument("--contact-tolerance", type=_contact_tolerance, default=0.5, metavar="ANGSTROM|off",
                   help="water and periodic boxes: a 1 ps window collapses when two atoms come closer than their "
                        "element pair's closest distance in the reference by more than this (default 0.5 Å); "
                        "'off': MDsim's RDF criterion alone")
    p.add_argument("--zbl", type=float, nargs=2, default=None, metavar=("INNER", "OUTER"),
                   help="overlay LAMMPS's ZBL core repulsion on the model for every element pair, switched off "
                        "between INNER and OUTER Å (pair_style hybrid/overlay nnp zbl; OUTER under the shortest "
                        "distance the system really has, e.g. 0.5 0.8 for water)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--replicas", type=int, default=0, metavar="N",
                   help="N trajectories with a Kaplan-Meier summary; molecules: as N replicas in ONE LAMMPS run "
                        "(per-replica MDsim Nose-Hoover thermostat and collapse detection); periodic boxes: one "
                        "LAMMPS run each (as --trajectories N); replaces --trajectories")
    p.add_argument("--compare", default=None, metavar="STABILITY_JSON",
                   help="another model's stability.json: log-rank test against it and both survival curves")
    p.add_argument("--output", default=None, help="directory for stability.json and plots")
    p.add_argument("--ensemble", action="append", default=[], metavar="FILE",
                   help="extra model file (repeatable): record the ensemble force deviation beside the driving "
                        "--model (deviation.npz, deviation.png, first crossing of --deviation-threshold)")
    p.add_argument("--deviation-every", type=int, default=10, help="steps between deviation samples (out_freq)")
    p.add_argument("--deviation-threshold", type=float, default=0.15, help="trust level in eV/Å (default 0.15)")
    p.set_defaults(func=cmd_stability)


def _contact_tolerance(text: str) -> float | None:
    if text.strip().lower() in ("off", "none"):
        return None
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a distance in Å (or 'off')")
    return value


def _add_stability_compare(sub) -> None:
    p = sub.add_parser("stability-compare", help="log-rank test and Kaplan-Meier curves of two stability runs",
                       description="Compare two stability.json files (nnp stability): Kaplan-Meier median stable "
                                   "time with its 95% CI for each, log-rank test between them, both curves in one plot.")
    p.add_argument("first", help="stability.json of model A")
    p.add_argument("second", help="stability.json of model B")
    p.add_argument("--output", default="survival_compare.png", help="plot file (default survival_compare.png)")
    p.set_defaults(func=cmd_stability_compare)


def _add_analyze(sub) -> None:
    p = sub.add_parser("analyze", help="compare models beyond force error: latent structure, force smoothness, dF")
    p.add_argument("--model", action="append", required=True, help="model file (repeat for several)")
    p.add_argument("--reference", required=True, help="labelled reference frames (e.g. a test trajectory)")
    p.add_argument("--xtb", action="store_true", help="also measure the reference smoothness with GFN2-xTB")
    p.add_argument("--frames", type=int, default=50)
    p.add_argument("--displacements", type=int, default=20)
    p.add_argument("--output", default="analysis")
    p.set_defaults(func=cmd_analyze)


def _add_quickstart(sub) -> None:
    p = sub.add_parser("quickstart", help="the README's main job: the pretrained model zero-shot, finetuned and "
                                          "against scratch on aspirin; then water data -> train -> export -> LAMMPS MD")
    p.add_argument("--output", default="runs/quickstart", help="run directory")
    p.add_argument("--minutes", type=float, default=3.0, help="water training time budget")
    p.add_argument("--finetune-minutes", type=float, default=1.5,
                   help="time for finetuning the pretrained model on aspirin, and for scratch on the same frames")
    p.add_argument("--frames", type=int, default=300, help="TIP3P frames to generate")
    p.add_argument("--md-steps", type=int, default=200, help="LAMMPS MD steps at the end (0 to skip)")
    p.set_defaults(func=cmd_quickstart)


def _add_learn(sub) -> None:
    p = sub.add_parser("learn", help="active learning: train an ensemble, explore in LAMMPS, label the frames where "
                                     "the members disagree, repeat (resumable; docs/active_learning.md)")
    p.add_argument("--config", required=True, help="learn.yaml (docs/active_learning.md)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_learn)


def cmd_learn(args) -> int:
    from .learn import load_learn_config, run_learning

    summary = run_learning(load_learn_config(args.config), progress=not args.no_progress)
    print(f"stopped: {summary['stopped_by']}; models: {' '.join(summary['final_models'])}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnp", description="Train, pretrain, export and run neural network potentials in LAMMPS.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_train, _add_pretrain, _add_finetune, _add_evaluate, _add_export, _add_data, _add_stability,
                _add_stability_compare, _add_analyze, _add_quickstart, _add_models, _add_learn):
        add(sub)
    return parser


def _version() -> str:
    from . import __version__

    return f"nnp {__version__}"


def cmd_train(args) -> int:
    from .config import load_config
    from .train.trainer import run_training

    config = load_config(args.config, args.overrides)
    if getattr(args, "ensemble", 1) != 1:  # nnp finetune reuses cmd_train without --ensemble
        return _train_ensemble(config, args)
    summary = run_training(config, progress=not args.no_progress, export_dtype=args.export_dtype)
    if "table" not in summary:  # not the main process of a torchrun job
        return 0
    print(summary["table"])
    print(f"stopped by {summary['stopped_by']} after {summary['epochs']} epochs; model: {summary['model_file']}")
    return 0


def _train_ensemble(config, args) -> int:
    from .errors import UserError
    from .train.ensemble import ensemble_pair_style, run_ensemble_training

    if args.ensemble < 2:
        raise UserError(f"--ensemble needs at least 2 members, got {args.ensemble}")
    summaries = run_ensemble_training(config, args.ensemble, progress=not args.no_progress,
                                      export_dtype=args.export_dtype)
    if any("table" not in s for s in summaries):  # not the main process of a torchrun job
        return 0
    for k, summary in enumerate(summaries):
        print(f"member {k} (seed {config.train.seed + k}):")
        print(summary["table"])
    files = [s["model_file"] for s in summaries]
    print("ensemble: " + " ".join(files))
    print("in LAMMPS (member 0 drives, the others measure the deviation):\n" + ensemble_pair_style(files))
    return 0


def cmd_pretrain(args) -> int:
    from .config import load_config
    from .train.trainer import run_pretraining

    summary = run_pretraining(load_config(args.config, args.overrides), progress=not args.no_progress)
    print(f"{summary['task']} pretraining stopped by {summary['stopped_by']} after {summary['epochs']} epochs; "
          f"best validation loss {summary['best_val_loss']:.4f}; checkpoint: {summary['checkpoint']}")
    return 0


def cmd_finetune(args) -> int:
    from .pretrained import checkpoint_for
    from .train.finetune import finetune_config
    from .train.trainer import run_training

    checkpoint = checkpoint_for(args.checkpoint)
    overrides = [f"output_dir={args.output_dir}"] * bool(args.output_dir)
    if args.replay is not None:
        from .pretrained import get

        overrides += [f"finetune.replay={get(args.checkpoint).file('replay')}", f"finetune.replay_frames={args.replay}"]
    overrides += args.overrides
    if args.config is not None:
        data = [f"data.path={args.data}"] * (args.data is not None)
        args.overrides = [f"finetune.from_checkpoint={checkpoint}", *data, *overrides]
        return cmd_train(args)
    if args.data is None:
        from .errors import UserError

        raise UserError("give --data FILE (the frames to finetune on) or a --config that names them")
    config = finetune_config(checkpoint, args.data, overrides)
    summary = run_training(config, progress=not args.no_progress, export_dtype=args.export_dtype)
    if "table" in summary:
        print(summary["table"])
        print(f"finetuned {args.checkpoint}: stopped by {summary['stopped_by']} after {summary['epochs']} epochs; "
              f"model: {summary['model_file']}")
    return 0


def cmd_models_list(args) -> int:
    from .pretrained import available

    models = available()
    if not models:
        print("no pretrained models found (search path: NNP_MODEL_PATH, then the package)")
        return 0
    print(f"{'name':<18} {'elements':<16} {'cutoff':>7} {'params':>8} {'MB':>5}  errors")
    for m in models:
        c = m.card
        size = sum((m.directory / f).stat().st_size for f in c.get("files", {}).values()
                   if (m.directory / f).exists()) / 1e6
        print(f"{m.name:<18} {' '.join(c['elements']):<16} {c['cutoff_A']:>6.1f}A {c['parameters']:>8,} "
              f"{size:>5.1f}  {c.get('summary_errors', '')}")
    return 0


def cmd_models_card(args) -> int:
    from .pretrained import get

    model = get(args.name)
    print(model.markdown.read_text() if model.markdown.exists() else json.dumps(model.card, indent=2))
    print("files:")
    for variant in model.card.get("files", {}):
        print(f"  {variant:<10} {model.file(variant)}")
    return 0


def cmd_evaluate(args) -> int:
    from .data.dataset import load_structures
    from .train.evaluate import evaluate_model_file
    from .train.predict import format_metrics_table

    frames = load_structures(args.data, args.format, args.max_frames, keys=_label_keys(args))
    metrics = evaluate_model_file(args.model, frames, progress=True)
    print(format_metrics_table({Path(args.data).name: metrics}))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(metrics, indent=2))
    return 0


def cmd_export(args) -> int:
    from .export import export_model
    from .train.trainer import load_checkpoint, model_from_checkpoint

    from .pretrained import checkpoint_for

    checkpoint = load_checkpoint(checkpoint_for(args.checkpoint))  # a run's checkpoint or a bundled model's name
    model = model_from_checkpoint(checkpoint)
    path = export_model(model, args.output, dtype=args.dtype, format=args.format, device=args.device,
                        provenance={"checkpoint": str(args.checkpoint), "config": checkpoint["config"],
                                    "epoch": checkpoint["epoch"]})
    print(f"wrote {path}")
    return 0


def cmd_data_generate(args) -> int:
    from .data.generate import xtb
    from .data.generate.tip3p import generate_tip3p

    def given(**values):
        return {k: v for k, v in values.items() if v is not None}

    if args.stress and args.name != "water-xtb":
        from .errors import UserError

        raise UserError(f"--stress labels periodic frames: only water-xtb has them, not {args.name}")
    if args.name == "water-tip3p":
        path = generate_tip3p(args.output, seed=args.seed, positions_only=args.positions_only,
                              **given(n_frames=args.frames, n_molecules=args.molecules,
                                      temperature=args.temperature, interval=args.interval))
    elif args.name == "aspirin-xtb":
        path = xtb.generate_aspirin_xtb(args.output, seed=args.seed, **given(
            n_frames=args.frames, temperature=args.temperature, interval=args.interval))
    elif args.name == "molecule-xtb":
        if not args.molecule:
            from .errors import UserError

            raise UserError("molecule-xtb needs --molecule NAME_OR_SMILES (e.g. --molecule ethanol)")
        path = xtb.generate_molecule_xtb(args.output, args.molecule, seed=args.seed, **given(
            n_frames=args.frames, temperature=args.temperature, interval=args.interval))
    elif args.name == "g2-xtb":
        path = xtb.generate_g2_xtb(args.output, seed=args.seed, **given(
            frames_per_system=args.frames, max_molecules=args.max_molecules, interval=args.interval))
    elif args.name == "diverse-xtb":
        from .data.generate import diverse

        preset = diverse.PRESETS[args.preset]
        common = {"n_molecules": args.molecules or preset["n_molecules"], "sampling": preset["sampling"],
                  "max_heavy_atoms": args.max_heavy_atoms or preset["max_heavy_atoms"],
                  **given(frames_per_molecule=args.frames_per_molecule, temperatures=args.temperatures)}
        if args.shard:
            common.update(shard=args.shard[0], shards=args.shard[1])
        if args.card_only:
            card = diverse.write_partial_card(args.output, seed=args.seed, **common)
            print(f"wrote {card} and {card.with_suffix('.md')}")
            return 0
        path = diverse.generate_diverse_xtb(args.output, seed=args.seed, **common, **given(
            interval=args.interval, equilibration_steps=args.equilibration_steps))
    else:
        source = args.source
        if source is None:
            source = str(Path(args.output).with_name(Path(args.output).stem + ".tip3p.extxyz"))
            generate_tip3p(source, n_frames=args.frames or 200, n_molecules=args.molecules or 32, seed=args.seed,
                           **given(temperature=args.temperature, interval=args.interval))
        path = xtb.relabel_xtb(source, args.output, max_frames=args.frames, stress=args.stress)
    print(f"wrote {path} (card: {path}.card.json)")
    return 0


def cmd_data_contacts(args) -> int:
    import math

    from .data.readers import read_structures
    from .errors import UserError
    from .learn.config import DEFAULT_LABELLER
    from .learn.contacts import DEFAULT_MAX_ENERGY, label_contacts
    from .learn.labelling import make_labeller

    max_energy = DEFAULT_MAX_ENERGY if args.max_energy is None else args.max_energy
    if not math.isfinite(max_energy) or max_energy <= 0:
        raise UserError(f"--max-energy is a height in eV above the source frame, > 0; not {args.max_energy}")
    frames = read_structures(args.input, require_labels=False)
    summary = label_contacts(frames, args.output, make_labeller(args.labeller or DEFAULT_LABELLER), args.sources,
                             args.per_source, max_energy, args.seed, args.stress, progress=not args.no_progress)
    print(f"{summary['kept']} of {summary['contacts']} contact frames from {summary['sources']} source frames kept "
          f"({summary['too_high']} more than {max_energy:g} eV above their source, {summary['no_source']} without a "
          f"labelled source; {summary['label_failures']} labels failed) -> {args.output}")
    return 0


def cmd_data_info(args) -> int:
    from .data.info import dataset_info

    print(dataset_info(args.path))
    return 0


def cmd_data_pack(args) -> int:
    from .data.pack import PackedDataset, pack_dataset

    path = pack_dataset(args.inputs, args.output, format=args.format, require_labels=not args.positions_only,
                        cutoff=args.cutoff, progress=not args.no_progress, keys=_label_keys(args))
    meta = PackedDataset(path).metadata
    print(f"wrote {path}: {meta['n_frames']} frames, {meta['n_atoms']} atoms, elements {' '.join(meta['elements'])}")
    return 0


def cmd_data_merge_cards(args) -> int:
    from .data.generate.diverse import merge_shard_cards
    from .errors import UserError

    try:
        card = merge_shard_cards(args.outputs, args.output)
    except (FileNotFoundError, ValueError) as err:
        raise UserError(str(err)) from err
    summary = json.loads(card.read_text())
    print(f"wrote {card} and {card.with_suffix('.md')}: {summary['frames']} frames, "
          f"{summary['composition']['molecules']} molecules, {len(summary['shards'])} shards"
          f"{'' if summary['complete'] else ' (unfinished)'}")
    return 0


def parse_time_ps(text: str) -> float:
    """'300ps', '300 ps', '0.5ns', '2000fs' or a bare number of ps."""
    import re

    from .errors import UserError

    match = re.fullmatch(r"\s*([0-9.eE+-]+)\s*(fs|ps|ns)?\s*", text)
    if not match:
        raise UserError(f"cannot read time {text!r}: write e.g. 300ps")
    return float(match.group(1)) * {"fs": 1e-3, "ps": 1.0, "ns": 1e3, None: 1.0}[match.group(2)]


def _replica_stability(args, reference, protocol, output: str) -> int:
    import numpy as np

    from .md.replicas import run_replica_stability
    from .md.report import format_replica_table

    picks = np.linspace(0, len(reference) - 1, args.replicas).round().astype(int)
    summary = run_replica_stability(args.model, [reference[k] for k in picks], protocol, output, reference,
                                    seed=args.seed, progress=True)
    print(format_replica_table(summary))
    _compare_to(args, summary, output)
    print(f"wrote {output}/stability.json and plots")
    return 0


def _compare_to(args, summary: dict, output: str) -> None:
    """``--compare OTHER``: log-rank test and both survival curves, added to this run's stability.json."""
    import json

    from .md.report import compare_stability

    if args.compare:
        other = json.loads(Path(args.compare).read_text())
        result = compare_stability(summary, other, Path(output) / "survival_compare.png")
        print(f"log-rank test against {other['model']}: chi2 = {result['logrank_chi2']:.3f}, "
              f"p = {result['logrank_p']:.3g} (collapses observed {result['collapses_observed']}, "
              f"expected {[round(e, 2) for e in result['collapses_expected']]})")
        summary["comparison"] = result
        (Path(output) / "stability.json").write_text(json.dumps(summary, indent=2))


def cmd_stability_compare(args) -> int:
    import json

    from .errors import UserError
    from .md.report import compare_stability, format_median, stable_times
    from .md.survival import summarize

    summaries = []
    for path in (args.first, args.second):
        try:
            summaries.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as err:
            raise UserError(f"cannot read stability summary {path}: {err}") from err
    for summary in summaries:
        km = summarize(*stable_times(summary))
        print(f"{summary['model']}: {format_median(km)}")
    result = compare_stability(summaries[0], summaries[1], args.output)
    print(f"log-rank: chi2 = {result['logrank_chi2']:.3f}, p = {result['logrank_p']:.3g} (collapses observed "
          f"{result['collapses_observed']}, expected {[round(e, 2) for e in result['collapses_expected']]})")
    print(f"wrote {result['plot']}")
    return 0


def cmd_stability(args) -> int:
    import numpy as np

    from .data.dataset import load_structures
    from .errors import UserError
    from .md.protocol import PROTOCOLS, check_system
    from .md.report import format_stability_table
    from .md.stability import run_stability

    system = "molecule" if args.system == "aspirin" else args.system
    default_reference = {"water": "bundled:water_tip3p_small", "molecule": "bundled:aspirin_xtb_test_small"}
    if args.reference is None and system not in default_reference:
        raise UserError(f"--system {system} needs --reference: frames of the system to start from and compare with")
    reference = load_structures(args.reference or default_reference[system], require_labels=False)
    check_system(system, reference)
    overrides = {k: v for k, v in (("temperature", args.temperature), ("timestep_fs", args.timestep_fs),
                                   ("nve_ps", args.nve_ps)) if v}
    if args.time:
        overrides["time_ps"] = parse_time_ps(args.time)
    if system != "molecule":
        overrides["contact_tolerance"] = args.contact_tolerance
    if args.zbl:
        inner, outer = args.zbl
        if not 0.0 < inner < outer:
            raise UserError(f"--zbl {inner:g} {outer:g}: give INNER OUTER with 0 < INNER < OUTER (Å)")
        overrides["zbl"] = (inner, outer)
    if args.ensemble:
        overrides.update(ensemble=tuple(args.ensemble), deviation_every=args.deviation_every,
                         deviation_threshold=args.deviation_threshold)
    protocol = PROTOCOLS[system](**overrides)  # periodic: run_stability takes the reference's element pairs
    output = args.output or f"stability/{Path(args.model).stem}-{args.system}"
    if (Path(output) / "checkpoint").is_dir():
        print(f"continuing the interrupted run saved in {output}/checkpoint (remove that folder to start over)")
    count = args.replicas or args.trajectories
    if count < 1:
        raise UserError(f"--replicas/--trajectories must be >= 1, got {count}")
    if args.replicas and system == "molecule":
        return _replica_stability(args, reference, protocol, output)
    # --trajectories, or a periodic box's --replicas N: N trajectories, one LAMMPS run each
    picks = np.linspace(0, len(reference) - 1, count).round().astype(int)
    summary = run_stability(args.model, [reference[k] for k in picks], protocol, output, reference=reference,
                            seed=args.seed, workers=args.workers)
    print(format_stability_table(summary))
    _compare_to(args, summary, output)
    for key in ("h_r_mae", *(k for k in summary if k.startswith("rdf_mae_")), "oxygen_diffusivity_A2_per_ps"):
        if key in summary:
            print(f"{key}: {summary[key]:.4g}")
    print(f"wrote {output}/stability.json and plots")
    return 0


def cmd_analyze(args) -> int:
    from .data.dataset import load_structures
    from .md.analysis import compare_models

    reference = load_structures(args.reference)
    calculator = None
    if args.xtb:
        from .data.generate.xtb import xtb_calculator as calculator
    summary = compare_models(args.model, reference, args.output, reference_calculator=calculator,
                             displacements=args.displacements, max_frames=args.frames)
    keys = ["force_rmse", "delta_force_rmse", "relative_delta_force_rmse", "latent_silhouette", "smoothness_median"]
    if args.xtb:
        keys.append("smoothness_wasserstein_to_reference")
    print(f"{'model':<28}" + "".join(f"{k:>28}" for k in keys))
    for name, values in summary["models"].items():
        print(f"{name:<28}" + "".join(f"{values[k]:>28.4g}" for k in keys))
    if "reference_smoothness_median" in summary:
        print(f"reference (xTB) smoothness median: {summary['reference_smoothness_median']:.4g} eV/Å²")
    print(f"wrote {args.output}/analysis.json and plots")
    return 0


def cmd_quickstart(args) -> int:
    from .quickstart import quickstart

    quickstart(Path(args.output), minutes=args.minutes, frames=args.frames, md_steps=args.md_steps,
               finetune_minutes=args.finetune_minutes)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .errors import UserError

    try:
        return args.func(args)
    except (UserError, FileNotFoundError) as err:
        message = " ".join(str(err).split())  # one line
        command = " ".join(c for c in (args.command, getattr(args, "data_command", None),
                                       getattr(args, "models_command", None)) if c)
        print(f"nnp {command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""`nnp quickstart`: the pretrained model on a molecule it never saw (zero-shot, finetuned, against
scratch, all in LAMMPS), then a potential trained from nothing (TIP3P water, a small EGNN, LAMMPS MD)."""

from __future__ import annotations

import time
from pathlib import Path

from .config import config_from_dict, load_config

PRETRAINED = "organic-xtb"
ASPIRIN_TRAIN, ASPIRIN_TEST = "bundled:aspirin_xtb_small", "bundled:aspirin_xtb_test_small"


def find_recipe(relative: str) -> Path:
    """A file under ``training/``, looked up in the working directory, then in the source checkout."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        candidate = root / "training" / relative
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"recipe training/{relative} not found: run from the nnp checkout")


def pretrained_demo(run_dir: Path, minutes: float, md_steps: int) -> dict:
    """organic-xtb on aspirin (held out of its pretraining): zero-shot, finetuned for ``minutes`` on the
    bundled frames, and the same architecture trained from scratch for the same time; test errors and
    a short LAMMPS run of each, side by side."""
    from .data.dataset import load_structures
    from .pretrained import get
    from .train.checkpoint import load_checkpoint
    from .train.evaluate import evaluate_model_file
    from .train.finetune import finetune_config
    from .train.trainer import run_training

    pretrained = get(PRETRAINED)
    test = load_structures(ASPIRIN_TEST)
    models = {f"{PRETRAINED} zero-shot": PRETRAINED}
    common = [f"train.time_limit_minutes={minutes}", "data.test_fraction=0.0"]
    print(f"[1/5] finetuning {PRETRAINED} on the bundled aspirin frames for {minutes:g} min")
    finetune = finetune_config(pretrained.checkpoint, ASPIRIN_TRAIN, [f"output_dir={run_dir / 'finetuned'}", *common])
    models[f"{PRETRAINED} finetuned"] = run_training(finetune, progress=True)["model_file"]
    print(f"[2/5] the same architecture from scratch on the same frames for {minutes:g} min")
    values = load_checkpoint(pretrained.checkpoint)["config"]
    scratch = load_config(find_recipe("aspirin/painn.yaml"), [f"output_dir={run_dir / 'scratch'}", *common])
    scratch = config_from_dict({**scratch.to_dict(), "model": values["model"], "name": "aspirin-scratch"})
    models["scratch (same architecture)"] = run_training(scratch, progress=True)["model_file"]
    print(f"[3/5] test errors (separate aspirin trajectory, {len(test)} frames) and {md_steps} LAMMPS steps each")
    rows = {}
    for name, model in models.items():
        errors = evaluate_model_file(model, test)
        row = {"force_mae_meV_A": 1000 * errors["forces_mae"], "energy_mae_meV_atom": 1000 * errors["energy_per_atom_mae"]}
        if md_steps > 0:
            from .md.run import quick_md

            start = test[0].copy()
            start.center(vacuum=15.0)
            md = quick_md(model, start, steps=md_steps, temperature=300.0)
            row.update(steps_per_second=md["steps_per_second"], temperature_K=md["temperature"])
        rows[name] = row
    print(f"{'aspirin':<30}{'F MAE meV/Å':>13}{'E MAE meV/atom':>16}{'LAMMPS steps/s':>16}{'T end (K)':>11}")
    for name, row in rows.items():
        print(f"{name:<30}{row['force_mae_meV_A']:>13.1f}{row['energy_mae_meV_atom']:>16.2f}"
              f"{row.get('steps_per_second', float('nan')):>16.1f}{row.get('temperature_K', float('nan')):>11.0f}")
    return rows


def quickstart(run_dir: Path, minutes: float = 3.0, frames: int = 300, md_steps: int = 200,
               finetune_minutes: float = 1.5) -> dict:
    from .data.generate.tip3p import generate_tip3p
    from .train.trainer import run_training

    timings = {}
    tick = time.monotonic()
    pretrained = pretrained_demo(run_dir / "aspirin", finetune_minutes, md_steps)
    timings["pretrained"] = time.monotonic() - tick
    tick = time.monotonic()
    data_path = run_dir / "data" / "water_tip3p.extxyz"  # everything the job writes stays in its run directory
    print(f"[4/5] training from nothing: flexible TIP3P water with LAMMPS -> {data_path}")
    generate_tip3p(data_path, n_frames=frames, seed=0)
    timings["data"] = time.monotonic() - tick

    config = load_config(find_recipe("water/quickstart.yaml"), [
        f"data.path={data_path}", f"output_dir={run_dir}", f"train.time_limit_minutes={minutes}"])
    print(f"      training {config.model.kind} ({config.model.layers} layers, cutoff {config.model.cutoff} Å) "
          f"for up to {minutes:g} min -> {run_dir}")
    tick = time.monotonic()
    summary = run_training(config, progress=True, export_dtype="float64")
    timings["train"] = time.monotonic() - tick
    print("      errors of the best model (held-out test split is 'test'):")
    print(summary["table"])
    model_file = Path(summary["model_file"])
    water_model = model_file.with_name("water.nnp.pt")
    water_model.write_bytes(model_file.read_bytes())
    print(f"exported {water_model} (float64, species {' '.join(summary['species'])})")
    if md_steps > 0:
        from .md.run import quick_md

        print(f"[5/5] LAMMPS NVT MD of the water model with pair_style nnp, {md_steps} steps")
        tick = time.monotonic()
        md = quick_md(water_model, data_path, steps=md_steps)
        timings["md"] = time.monotonic() - tick
        print(f"LAMMPS: {md['steps_per_second']:.1f} steps/s ({md['natoms']} atoms), "
              f"final T = {md['temperature']:.1f} K, PE = {md['potential_energy']:.4f} eV")
    print("timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    return {"pretrained": pretrained, "summary": summary, "timings": timings}

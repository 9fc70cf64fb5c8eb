"""`nnp quickstart`: generate TIP3P water, train a small EGNN, evaluate, export, run LAMMPS MD."""

from __future__ import annotations

import time
from pathlib import Path

from .config import load_config


def find_recipe(relative: str) -> Path:
    """A file under ``training/``, looked up in the working directory, then in the source checkout."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        candidate = root / "training" / relative
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"recipe training/{relative} not found: run from the nnp checkout")


def quickstart(run_dir: Path, minutes: float = 5.0, frames: int = 300, md_steps: int = 200) -> dict:
    from .data.generate.tip3p import generate_tip3p
    from .train.trainer import run_training

    timings = {}
    tick = time.monotonic()
    data_path = run_dir / "data" / "water_tip3p.extxyz"  # everything the job writes stays in its run directory
    print(f"[1/4] flexible TIP3P water with LAMMPS -> {data_path}")
    generate_tip3p(data_path, n_frames=frames, seed=0)
    timings["data"] = time.monotonic() - tick

    config = load_config(find_recipe("water/quickstart.yaml"), [
        f"data.path={data_path}", f"output_dir={run_dir}", f"train.time_limit_minutes={minutes}"])
    print(f"[2/4] training {config.model.kind} ({config.model.layers} layers, cutoff {config.model.cutoff} Å) "
          f"for up to {minutes:g} min -> {run_dir}")
    tick = time.monotonic()
    summary = run_training(config, progress=True, export_dtype="float64")
    timings["train"] = time.monotonic() - tick
    print("[3/4] errors of the best model (held-out test split is 'test'):")
    print(summary["table"])
    model_file = Path(summary["model_file"])
    water_model = model_file.with_name("water.nnp.pt")
    water_model.write_bytes(model_file.read_bytes())
    print(f"exported {water_model} (float64, species {' '.join(summary['species'])})")
    if md_steps > 0:
        from .md.run import quick_md

        print(f"[4/4] LAMMPS NVT MD with pair_style nnp, {md_steps} steps")
        tick = time.monotonic()
        md = quick_md(water_model, data_path, steps=md_steps)
        timings["md"] = time.monotonic() - tick
        print(f"LAMMPS: {md['steps_per_second']:.1f} steps/s ({md['natoms']} atoms), "
              f"final T = {md['temperature']:.1f} K, PE = {md['potential_energy']:.4f} eV")
    print("timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    return {"summary": summary, "timings": timings}

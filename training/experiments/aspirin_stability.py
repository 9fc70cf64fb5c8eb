"""Second seed's point at CPU scale: two aspirin models of different quality, compared by force error,
MD stability in LAMMPS and the analyses.

    python training/experiments/aspirin_stability.py [--time 5ps] [--trajectories 4] [--output runs/experiments/aspirin]

Models: EGNN (training/aspirin/scratch.yaml) trained on 40 frames for 1 minute ("weak") and on 320
frames for 5 minutes ("strong"). Stability: MDsim molecule protocol (500 K, 0.5 fs, bond deviation >
0.5 Å) from test-trajectory frames. Analyses against the GFN2-xTB test trajectory.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nnp.config import load_config
from nnp.data.dataset import load_structures
from nnp.data.generate.xtb import xtb_calculator
from nnp.md.analysis import compare_models
from nnp.md.protocol import molecule_protocol
from nnp.md.report import format_stability_table
from nnp.md.stability import run_stability
from nnp.train.trainer import run_training

RECIPE = Path(__file__).resolve().parents[1] / "aspirin" / "scratch.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--time", type=float, default=5.0, help="ps per trajectory")
    parser.add_argument("--trajectories", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--output", default="runs/experiments/aspirin")
    args = parser.parse_args()
    out = Path(args.output)
    variants = {"weak": ["data.max_frames=50", "train.time_limit_minutes=1"],
                "strong": ["data.max_frames=400", "train.time_limit_minutes=5"]}
    models, results = {}, {}
    for name, overrides in variants.items():
        config = load_config(RECIPE, [f"output_dir={out}/{name}", *overrides])
        summary = run_training(config, progress=False)
        models[name] = out / f"{name}.nnp.pt"  # distinct names for the side-by-side analysis
        models[name].write_bytes(Path(summary["model_file"]).read_bytes())
        results[name] = {"test_force_rmse_meV_A": 1000 * summary["metrics"]["test"]["forces_rmse"],
                         "test_energy_rmse_meV_atom": 1000 * summary["metrics"]["test"]["energy_per_atom_rmse"]}
        print(name, results[name], flush=True)
    reference = load_structures("bundled:aspirin_xtb_test_small")
    starts = reference[:: max(1, len(reference) // args.trajectories)][: args.trajectories]
    for name, model in models.items():
        stability = run_stability(model, starts, molecule_protocol(time_ps=args.time), out / f"stability-{name}",
                                  reference=reference, workers=args.workers, progress=False)
        print(f"\n{name}:\n{format_stability_table(stability)}", flush=True)
        results[name].update({k: stability[k] for k in ("median_time_ps", "min_time_ps", "stable_fraction")})
        results[name]["h_r_mae"] = stability.get("h_r_mae")
    analysis = compare_models([str(m) for m in models.values()], reference, out / "analysis", reference_calculator=xtb_calculator,
                              displacements=20, max_frames=40)
    for name, model in models.items():
        results[name].update(analysis["models"][Path(model).name])
    results["reference_smoothness_median"] = analysis.get("reference_smoothness_median")
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()

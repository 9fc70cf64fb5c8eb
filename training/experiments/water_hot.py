"""Finished water models in a box hotter than they were trained and explored at (RESULTS §14.4).

    python training/experiments/water_hot.py --temperature 500 \
        --model active_scratch=runs/al-water-hi1/water/stability-active_scratch-float32-pt2/model-float32.nnp.pt2 \
        --model random_scratch_cpu=runs/al-water-hi1/water/stability-random_scratch_cpu-float32-pt2/model-float32.nnp.pt2 \
        --compare active_scratch random_scratch_cpu --results results/water_500K.json

Each model runs ``nnp stability --system water --replicas N --temperature T`` (MDsim's RDF criterion against the
reference, here the 300 K test set: at 500 K a model that holds the liquid together stays far under the threshold 3.0,
so a crossing is a collapse, not the warmer liquid's broader peaks; and nnp's closest-approach rule; ``--zbl INNER
OUTER``: every model with LAMMPS's ZBL repulsion overlaid), in ``OUTPUT/<label>``, unless that folder has
its stability.json (an interrupted run is continued: the CLI checkpoints). Then one JSON: per model its stable
trajectories, Kaplan–Meier summary, largest window RDF error per pair, closest distance per element pair (where
stability.json has it), and the log-rank p of each ``--compare A B``; and one survival plot of all models.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from nnp.md.report import stable_times
from nnp.md.survival import kaplan_meier, logrank_test, summarize
from nnp.plotting import plot_kaplan_meier


def run(label: str, model: str, args: argparse.Namespace) -> dict:
    """The model's stability.json, running ``nnp stability`` first where it has none."""
    out = args.output / label
    if not (out / "stability.json").exists():
        command = [str(Path(sys.executable).parent / "nnp"), "stability", "--model", model, "--system", "water",
                   "--reference", str(args.reference), "--replicas", str(args.replicas), "--time",
                   f"{args.time_ps:g}ps", "--temperature", f"{args.temperature:g}", "--seed", str(args.seed),
                   "--output", str(out), *(["--zbl", *map(str, args.zbl)] if args.zbl else [])]
        print(" ".join(command), flush=True)
        subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads((out / "stability.json").read_text())


def row(label: str, summary: dict) -> dict:
    durations, collapsed = stable_times(summary)
    trajectories = summary["trajectories"]
    pairs = trajectories[0]["window_rdf_errors"][0].keys() if trajectories[0]["window_rdf_errors"] else ()
    return {"label": label, "model": summary["model"], "temperature_K": summary["protocol"]["temperature"],
            "time_ps": summary["protocol"]["time_ps"], "replicas": len(durations),
            "replicas_stable": len(durations) - sum(collapsed), "stable_ps": durations, "collapsed": collapsed,
            "reasons": [t["reason"] for t in trajectories],
            "largest_window_rdf_error": {p: max(w[p] for t in trajectories for w in t["window_rdf_errors"])
                                         for p in pairs},
            "closest_A": [t.get("closest_A") for t in trajectories],
            "contact_tolerance_A": summary["protocol"].get("contact_tolerance"),  # None: MDsim's RDF criterion alone
            "zbl": summary["protocol"].get("zbl") or None,
            "kaplan_meier": summarize(durations, collapsed), "md_wall_s": summary.get("md_wall_s")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, metavar="LABEL=PATH",
                        help="a model file and its label (repeatable)")
    parser.add_argument("--compare", nargs=2, action="append", default=[], metavar=("A", "B"),
                        help="log-rank test between two labels (repeatable)")
    parser.add_argument("--temperature", type=float, default=500.0)
    parser.add_argument("--replicas", type=int, default=16)
    parser.add_argument("--time-ps", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--zbl", type=float, nargs=2, metavar=("INNER", "OUTER"),
                        help="every model with LAMMPS's ZBL repulsion overlaid (nnp stability --zbl)")
    parser.add_argument("--reference", type=Path, default=Path("data/heldout/water_test.extxyz"))
    parser.add_argument("--output", type=Path, default=Path("runs/water-500K"))
    parser.add_argument("--results", type=Path, default=Path("results/water_500K.json"))
    args = parser.parse_args(argv)
    if any("=" not in item for item in args.model):
        parser.error("--model takes LABEL=PATH (e.g. --model loop=runs/x/model.nnp.pt)")
    models = dict(item.split("=", 1) for item in args.model)
    for a, b in args.compare:
        if a not in models or b not in models:
            parser.error(f"--compare {a} {b}: each label must be one of --model's ({', '.join(models)})")

    rows = [row(label, run(label, path, args)) for label, path in models.items()]
    by_label = {r["label"]: r for r in rows}
    for r in rows:
        print(f"{r['label']}: {r['replicas_stable']}/{r['replicas']} stable for {r['time_ps']:g} ps at "
              f"{r['temperature_K']:g} K; largest window RDF error {r['largest_window_rdf_error']}")
    comparisons = []
    for a, b in args.compare:
        test = logrank_test(by_label[a]["stable_ps"], by_label[a]["collapsed"],
                            by_label[b]["stable_ps"], by_label[b]["collapsed"])
        comparisons.append({"a": a, "b": b, "logrank_chi2": test.chi2, "logrank_p": test.p_value})
        print(f"log-rank {a} vs {b}: p = {test.p_value:.3g}")
    curves = {r["label"]: kaplan_meier(r["stable_ps"], r["collapsed"]) for r in rows}
    plot = plot_kaplan_meier(curves, args.time_ps, args.results.with_suffix(".png"))
    doc = {"command": " ".join([".venv/bin/python", *sys.argv]), "protocol": {
        "system": "water", "temperature_K": args.temperature, "replicas": args.replicas, "time_ps": args.time_ps,
        "seed": args.seed, "reference": str(args.reference), "zbl": args.zbl}, "models": rows, "comparisons": comparisons,
        "plot": str(plot), "cpu": os.uname().machine}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Choose organic-xtb's architecture by measurement: each candidate trains for the same CPU budget on the
same slice of diverse-xtb v2 (one thread each, side by side), then the validation errors are compared.

    .venv/bin/python training/organic/compare_architectures.py --minutes 12 --frames 8000

Candidates share the recipe training/organic/painn.yaml (data, width, depth, cutoff, loss, schedule) and
differ only in model.kind. Writes results/organic_xtb_architectures.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

NNP = str(Path(sys.executable).with_name("nnp"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", nargs="+", default=["painn", "egnn"])
    parser.add_argument("--minutes", type=float, default=12.0)
    parser.add_argument("--frames", type=int, default=8000, help="the slice: the first N frames of the pack")
    parser.add_argument("--config", default="training/organic/painn.yaml")
    parser.add_argument("--output", type=Path, default=Path("runs/organic-architectures"))
    parser.add_argument("--results", type=Path, default=Path("results/organic_xtb_architectures.json"))
    args = parser.parse_args()
    processes = {}
    for kind in args.kinds:
        run = args.output / kind
        run.mkdir(parents=True, exist_ok=True)
        cmd = [NNP, "train", "--config", args.config, "--no-progress", "--set", f"model.kind={kind}",
               "--set", f"data.max_frames={args.frames}", "--set", f"train.time_limit_minutes={args.minutes}",
               "--set", f"output_dir={run}", "--set", "train.epochs=1000"]
        log = open(run / "train.log", "w")
        processes[kind] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, "OMP_NUM_THREADS": "1"}), cmd)
    rows = {}
    for kind, (process, cmd) in processes.items():
        _, status, usage = os.wait4(process.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{kind} failed: see {args.output / kind / 'train.log'}")
        summary = json.loads((args.output / kind / "results.json").read_text())
        val = summary["metrics"]["val"]
        rows[kind] = {"val_force_mae_meV_A": 1000 * val["forces_mae"], "val_force_rmse_meV_A": 1000 * val["forces_rmse"],
                      "val_energy_mae_meV_atom": 1000 * val["energy_per_atom_mae"], "epochs": summary["epochs"],
                      "parameters": summary["num_parameters"], "cpu_minutes": (usage.ru_utime + usage.ru_stime) / 60,
                      "command": shlex.join(cmd)}
    winner = min(rows, key=lambda k: rows[k]["val_force_mae_meV_A"])
    doc = {"command": shlex.join([".venv/bin/python", *sys.argv]), "frames": args.frames, "minutes": args.minutes,
           "threads_each": 1, "candidates": rows, "winner": winner}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(doc, indent=1))
    for kind, row in rows.items():
        print(f"{kind:<8} val F MAE {row['val_force_mae_meV_A']:7.1f} meV/Å  E MAE {row['val_energy_mae_meV_atom']:6.2f} "
              f"meV/atom  {row['epochs']} epochs  {row['parameters']:,} parameters  {row['cpu_minutes']:.1f} CPU-min")
    print(f"winner: {winner}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

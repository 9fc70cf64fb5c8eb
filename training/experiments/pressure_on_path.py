"""A model's pressure error on its own MD: what NPT depends on, measured where the model actually goes.

    python training/experiments/pressure_on_path.py --models A.nnp.pt B.nnp.pt \
        --start data/heldout/water_test_stress.extxyz --output results/pressure_on_path_water.json

For each model (one process each, side by side): NVT in LAMMPS at ``--temperature`` from the start frame for
``--equilibrate`` steps, then ``--frames`` frames every ``--every`` steps; on each frame the model's virial pressure
(``nnp.calculator``) against GFN2-xTB's (tblite, periodic; the kinetic term is the same for both and left out).
Test frames sampled by another potential (TIP3P here) are not where a model's MD goes: their xTB pressure can be
kbar away from that of frames the model relaxed itself.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np


def pressures_on_path(model: str, start, temperature: float, equilibrate: int, frames: int, every: int,
                      seed: int) -> dict:
    """Model and xTB virial pressures (bar) on ``frames`` frames of the model's NVT run."""
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from ase.units import bar

    from nnp.calculator import NNPCalculator
    from nnp.data.generate.xtb import xtb_calculator
    from nnp.evaluator import load_evaluator
    from nnp.lammps import current_atoms, load_atoms, make_lammps, nnp_lines, nvt_lines

    species = [s for s in load_evaluator(model).species if s in set(start.get_chemical_symbols())]
    lmp = make_lammps()
    path = []
    try:
        load_atoms(lmp, start, species)
        lmp.commands_list([*nnp_lines(model, species), "neighbor 1.0 bin", *nvt_lines(temperature, seed, 0.5, 100.0),
                           "thermo 0", f"run {equilibrate} post no"])
        for _ in range(frames):
            lmp.command(f"run {every} post no")
            path.append(current_atoms(lmp, species))
    finally:
        lmp.close()
    calc, own_calc, own, reference = xtb_calculator(), NNPCalculator(model), [], []
    for frame in path:
        probe = frame.copy()
        probe.calc = own_calc
        own.append(-probe.get_stress()[:3].mean() / bar)
        probe = frame.copy()
        probe.calc = calc
        reference.append(-probe.get_stress()[:3].mean() / bar)
    own, reference = np.array(own), np.array(reference)
    return {"model": model, "model_virial_pressure_bar": own.tolist(), "xtb_virial_pressure_bar": reference.tolist(),
            "pressure_mae_kbar": float(np.abs(own - reference).mean() / 1000)}


def main(argv: list[str] | None = None) -> int:
    import ase.io

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--start", required=True, help="structure file; its first frame starts every run")
    parser.add_argument("--temperature", type=float, default=300.0)
    parser.add_argument("--equilibrate", type=int, default=1000, help="NVT steps (0.5 fs) before the first frame")
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--every", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    start = ase.io.read(args.start, index=0)
    jobs = [(m, start, args.temperature, args.equilibrate, args.frames, args.every, args.seed) for m in args.models]
    with ProcessPoolExecutor(min(len(jobs), 2)) as pool:
        runs = list(pool.map(pressures_on_path, *zip(*jobs)))
    for run in runs:
        print(f"{run['model']}: pressure MAE {run['pressure_mae_kbar']:.2f} kbar on its own NVT frames "
              f"(xTB's virial pressure there: {np.mean(run['xtb_virial_pressure_bar']) / 1000:.1f} kbar)")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"command": " ".join(sys.argv), **{k: str(v) if isinstance(v, Path) else v
                                                                            for k, v in vars(args).items()},
                                       "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

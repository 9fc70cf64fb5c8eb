"""`nnp learn` under a barostat on the xTB water box: what NPT exploration finds, and what stress labels buy.

    OMP_NUM_THREADS=1 .venv/bin/nnp learn --config training/water/learn_npt.yaml         # the loop (RESULTS §14.6)
    .venv/bin/python training/experiments/npt_learn_water.py --loop runs/learn-water-npt/loop \
        --test data/heldout/water_test_stress.extxyz --output results/npt_learn_water.json

Reads a finished (or partly finished) loop back and reports, per iteration:

* the densities its NPT exploration replicas went through (g/cm³; first, last, lowest and highest frame, and the
  mean over each replica's second half);
* the exploring ensemble's member 0 against GFN2-xTB on the frames that iteration labelled (stress from tblite):
  force and pressure errors where the exploration went, next to the same errors on the fixed test frames (TIP3P
  configurations at 0.997 g/cm³);
* GFN2-xTB's pressure against density on the initial and the selected frames (the calibration frames are left
  out): the virial pressure plus the
  ideal-gas term N k_B T / V at the loop's temperature, its mean in density bins of 0.05 g/cm³, and a straight line
  through all of them with the density where it crosses the barostat's pressure: a rough picture of where xTB water
  itself would sit (the frames are the model's, not equilibrated xTB states), to compare with where the model's NPT
  runs go;
* with ``--npt-ps``: member 0 of the first and (once the loop has finished) of the final ensemble (``--npt-models``)
  each run NPT alone (the loop's temperature, barostat and timestep; the loop's first pressure or ``--npt-bar``) for
  that long from the start structure, its density every 50 steps: where the model's own water settles, before and
  after the loop's labels. The JSON keeps the last call's runs; each run is also kept in the loop folder
  (``npt-<first|final>-<ps>ps[-<bar>bar].json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from ase.units import _amu, bar

G_PER_CM3_PER_AMU_PER_A3 = _amu * 1e3 / 1e-24  # 1 amu/Å³ in g/cm³ (ASE's CODATA amu in kg; 1 Å³ = 1e-24 cm³)


def density(atoms) -> float:
    """g/cm³."""
    return float(atoms.get_masses().sum() / atoms.get_volume() * G_PER_CM3_PER_AMU_PER_A3)


def total_pressure_bar(atoms, temperature: float) -> float:
    """Virial pressure of the frame's stress label plus the ideal-gas term at ``temperature`` (bar)."""
    from ase.units import kB

    virial = -float(np.mean(atoms.get_stress()[:3]))
    return (virial + len(atoms) * kB * temperature / atoms.get_volume()) / bar


def replica_densities(frames_path: Path) -> dict:
    import ase.io

    frames = ase.io.read(frames_path, index=":", format="extxyz")
    rho = np.array([density(a) for a in frames])
    return {"frames": len(rho), "first": float(rho[0]), "last": float(rho[-1]), "min": float(rho.min()),
            "max": float(rho.max()), "mean_second_half": float(rho[len(rho) // 2:].mean())}


def npt_density(model: str, start, temperature: float, pressure: float, explore: dict, ps: float,
                seed: int = 12345) -> dict:
    """Density (g/cm³) every 50 steps of an NPT run of ``model`` from ``start`` (LAMMPS, pair_style nnp)."""
    from nnp.evaluator import load_evaluator
    from nnp.lammps import load_atoms, make_lammps, nnp_lines, npt_lines

    species = [s for s in load_evaluator(model).species if s in set(start.get_chemical_symbols())]
    steps = int(round(ps * 1000 / explore["timestep_fs"]))
    mass = float(start.get_masses().sum())
    lmp = make_lammps()
    rho = []
    try:
        load_atoms(lmp, start, species)
        lmp.commands_list([*nnp_lines(model, species), "neighbor 1.0 bin",
                           *npt_lines(temperature, pressure, seed, explore["timestep_fs"], explore["thermostat_fs"],
                                      explore["barostat_fs"], explore["barostat"]), "thermo 0", "run 0 post no"])
        for _ in range(steps // 50):
            rho.append(mass / lmp.get_thermo("vol") * G_PER_CM3_PER_AMU_PER_A3)
            lmp.command("run 50 post no")
        rho.append(mass / lmp.get_thermo("vol") * G_PER_CM3_PER_AMU_PER_A3)
    finally:
        lmp.close()
    rho = np.array(rho)
    return {"model": model, "ps": ps, "every_fs": 50 * explore["timestep_fs"], "density": rho.round(5).tolist(),
            "mean_second_half": float(rho[len(rho) // 2:].mean()), "std_second_half": float(rho[len(rho) // 2:].std())}


def errors(model: str, frames: list) -> dict:
    from nnp.train.evaluate import evaluate_model_file

    m = evaluate_model_file(model, frames)
    return {"force_mae_meV_A": 1000 * m["forces_mae"], "pressure_mae_kbar": m["pressure_mae"] / bar / 1000,
            "frames": len(frames)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", type=Path, required=True, help="the loop's output_dir")
    parser.add_argument("--test", type=Path, required=True, help="test frames with xTB stress labels")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--npt-ps", type=float, default=0.0, help="NPT run of the first and final member 0 (ps)")
    parser.add_argument("--npt-bar", type=float, default=None, help="their pressure (default: the loop's first)")
    parser.add_argument("--npt-models", nargs="+", choices=("first", "final"), default=["first", "final"],
                        help="which member 0 runs NPT (default: both)")
    args = parser.parse_args(argv)

    import ase.io

    config = json.loads((args.loop / "learn-config.json").read_text())
    system = config["explore"]["systems"][0]
    temperature, pressure = float(system["temperatures"][0]), float(system["pressures"][0])
    test = ase.io.read(args.test, index=":")
    initial = ase.io.read(args.loop / "data-000.extxyz", index=":")
    summary = json.loads((args.loop / "learn.json").read_text())
    iterations = summary["iterations"]
    rows, labelled_all = [], [*initial]
    for it in iterations:
        k = it["iteration"]
        folder = args.loop / f"iter-{k:03d}"
        replicas = {p.name: replica_densities(p / "frames.extxyz") for p in sorted((folder / "explore").iterdir())
                    if (p / "frames.extxyz").exists()}
        labelled_path = folder / "labelled.extxyz"
        labelled = ase.io.read(labelled_path, index=":") if labelled_path.exists() and labelled_path.stat().st_size else []
        labelled_all += labelled
        row = {"iteration": k, "labels": it["labels"], "replicas_stable": it["replicas_stable"],
               "replicas": it["replicas"], "mean_stable_ps": it["mean_stable_ps"], "exploration_density": replicas,
               "member0_on_test": errors(it["models"][0], test)}
        if labelled:
            row["member0_on_its_labels"] = errors(it["models"][0], labelled)
            row["labelled_density_range"] = [min(map(density, labelled)), max(map(density, labelled))]
        rows.append(row)
        print(f"iteration {k}: {it['labels']} labels; densities explored "
              + ", ".join(f"{r['min']:.3f}-{r['max']:.3f} (2nd half {r['mean_second_half']:.3f})"
                          for r in replicas.values())
              + f"; member 0 pressure MAE test {row['member0_on_test']['pressure_mae_kbar']:.2f} kbar"
              + (f", on its labels {row['member0_on_its_labels']['pressure_mae_kbar']:.2f} kbar" if labelled else ""))
    rho = np.array([density(a) for a in labelled_all])
    p_bar = np.array([total_pressure_bar(a, temperature) for a in labelled_all])
    slope, intercept = np.polyfit(rho, p_bar, 1)
    xtb = {"frames": len(rho), "density_range": [float(rho.min()), float(rho.max())],
           "slope_kbar_per_g_cm3": float(slope / 1000), "density_at_barostat_pressure": float((pressure - intercept) / slope),
           "bins": []}
    # one frame's virial pressure in a 96-atom box scatters by kbar: means over density bins say more than one line
    for lo in np.arange(np.floor(rho.min() * 20) / 20, rho.max(), 0.05):
        inside = (rho >= lo) & (rho < lo + 0.05)
        if inside.sum() >= 2:
            values = p_bar[inside] / 1000
            xtb["bins"].append({"density": [float(lo), float(lo + 0.05)], "frames": int(inside.sum()),
                                "pressure_kbar": float(values.mean()),
                                "sem_kbar": float(values.std(ddof=1) / np.sqrt(inside.sum()))})
            print(f"  xTB {lo:.2f}-{lo + 0.05:.2f} g/cm³: {values.mean():+.1f} ± {xtb['bins'][-1]['sem_kbar']:.1f} kbar "
                  f"({inside.sum()} frames)")
    print(f"xTB on {len(rho)} labelled frames ({rho.min():.3f}-{rho.max():.3f} g/cm³): dP/drho = "
          f"{slope / 1000:.1f} kbar per g/cm³; P = {pressure:g} bar at {xtb['density_at_barostat_pressure']:.3f} g/cm³ "
          "(straight line)")
    npt = {}
    if args.npt_ps > 0:
        start = ase.io.read(system["structure"], index=system.get("index") or 0)
        runs = [("first", iterations[0]["models"][0])] if "first" in args.npt_models else []
        if "final_models" in summary and "final" in args.npt_models:  # the loop has finished
            runs.append(("final", summary["final_models"][0]))
        bar = pressure if args.npt_bar is None else args.npt_bar
        for name, model in runs:
            cache = args.loop / (f"npt-{name}-{args.npt_ps:g}ps" + ("" if bar == pressure else f"-{bar:g}bar") + ".json")
            if cache.exists() and json.loads(cache.read_text())["model"] == model:  # each run kept: read back
                npt[name] = json.loads(cache.read_text())
            else:
                npt[name] = {**npt_density(model, start, temperature, bar, config["explore"], args.npt_ps), "bar": bar}
                cache.write_text(json.dumps(npt[name]))
            print(f"NPT {args.npt_ps:g} ps at {bar:g} bar, {name} member 0: density {npt[name]['mean_second_half']:.3f} "
                  f"± {npt[name]['std_second_half']:.3f} g/cm³ over the second half")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"loop": str(args.loop), "temperature_K": temperature, "pressure_bar": pressure,
                                       "iterations": rows, "xtb_equation_of_state": xtb, "npt": npt}, indent=1))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

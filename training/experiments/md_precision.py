"""float32 against float64 model files in LAMMPS: NVE energy drift, agreement with Python, and speed.

    python training/experiments/md_precision.py --checkpoint runs/quickstart/best.ckpt --steps 2000

The same trained checkpoint is exported twice (float32, float64). For each file, on the README water
(192 atoms, the last bundled TIP3P frame):
* LAMMPS = Python: energy and forces of ``pair_style nnp`` (``run 0``) against the float64 Python model
  (the training code path) on the same frame;
* NVE: velocity Verlet at 0.5 fs from 300 K for ``--steps`` steps; the total energy every 10 steps gives
  the drift (slope of a linear fit, eV/atom/ps) and the largest excursion |E(t) - E(0)| per atom;
* speed: steps/s of that run (torch threads as set by --threads).
Writes results/md_precision.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def lammps_run(model: Path, atoms, species: list[str], steps: int, threads: int, tmp: Path) -> dict:
    from nnp.lammps import make_lammps, nnp_lines, nve_energy_trace, system_lines, write_lammps_data

    data = tmp / "start.data"
    write_lammps_data(atoms, data, species)
    lmp = make_lammps()
    try:
        for line in (*system_lines(data, "p p p", atom_map="array sort 0 0"),
                     *nnp_lines(model, species, f"threads {threads}"), "neighbor 1.0 bin",
                     "thermo_style custom step pe ke etotal", "run 0"):
            lmp.command(line)
        pe0 = lmp.get_thermo("pe")
        forces = np.array(lmp.numpy.extract_atom("f")[: len(atoms)], dtype=float).copy()
        ids = np.array(lmp.numpy.extract_atom("id")[: len(atoms)]).copy()
        forces = forces[np.argsort(ids)]
        lmp.command("velocity all create 300 4928459 mom yes rot yes dist gaussian")
        lmp.command("timestep 0.0005")
        time_ps, etotal, seconds = nve_energy_trace(lmp, steps, timestep_fs=0.5, every=10)
    finally:
        lmp.close()
    slope = np.polyfit(time_ps, etotal, 1)[0] / len(atoms)
    return {"energy": pe0, "forces": forces, "steps_per_s": steps / seconds,
            "drift_eV_atom_ps": float(slope),
            "max_excursion_eV_atom": float(np.abs(etotal - etotal[0]).max() / len(atoms)),
            "etotal": etotal.tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="runs/quickstart/best.ckpt")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default="results/md_precision.json")
    args = parser.parse_args()

    import torch

    from nnp.data.readers import bundled_dataset, read_structures
    from nnp.export import export_model
    from nnp.train.checkpoint import load_checkpoint, model_from_checkpoint
    from nnp.data.graph import atoms_to_graph, edge_vectors

    if not Path(args.checkpoint).exists():
        sys.exit(f"{args.checkpoint} does not exist: run `nnp quickstart` first or pass --checkpoint")
    model = model_from_checkpoint(load_checkpoint(args.checkpoint)).double().eval()
    atoms = read_structures(bundled_dataset())[-1]
    atoms.calc = None
    species = [s for s in model.species if s in set(atoms.get_chemical_symbols())]
    graph = atoms_to_graph(atoms, model.species, model.cutoff, torch.float64, with_labels=False)
    out = model(graph.species, graph.edge_index, edge_vectors(graph), graph.num_nodes)  # float64 Python model
    reference = {"energy": float(out["energy"]), "forces": out["forces"].detach().numpy()}
    rows = {}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        for dtype in ("float64", "float32"):
            path = export_model(model, tmp / f"m.{dtype}.nnp.pt", dtype=dtype)
            torch.manual_seed(0)
            run = lammps_run(path, atoms, species, args.steps, args.threads, tmp)
            df = run.pop("forces") - reference["forces"]
            rows[dtype] = {**{k: v for k, v in run.items() if k != "energy"},
                           "energy_vs_python_eV": abs(run["energy"] - reference["energy"]),
                           "force_vs_python_max_eV_A": float(np.abs(df).max()),
                           "force_vs_python_rms_eV_A": float(np.sqrt((df ** 2).mean()))}
            print(f"{dtype}: |dE| vs Python {rows[dtype]['energy_vs_python_eV']:.2e} eV, max |dF| "
                  f"{rows[dtype]['force_vs_python_max_eV_A']:.2e} eV/Å; NVE drift "
                  f"{rows[dtype]['drift_eV_atom_ps']:.2e} eV/atom/ps, max excursion "
                  f"{rows[dtype]['max_excursion_eV_atom']:.2e} eV/atom; {rows[dtype]['steps_per_s']:.2f} steps/s",
                  flush=True)
    Path(args.json).write_text(json.dumps({"command": "python " + " ".join(sys.argv), "natoms": len(atoms),
                                           "timestep_fs": 0.5, "steps": args.steps, "threads": args.threads,
                                           "runs": rows}, indent=1))


if __name__ == "__main__":
    main()

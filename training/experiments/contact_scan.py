"""Energy of two atoms pushed into each other in liquid water: models against GFN2-xTB (RESULTS §14.4).

    python training/experiments/contact_scan.py \
        --model organic-xtb=organic-xtb \
        --model loop=runs/al-water/water/stability-active-float32-pt2/model-float32.nnp.pt2 \
        --results results/contact_scan_water.json

In a frame of the reference box, the closest pair of ``--pair`` atoms (default two hydrogens; ``O O`` two oxygens) on
two different molecules is brought together by moving the second molecule rigidly along the line between them (its own geometry and every other molecule stay put),
from ``--d-max`` down to ``--d-min`` Å. Each model's energy and xTB's (the periodic box, as the labels were made),
relative to their values at ``--d-max``, show whether a model repels the pair as xTB does or has a well that MD can fall
into (hydrogens found 0.32-0.35 Å apart in 500 K runs). One JSON with every curve, one plot.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from ase import Atoms

from nnp.calculator import NNPCalculator
from nnp.data.contacts import push_together
from nnp.data.molecules import molecule_labels
from nnp.data.readers import read_structures


def closest_foreign_pair(atoms: Atoms, pair: tuple[str, str]) -> tuple[int, int]:
    """The closest two atoms of the elements ``pair`` (minimum image) that belong to different molecules."""
    symbols, molecule = np.array(atoms.get_chemical_symbols()), molecule_labels(atoms)
    best = (np.inf, -1, -1)
    for a in np.flatnonzero(symbols == pair[0]):
        others = np.flatnonzero((symbols == pair[1]) & (molecule != molecule[a]))
        d = atoms.get_distances(a, others, mic=True)
        k = int(np.argmin(d))
        best = min(best, (float(d[k]), int(a), int(others[k])))
    return best[1], best[2]


def scan_frames(atoms: Atoms, a: int, b: int, distances: np.ndarray) -> list[Atoms]:
    """Frames with b's molecule moved rigidly along the a-b line so that |a - b| (minimum image) is each distance."""
    moving = moved_molecule(atoms, b)
    return [push_together(atoms, a, b, d, moving) for d in distances]


def moved_molecule(atoms: Atoms, b: int) -> np.ndarray:
    """The atoms of ``b``'s molecule."""
    labels = molecule_labels(atoms)
    return np.flatnonzero(labels == labels[b])


def energies(frames: list[Atoms], calculator) -> np.ndarray:
    out = []
    for frame in frames:
        frame = frame.copy()
        frame.calc = calculator
        out.append(frame.get_potential_energy())
    return np.array(out)


def zbl_energies(frames: list[Atoms], inner: float, outer: float) -> np.ndarray:
    """LAMMPS's ``pair_style zbl inner outer`` alone on each frame (what ``--zbl`` overlays on a model in MD)."""
    import tempfile

    from nnp.lammps import make_lammps, system_lines, write_lammps_data
    from nnp.lammps.deck import zbl_coeff_lines

    species = sorted(set(frames[0].get_chemical_symbols()))
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for frame in frames:
            data = Path(tmp) / "frame.data"
            write_lammps_data(frame, data, species)
            lmp = make_lammps()
            lines = [f"pair_style zbl {inner:g} {outer:g}", *zbl_coeff_lines(species), "run 0"]
            for line in system_lines(data) + lines:
                lmp.command(line)
            out.append(lmp.get_thermo("pe"))
            lmp.close()
    return np.array(out)


def plot_scan(distances: np.ndarray, curves: dict[str, list[float]], d_max: float, pair: str, path: Path) -> Path:
    """Every curve, whole (left) and up to 4 eV (right: where the models' walls differ)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, top in zip(axes, (None, 4.0)):
        for label, energy in curves.items():
            ax.plot(distances, energy, label=label, lw=2.5 if label == "GFN2-xTB" else 1.5,
                    color="black" if label == "GFN2-xTB" else None, ls="--" if label.startswith("ZBL") else "-")
        ax.set(xlabel=f"{pair} distance (Å), rigid approach of a second water", ylabel=f"E - E({d_max:g} Å) (eV)")
        if top:
            ax.set_ylim(-0.5, top)
    axes[0].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, metavar="LABEL=PATH",
                        help="a model file (or a bundled model's name) and its label (repeatable)")
    parser.add_argument("--reference", type=Path, default=Path("data/heldout/water_test.extxyz"))
    parser.add_argument("--frame", type=int, default=0)
    parser.add_argument("--pair", nargs=2, default=["H", "H"], metavar=("A", "B"), help="the two elements (H H, O O, O H)")
    parser.add_argument("--d-min", type=float, default=0.2)
    parser.add_argument("--d-max", type=float, default=2.0)
    parser.add_argument("--points", type=int, default=37)
    parser.add_argument("--no-xtb", action="store_true", help="models only (no GFN2-xTB reference curve)")
    parser.add_argument("--zbl", type=float, nargs=2, metavar=("INNER", "OUTER"),
                        help="also LAMMPS's ZBL repulsion alone, as nnp stability --zbl overlays it")
    parser.add_argument("--results", type=Path, default=Path("results/contact_scan_water.json"))
    args = parser.parse_args(argv)
    if any("=" not in item for item in args.model):
        parser.error("--model takes LABEL=PATH")
    from nnp.pretrained import resolve_file

    atoms = read_structures(args.reference)[args.frame]
    a, b = closest_foreign_pair(atoms, tuple(args.pair))
    distances = np.linspace(args.d_max, args.d_min, args.points)
    frames = scan_frames(atoms, a, b, distances)
    curves = {}
    for item in args.model:
        label, path = item.split("=", 1)
        e = energies(frames, NNPCalculator(resolve_file(path)))
        curves[label] = (e - e[0]).tolist()
        print(f"{label}: E(d) - E({args.d_max:g} Å) at the closest points: "
              + ", ".join(f"{d:.2f} Å {v:+.2f} eV" for d, v in list(zip(distances, curves[label]))[-6:]), flush=True)
    if not args.no_xtb:
        from nnp.data.generate.xtb import xtb_calculator

        e = energies(frames, xtb_calculator())
        curves["GFN2-xTB"] = (e - e[0]).tolist()
        print("GFN2-xTB: " + ", ".join(f"{d:.2f} Å {v:+.2f} eV" for d, v in list(zip(distances, curves["GFN2-xTB"]))[-6:]))
    if args.zbl:
        e = zbl_energies(frames, *args.zbl)
        label = f"ZBL {args.zbl[0]:g}-{args.zbl[1]:g} Å (alone)"
        curves[label] = (e - e[0]).tolist()
        print(f"{label}: " + ", ".join(f"{d:.2f} Å {v:+.2f} eV" for d, v in list(zip(distances, curves[label]))[-6:]))
    plot = plot_scan(distances, curves, args.d_max, "-".join(args.pair), args.results.with_suffix(".png"))
    doc = {"command": " ".join([".venv/bin/python", *sys.argv]), "reference": str(args.reference), "frame": args.frame,
           "pair": args.pair, "atoms": [a, b], "start_distance_A": float(atoms.get_distance(a, b, mic=True)),
           "moved_molecule": moved_molecule(atoms, b).tolist(), "distances_A": distances.tolist(), "energy_eV": curves,
           "plot": str(plot), "cpu": os.uname().machine}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

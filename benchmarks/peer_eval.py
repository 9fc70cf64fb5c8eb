"""Test errors and energy+forces time of any ASE calculator: the peers' side of ``benchmarks/pareto.py``.

Needs only ase and numpy (besides the calculator's own package), so it runs in a peer's environment:

    python benchmarks/pareto.py --data aspirin.npz --test aspirin_test.npz --write-split runs/pareto/split ...
    # in the peer's environment, after training the peer on runs/pareto/split/{train,val}.extxyz:
    python benchmarks/peer_eval.py --calculator nequip.ase:NequIPCalculator.from_deployed_model \\
        --arg model_path=deployed.pth --label "NequIP l=1" --split runs/pareto/split --json nequip.json
    python benchmarks/peer_eval.py --calculator mace.calculators:MACECalculator \\
        --arg model_paths=mace.model --arg device=cpu --label "MACE small" --split runs/pareto/split --json mace.json
    python benchmarks/pareto.py ... --reuse --peers nequip.json mace.json

``--calculator module:attribute`` names a class or factory; each ``--arg key=value`` is passed to it as a
keyword (values are read as JSON where they parse, else as strings). ``--split`` is the folder that
``pareto.py --write-split`` wrote: ``test.extxyz`` (the test frames) and ``size_<n>.extxyz`` (the two timed
structures). nnp's own models are measured by the same two functions (``test_errors``, ``calculator_ms``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from pathlib import Path

import numpy as np


def test_errors(calc, frames) -> dict[str, float]:
    """Energy-per-atom and force-component RMSE (meV/atom, meV/Å) of ``calc`` on labelled ``frames``.

    The loop of ``nnp.train.evaluate.evaluate_model_file``, kept here on purpose: a peer's environment has no nnp.
    """
    e_err, f_err = [], []
    for atoms in frames:
        ref_e, ref_f = atoms.get_potential_energy(), atoms.get_forces()
        probe = atoms.copy()
        probe.calc = calc
        e_err.append((probe.get_potential_energy() - ref_e) / len(atoms))
        f_err.append((probe.get_forces() - ref_f).ravel())
    e, f = np.array(e_err), np.concatenate(f_err)
    return {"energy_rmse_meV_atom": 1000 * float(np.sqrt((e**2).mean())),
            "force_rmse_meV_A": 1000 * float(np.sqrt((f**2).mean())), "test_frames": len(frames)}


def calculator_ms(calc, atoms, repeats: int = 5) -> float:
    """Median ms of one energy+forces of ``calc`` (its neighbour list included); two warm-up calls."""
    atoms = atoms.copy()
    atoms.calc = calc
    times = []
    for k in range(repeats + 2):
        atoms.positions[0, 0] += 1e-6  # a new configuration each time: no cached result
        tick = time.perf_counter()
        atoms.get_forces()
        if k >= 2:
            times.append(time.perf_counter() - tick)
    return 1000 * float(np.median(times))


def make_calculator(spec: str, args: list[str]):
    """``module:attr.attr`` called with ``key=value`` keywords."""
    module, _, path = spec.partition(":")
    if not path:
        raise SystemExit(f"--calculator {spec!r}: expected module:attribute, e.g. mace.calculators:MACECalculator")
    target = importlib.import_module(module)
    for name in path.split("."):
        target = getattr(target, name)
    kwargs = {}
    for item in args:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--arg {item!r}: expected key=value")
        try:
            kwargs[key] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key] = value
    return target(**kwargs)


def split_structures(split: Path) -> list[tuple[int, Path]]:
    """The timed structures ``size_<n>.extxyz`` of a split folder, smallest first."""
    sizes = sorted((int(p.stem.split("_")[1]), p) for p in split.glob("size_*.extxyz"))
    if len(sizes) != 2:
        raise SystemExit(f"{split}: expected two size_<n>.extxyz files (written by pareto.py --write-split)")
    return sizes


def main() -> None:
    import ase.io

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calculator", required=True, help="module:attribute of an ASE calculator class/factory")
    parser.add_argument("--arg", action="append", default=[], help="key=value keyword for the calculator")
    parser.add_argument("--label", required=True)
    parser.add_argument("--split", required=True, help="folder written by pareto.py --write-split")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    split = Path(args.split)
    calc = make_calculator(args.calculator, args.arg)
    row = {"label": args.label, "calculator": args.calculator, "args": args.arg, "timing": "ASE energy+forces"}
    row.update(test_errors(calc, ase.io.read(split / "test.extxyz", ":")))
    (small, small_path), (large, large_path) = split_structures(split)
    row["ms_per_step_small"] = calculator_ms(calc, ase.io.read(small_path), args.repeats)
    row["ms_per_step_large"] = calculator_ms(calc, ase.io.read(large_path), args.repeats)
    row["sizes"] = [small, large]
    Path(args.json).write_text(json.dumps(row, indent=1))
    print(json.dumps(row))


if __name__ == "__main__":
    main()

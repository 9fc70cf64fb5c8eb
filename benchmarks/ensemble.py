"""Cost of the ensemble model deviation in LAMMPS: out_freq 1, 10, 100 against the driving model alone.

    python benchmarks/ensemble.py [--members 3] [--size 192] [--steps 200] [--repeats 3] [--device cpu]

Members are EGNNs of the quickstart size (3 layers, 48 wide, cutoff 4.5 Å, float32) with random weights
of different seeds (speed does not depend on the weights); water is the bundled TIP3P frame replicated.
Each configuration runs NVE for --steps steps after a 3-step warm-up; the best of --repeats is reported.
"ensemble / model" is the pair style's own timers from the same run (seconds in the members, their
ghost-force exchange and the deviation, over seconds in the driving model): less sensitive to other
load on a shared machine than the wall-clock ratio.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import torch

from nnp.config import ModelConfig
from nnp.export import export_model
from nnp.lammps import make_lammps
from nnp.lammps import write_lammps_data
from nnp.models import build_potential

from lammps_speed import water


def member(path: Path, seed: int, dtype: str) -> Path:
    torch.manual_seed(seed)
    config = ModelConfig(kind="egnn", cutoff=4.5, hidden=48, layers=3)
    return export_model(build_potential(config, ["H", "O"], avg_num_neighbors=30.0), path, dtype=dtype)


def seconds_per_step(files: list[Path], out_freq: int | None, atoms, device: str, steps: int,
                     tmp: Path) -> tuple[float, float]:
    """(wall seconds per step, ensemble seconds / model seconds from pair_style nnp's timing line)."""
    data = tmp / "w.data"
    write_lammps_data(atoms, data, ["O", "H"])
    style = f"nnp device {device}"
    if out_freq is not None:
        style += f" ensemble {' '.join(map(str, files[1:]))} out_freq {out_freq} out_file {tmp / 'model_devi.out'}"
    log = tmp / "log.lammps"
    lmp = make_lammps(["-log", str(log), "-screen", "none"])
    for line in ("units metal", "atom_style atomic", "boundary p p p", f"read_data {data}", f"pair_style {style}",
                 f"pair_coeff * * {files[0]} O H", "neighbor 1.0 bin", "velocity all create 300 1",
                 "fix nve all nve", "timestep 0.0005", "thermo 1000", "run 3"):
        lmp.command(line)
    tick = time.perf_counter()
    lmp.command(f"run {steps} pre no post no")
    seconds = time.perf_counter() - tick
    lmp.close()
    timing = re.findall(r"seconds over \d+ evaluations:.* model ([0-9.]+) .* ensemble ([0-9.]+)", log.read_text())[-1]
    return seconds / steps, float(timing[1]) / float(timing[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=3, help="models in the ensemble, the driver included")
    parser.add_argument("--size", type=int, default=192, choices=[192, 1536, 12288])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args()
    atoms = water(args.size)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        files = [member(tmp / f"m{k}.nnp.pt", k, args.dtype) for k in range(args.members)]
        configs = {"single model": None, "out_freq 1": 1, "out_freq 10": 10, "out_freq 100": 100}
        best = {name: (float("inf"), 0.0) for name in configs}
        for _ in range(args.repeats):  # interleaved, so that load on a shared machine hits every row alike
            for name, out_freq in configs.items():
                best[name] = min(best[name], seconds_per_step(files, out_freq, atoms, args.device, args.steps, tmp))
    print(f"{len(atoms)} atoms, {args.members} members ({args.dtype} EGNN 3x48, cutoff 4.5 Å), {args.device}, "
          f"{args.steps} steps, best of {args.repeats}")
    print(f"| {'configuration':<14} | ms/step | relative to single model | ensemble / model (timers) |")
    print(f"|{'-' * 16}|---------|--------------------------|---------------------------|")
    single = best["single model"][0]
    for name, (seconds, extra) in best.items():
        print(f"| {name:<14} | {1000 * seconds:7.2f} | {seconds / single:24.2f} | {extra:25.3f} |")


if __name__ == "__main__":
    main()

"""MD steps/s of the replica-batched stability run: one aspirin vs N replicas of it in one LAMMPS run.

    OMP_NUM_THREADS=1 python benchmarks/replicas.py [--models egnn gns painn gemnet_t gemnet_dt] [--replicas 1 64]
                                                    [--seconds 20] [--dtype float32]

Models: the zoo's default sizes (benchmarks/models.py SIZES: EGNN/GNS/PaiNN 64 wide, 3 layers; GemNet 128, 4
blocks; cutoff 5 Å) with random weights, exported as --dtype. System: the bundled aspirin test frame 0 (21
atoms), replicas on the lattice of nnp.md.replicas (cell = diameter + cutoff + 10 Å), MDsim protocol
(fix nvt/mdsim, 500 K, 0.5 fs). Collapse checks are switched off for the timing (bond tolerance 1e6 Å,
one check at the end), so every replica stays in the run. "MD steps/s" is time inside LAMMPS's run only;
"replica-steps/s" = replicas x MD steps/s, the throughput a stability study gets. CPU, OMP_NUM_THREADS
threads per process (set it; torch and LAMMPS read it).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

from nnp.config import ModelConfig
from nnp.data.readers import bundled_dataset, read_structures
from nnp.export import export_model
from nnp.md.protocol import molecule_protocol
from nnp.md.replicas import run_replicas
from nnp.models import build_potential

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models import SIZES  # noqa: E402


def rate(model: Path, start, replicas: int, steps: int) -> tuple[float, int]:
    protocol = molecule_protocol(time_ps=steps * 0.0005, check_every=steps, bond_tolerance=1e6, t_max=1e12)
    run = run_replicas(model, [start] * replicas, list(range(1, replicas + 1)), protocol, [start])
    return run.steps / run.md_wall_s, run.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(SIZES))
    parser.add_argument("--replicas", nargs="+", type=int, default=[1, 64])
    parser.add_argument("--seconds", type=float, default=20.0, help="target MD time per measurement")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args()
    start = read_structures(bundled_dataset("aspirin_xtb_test_small"))[0]
    print(f"CPU, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, torch {torch.__version__}, "
          f"{args.dtype}, aspirin ({len(start)} atoms)")
    print(f"{'model':<10}{'replicas':>9}{'atoms':>7}{'steps':>7}{'MD steps/s':>12}{'replica-steps/s':>17}")
    for kind in args.models:
        torch.manual_seed(0)
        config = ModelConfig(kind=kind, cutoff=5.0, **SIZES[kind])
        model = build_potential(config, ["H", "C", "O"], avg_num_neighbors=12.0,
                                reference_energies=torch.tensor([-13.6, -1030.0, -2040.0]))
        with tempfile.TemporaryDirectory() as tmp:
            path = export_model(model.eval(), Path(tmp) / f"{kind}.nnp.pt", dtype=args.dtype)
            for n in args.replicas:
                probe, _ = rate(path, start, n, 5)
                steps = max(5, int(probe * args.seconds))
                r, done = rate(path, start, n, steps)
                print(f"{kind:<10}{n:>9}{n * len(start):>7}{done:>7}{r:>12.2f}{n * r:>17.1f}", flush=True)


if __name__ == "__main__":
    main()

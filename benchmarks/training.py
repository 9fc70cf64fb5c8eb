"""Training at scale: throughput, where a step's time goes, memory against dataset size, DDP scaling.

    python benchmarks/training.py throughput [--device auto] [--batch 4] [--steps 6] [--source memory pack]
    python benchmarks/training.py memory [--frames 2000 200000]
    python benchmarks/training.py ddp [--procs 1 2] [--batch 8]
    python benchmarks/training.py precision [--model runs/quickstart/water.nnp.pt] [--frames 10]

throughput: the README's EGNN, the GNS and GemNet-T recipes (training/water/*.yaml) on 192-atom TIP3P
water frames and on aspirin (bundled GFN2-xTB sets), trained by the engine itself (forward, forces by
double backward, optimiser) for two epochs of ``--steps`` steps; the second epoch is timed. Atoms/s and
the share of the epoch spent waiting for data (the rest is inside the model and optimiser), with graphs
kept in memory and streamed from a pack by DataLoader workers.

memory: ``nnp train`` for one epoch (batch 128) of a tiny EGNN on a pack of N frames of a 9-atom water trimer
(synthetic harmonic labels: the benchmark is about the data pipeline), peak resident memory of the whole
process tree (trainer and workers) sampled every 0.1 s.

ddp: ``torchrun --nproc_per_node=P nnp train`` at the same per-process batch; atoms/s of the second epoch.

precision: force and energy errors of float32 and of TF32 matrix products against float64, for one model
on TIP3P water frames. On a GPU, TF32 is torch's own (``allow_tf32``); elsewhere it is emulated by
rounding the inputs of every ``nn.Linear`` product, forward and backward, to TF32's 10 mantissa bits
(round to nearest), which is what the tensor cores do to matrix-product inputs (they accumulate in
float32).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from nnp.config import config_from_dict
from nnp.data.pack import pack_dataset
from nnp.data.readers import bundled_dataset
from nnp.train.loop import Trainer
from nnp.train.trainer import model_for_data, prepare_data

RECIPES = Path(__file__).resolve().parents[1] / "training" / "water"
MODELS = {"egnn": "quickstart.yaml", "gns": "gns.yaml", "gemnet_t": "gemnet_t.yaml"}
SYSTEMS = {"water": "water_tip3p_small", "aspirin": "aspirin_xtb_small"}


def recipe_model(kind: str) -> dict:
    return yaml.safe_load((RECIPES / MODELS[kind]).read_text())["model"]


def run_config(workdir: Path, model: dict, data: str, frames: int, batch: int, device: str, epochs: int) -> dict:
    return {
        "name": "bench", "output_dir": str(workdir / "run"), "model": model,
        "data": {"path": data, "max_frames": frames + 2, "val_fraction": 1 / (frames + 2),
                 "test_fraction": 1 / (frames + 2)},
        "train": {"epochs": epochs, "batch_size": batch, "scheduler": "none", "device": device,
                  "early_stopping_patience": 100, "dtype": "float32"},
    }


def throughput(args) -> None:
    print(f"device {args.device}; batch {args.batch} frames; {args.steps} steps per epoch; second epoch timed")
    print(f"{'model':<10}{'system':<9}{'source':<8}{'atoms/step':>11}{'steps/s':>9}{'atoms/s':>10}{'model share':>13}")
    rows = []
    for kind in args.models:
        for system in args.systems:
            for source in args.source:
                with tempfile.TemporaryDirectory() as tmp:
                    tmp = Path(tmp)
                    data = str(bundled_dataset(SYSTEMS[system]))
                    if source == "pack":
                        data = str(pack_dataset([data], tmp / "data.pack", cutoff=recipe_model(kind)["cutoff"],
                                                progress=False))
                    frames = args.batch * args.steps
                    config = config_from_dict(run_config(tmp, recipe_model(kind), data, frames, args.batch,
                                                         args.device, epochs=2))
                    prepared = prepare_data(config, progress=False)
                    trainer = Trainer(config, model_for_data(config, prepared), prepared, progress=False)
                    trainer.fit()
                    epoch = trainer.history[-1]
                    atoms = epoch["atoms_per_second"] * epoch["train_seconds"] / args.steps
                    row = {"model": kind, "system": system, "source": source, "atoms_per_step": atoms,
                           "steps_per_second": args.steps / epoch["train_seconds"],
                           "atoms_per_second": epoch["atoms_per_second"],
                           "model_share": 1 - epoch["data_wait_fraction"]}
                    rows.append(row)
                    print(f"{kind:<10}{system:<9}{source:<8}{atoms:>11.0f}{row['steps_per_second']:>9.2f}"
                          f"{row['atoms_per_second']:>10.0f}{100 * row['model_share']:>12.1f}%", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


def trimer_npz(path: Path, frames: int, seed: int = 0) -> Path:
    """MD17-format frames of a water trimer displaced around one geometry, with harmonic labels (kcal/mol)."""
    rng = np.random.default_rng(seed)
    base = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
    base = np.concatenate([base + shift for shift in ([0, 0, 0], [2.9, 0.2, 0.1], [1.3, 2.6, -0.3])])
    k = 20.0  # kcal/mol/Å^2
    displacement = rng.normal(0.0, 0.05, (frames, len(base), 3))
    np.savez(path, R=base + displacement, z=np.array([8, 1, 1] * 3),
             E=(0.5 * k * (displacement**2).sum((1, 2)))[:, None], F=-k * displacement)
    return path


def tree_rss_bytes(pid: int) -> dict[str, int]:
    """Resident memory of a process and all its descendants, by kind: ``anon`` (heap, tensors), ``shmem``
    (tensors shared between DataLoader workers and the trainer) and ``file`` (mapped files: libraries,
    and the pack's pages, which the kernel can drop and re-read at will)."""
    total, stack = {"anon": 0, "shmem": 0, "file": 0}, [pid]
    while stack:
        current = stack.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            for line in status.splitlines():
                for kind in total:
                    if line.startswith(f"Rss{kind.capitalize() if kind != 'shmem' else 'Shmem'}:"):
                        total[kind] += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def peak_memory(command: list[str], env: dict[str, str]) -> tuple[dict[str, int], float]:
    """Run ``command``; its peak process-tree resident memory by kind (bytes; ``total`` is the peak of the
    sum) and wall time (s)."""
    start = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    peak = {"anon": 0, "shmem": 0, "file": 0, "total": 0, "process": 0}
    while process.poll() is None:
        now = tree_rss_bytes(process.pid)
        now["total"] = sum(now.values())
        now["process"] = now["anon"] + now["shmem"]
        peak = {k: max(peak[k], now[k]) for k in peak}
        time.sleep(0.1)
    if process.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{process.stderr.read()[-2000:]}")
    return peak, time.monotonic() - start


BATCH = 128  # frames per step of the memory benchmark (a 9-atom system: 1,152 atoms per step)


def memory(args) -> None:
    nnp = str(Path(sys.executable).with_name("nnp"))
    print(f"{'frames':>10}{'steps':>8}{'seconds':>9}{'anon+shmem (MiB)':>18}{'file-backed (MiB)':>19}"
          f"{'all (MiB)':>11}")
    peaks = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for frames in args.frames:
            pack = pack_dataset([trimer_npz(tmp / f"trimer{frames}.npz", frames)], tmp / f"trimer{frames}.pack",
                                cutoff=4.0, progress=False)
            config = {"name": "memory", "output_dir": str(tmp / f"run{frames}"),
                      "model": {"kind": "egnn", "cutoff": 4.0, "hidden": 16, "layers": 2, "num_rbf": 8},
                      "data": {"path": str(pack), "val_fraction": 0.01, "test_fraction": 0.01},
                      "train": {"epochs": 1, "batch_size": BATCH, "dtype": "float32", "num_workers": 1}}
            path = tmp / f"config{frames}.yaml"
            path.write_text(yaml.safe_dump(config))
            env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one trainer thread beside one worker on 2 cores
            peak, seconds = peak_memory([nnp, "train", "--config", str(path), "--no-progress"], env)
            peaks.append(peak)
            print(f"{frames:>10}{int(frames * 0.98) // BATCH:>8}{seconds:>9.0f}{peak['process'] / 2**20:>18.0f}"
                  f"{peak['file'] / 2**20:>19.0f}{peak['total'] / 2**20:>11.0f}", flush=True)
    for kind in ("process", "total"):
        values = [p[kind] for p in peaks]
        print(f"largest / smallest peak, {'anon+shmem' if kind == 'process' else 'all'}: "
              f"{max(values) / min(values):.2f}")


def ddp(args) -> None:
    torchrun = [sys.executable, "-m", "torch.distributed.run"]  # the torchrun script may be in another venv
    print(f"per-process batch {args.batch}; {args.steps} steps per epoch; second epoch timed")
    print(f"{'processes':>10}{'atoms/s':>12}{'speed-up':>10}")
    base = None
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for procs in args.procs:
            frames = args.batch * procs * args.steps
            cfg = run_config(tmp / str(procs), recipe_model("egnn"), str(bundled_dataset("water_tip3p_small")),
                             frames, args.batch * procs, args.device, epochs=2)
            path = tmp / f"ddp{procs}.yaml"
            path.write_text(yaml.safe_dump(cfg))
            env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // procs))}
            subprocess.run([*torchrun, "--standalone", f"--nproc_per_node={procs}", "-m", "nnp.cli", "train",
                            "--config", str(path), "--no-progress"], check=True, env=env, capture_output=True)
            history = torch.load(tmp / str(procs) / "run" / "last.ckpt", weights_only=True)["history"]
            rate = history[-1]["atoms_per_second"]
            base = base or rate
            print(f"{procs:>10}{rate:>12.0f}{rate / base:>10.2f}", flush=True)


def tf32_round(x: torch.Tensor) -> torch.Tensor:
    """float32 -> nearest value with a 10-bit mantissa (TF32), kept in float32."""
    bits = x.contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32)


class TF32Linear(torch.autograd.Function):
    """``x @ w.T + b`` with TF32-rounded inputs in the forward and in the backward product for ``x``
    (forces need only the gradient with respect to the inputs)."""

    @staticmethod
    def forward(ctx, x, w, b):
        xr, wr = tf32_round(x), tf32_round(w)
        ctx.save_for_backward(wr)
        out = xr @ wr.T
        return out if b is None else out + b

    @staticmethod
    def backward(ctx, grad):
        (wr,) = ctx.saved_tensors
        return tf32_round(grad) @ wr, None, None


def predictions(model, graphs, tf32: bool) -> tuple[np.ndarray, np.ndarray]:
    """Energies per atom and forces of ``model`` on ``graphs``, optionally with TF32 matrix products."""
    from contextlib import nullcontext
    from unittest import mock

    from torch.nn import functional

    from nnp.data.graph import edge_vectors

    device = next(model.parameters()).device
    context = nullcontext()
    if tf32 and device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    elif tf32:  # emulate: round the inputs of every matrix product
        context = mock.patch.object(functional, "linear", lambda x, w, b=None: TF32Linear.apply(x, w, b))
    energies, forces = [], []
    with context:
        for graph in graphs:
            graph = graph.to(device)
            out = model(graph.species, graph.edge_index, edge_vectors(graph), graph.num_nodes)
            energies.append(float(out["energy"].detach()) / graph.num_nodes)
            forces.append(out["forces"].detach().double().cpu().numpy())
    torch.backends.cuda.matmul.allow_tf32 = False
    return np.array(energies), np.concatenate(forces)


def precision(args) -> None:
    import copy

    from nnp.data.dataset import load_structures
    from nnp.data.graph import atoms_to_graph
    from nnp.models.build import build_potential
    from nnp.config import ModelConfig

    device = torch.device("cuda" if torch.cuda.is_available() and args.device != "cpu" else "cpu")
    if args.model:
        from nnp.train.checkpoint import load_checkpoint, model_from_checkpoint

        model = model_from_checkpoint(load_checkpoint(args.model))
        where = args.model
    else:
        torch.manual_seed(0)
        cfg = recipe_model("egnn")
        model = build_potential(ModelConfig(**cfg), ["H", "O"], avg_num_neighbors=25.0, scale=0.75)
        where = "README EGNN, random initial weights"
    frames = load_structures("bundled:water_tip3p_small")[: args.frames]
    runs = {}
    for name, dtype, tf32 in (("float64", torch.float64, False), ("float32", torch.float32, False),
                              ("tf32", torch.float32, True)):
        m = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
        graphs = [atoms_to_graph(a, m.species, m.cutoff, dtype, with_labels=False) for a in frames]
        runs[name] = predictions(m, graphs, tf32)
    reference_e, reference_f = runs["float64"]
    scale = np.sqrt((reference_f**2).mean())
    print(f"model: {where}; {len(frames)} water frames (192 atoms); device {device.type}"
          f"{'' if device.type == 'cuda' else ' (TF32 emulated)'}; force RMS {scale * 1000:.1f} meV/Å")
    print(f"{'mode':<10}{'E max err (meV/atom)':>22}{'F RMS err (meV/Å)':>20}{'F RMS err / F RMS':>20}")
    for name in ("float32", "tf32"):
        e, f = runs[name]
        error = np.sqrt(((f - reference_f) ** 2).mean())
        print(f"{name:<10}{1000 * np.abs(e - reference_e).max():>22.2e}{1000 * error:>20.2e}{error / scale:>20.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--device", default="auto")
    t.add_argument("--batch", type=int, default=4)
    t.add_argument("--steps", type=int, default=6)
    t.add_argument("--models", nargs="+", default=list(MODELS))
    t.add_argument("--systems", nargs="+", default=list(SYSTEMS))
    t.add_argument("--source", nargs="+", default=["memory", "pack"])
    t.add_argument("--json", default=None)
    m = sub.add_parser("memory")
    m.add_argument("--frames", type=int, nargs="+", default=[2000, 200000])
    d = sub.add_parser("ddp")
    d.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    d.add_argument("--batch", type=int, default=8)
    d.add_argument("--steps", type=int, default=6)
    d.add_argument("--device", default="auto")
    p = sub.add_parser("precision")
    p.add_argument("--model", default=None, help="a checkpoint (best.ckpt) to use instead of random weights")
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--device", default="auto")
    args = parser.parse_args()
    {"throughput": throughput, "memory": memory, "ddp": ddp, "precision": precision}[args.what](args)


if __name__ == "__main__":
    main()

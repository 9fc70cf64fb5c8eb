"""Per-model cost: parameters, forward+backward time per frame, peak memory, LAMMPS steps/s (CPU or CUDA).

    python benchmarks/models.py [--device cpu|cuda] [--repeats 5] [--models egnn gns painn gemnet_t gemnet_dt]

Systems: 192-atom and 1536-atom water boxes (density 1 g/cm^3) and aspirin (21 atoms, gas phase);
LAMMPS steps/s with pair_style nnp on the 192-atom bundled water frame. Peak memory on CPU is the
process's maximum resident size so far (it only grows down the table).
Models use the default sizes of the recipes in training/ (EGNN/GNS/PaiNN: 64 wide, 3 layers, cutoff 5 Å;
GemNet-T and GemNet-dT: the MD17 configuration, 4 blocks, 128/64/16/16, cutoff 5 Å).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.build import molecule

from nnp.config import ModelConfig
from nnp.data.graph import atoms_to_graph, edge_vectors
from nnp.export import export_model
from nnp.models import build_potential

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lammps_speed import lammps_steps_per_second  # noqa: E402
from lammps_speed import water as bundled_water  # noqa: E402

SIZES = {
    "egnn": dict(hidden=64, layers=3),
    "gns": dict(hidden=64, layers=3),
    "painn": dict(hidden=64, layers=3),
    "gemnet_t": dict(hidden=128, layers=4),
    "gemnet_dt": dict(hidden=128, layers=4),
}


def water(n_molecules: int, seed: int = 0) -> Atoms:
    rng = np.random.default_rng(seed)
    side = round(n_molecules ** (1 / 3))
    box = (n_molecules * 18.015 / 0.6022 / 1.0) ** (1 / 3)  # Å, 1 g/cm^3
    spacing = box / side
    symbols, positions = [], []
    for ix in range(side):
        for iy in range(side):
            for iz in range(side):
                o = (np.array([ix, iy, iz]) + 0.5) * spacing + rng.normal(0, 0.2, 3)
                symbols += ["O", "H", "H"]
                positions += [o, o + [0.96, 0, 0], o + [-0.24, 0.93, 0]]
    return Atoms(symbols, positions=positions, cell=np.eye(3) * box, pbc=True)


def aspirin() -> Atoms:
    """Aspirin from RDKit; acetic acid where RDKit is not installed (the table names which)."""
    try:
        from rdkit import Chem
        from rdkit.Chem import AllChem

        mol = Chem.AddHs(Chem.MolFromSmiles("CC(=O)OC1=CC=CC=C1C(=O)O"))
        AllChem.EmbedMolecule(mol, randomSeed=0)
        pos = mol.GetConformer().GetPositions()
        return Atoms([a.GetSymbol() for a in mol.GetAtoms()], positions=pos)
    except ImportError:
        return molecule("CH3COOH")


def bench(kind: str, atoms: Atoms, device: str, repeats: int) -> dict:
    species = ["H", "C", "O"]
    config = ModelConfig(kind=kind, cutoff=5.0, **SIZES[kind])
    model = build_potential(config, species, avg_num_neighbors=30.0).to(device)
    graph = atoms_to_graph(atoms, species, 5.0, torch.float32, with_labels=False).to(device)
    vectors = edge_vectors(graph)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for k in range(repeats + 2):
        if device == "cuda":
            torch.cuda.synchronize()
        tick = time.perf_counter()
        out = model(graph.species, graph.edge_index, vectors, graph.num_nodes)
        out["forces"].sum().item()
        if device == "cuda":
            torch.cuda.synchronize()
        if k >= 2:
            times.append(time.perf_counter() - tick)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"params": sum(p.numel() for p in model.parameters()), "ms": 1000 * float(np.median(times)),
            "edges": graph.edge_index.shape[1], "peak_mb": peak, "model": model}


def lammps_rate(model, device: str) -> float:
    """LAMMPS steps/s of pair_style nnp on the 192-atom bundled water frame (float32 export)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = export_model(model.cpu(), Path(tmp) / "m.nnp.pt", dtype="float32")
        return lammps_steps_per_second(path, bundled_water(192), device, 10, Path(tmp))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=list(SIZES))
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    small = aspirin()
    small_name = "aspirin" if len(small) == 21 else small.get_chemical_formula()
    systems = {"water-192": water(64), "water-1536": water(512), f"{small_name}-{len(small)}": small}
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, float32")
    print(f"{'model':<10}{'params':>10}{'system':>12}{'atoms':>7}{'edges':>9}{'fwd+bwd ms':>12}{'peak MB':>10}"
          f"{'LAMMPS steps/s':>16}")
    for kind in args.models:
        for name, atoms in systems.items():
            if kind.startswith("gemnet") and len(atoms) > 1000 and args.device == "cpu":
                print(f"{kind:<10}{'':>10}{name:>12}{len(atoms):>7}   skipped: ~5M triplets exceed CPU memory")
                continue
            r = bench(kind, atoms, args.device, args.repeats)
            rate = f"{lammps_rate(r['model'], args.device):.2f}" if name == "water-192" else ""
            print(f"{kind:<10}{r['params']:>10}{name:>12}{len(atoms):>7}{r['edges']:>9}{r['ms']:>12.1f}{r['peak_mb']:>10.0f}"
                  f"{rate:>16}", flush=True)


if __name__ == "__main__":
    main()

"""nnp's GemNet-T against the authors' implementation (TUM-DAML/gemnet_pytorch), weights mapped.

Get the reference (not part of nnp; MIT licence) and run, from the repository root:

    git clone https://github.com/TUM-DAML/gemnet_pytorch /tmp/gemnet_pytorch   # tested at a0164f7
    .venv/bin/python training/experiments/gemnet_reference.py --reference /tmp/gemnet_pytorch

What it does:

1. copies the reference's ``gemnet/model`` and ``gemnet/training/data_container.py`` into a git-ignored
   work directory (``training/experiments/.gemnet_reference``) and applies the patches in ``PATCHES``,
   all needed only to run 2021 code on this environment, none touching the model's arithmetic:
   ``torch_scatter`` (not installable here) -> ``scatter_shim.py``, an ``index_add``-based ``scatter``
   (sum and mean); ``numba`` (not installed) -> plain Python for two index helpers; ``np.math`` and
   ``np.bool`` (removed in NumPy 2) -> ``math``/``bool``; boolean sparse subtraction (removed in SciPy)
   -> the same adjacency built without self-loops directly;
2. builds nnp's GemNet-T with the authors' MD17 hyperparameters and fits its scale factors on the
   frames (nnp's fit), and builds the reference GemNet-T (``triplets_only=True``) in its automatic-fit
   mode with the same weights and unit scale factors, and fits the reference's factors with the
   reference's own AutomaticFit on the same batches: the two fits are compared;
3. copies nnp's weights and fitted factors into the reference and evaluates energies and forces of
   aspirin and water frames with both (float64), the reference on its own index lists
   (``DataContainer``: ``id_swap``, triplets, ``Kidx3``), nnp on its edge list.

The reference computes the spherical-Bessel roots and their normalisation constants in float32
(``Jn_zeros``, ``bessel_basis``); nnp in float64. Both comparisons are reported: with nnp's own
constants, with the reference's float32 constants copied into nnp, and with the reference's own
(sympy-generated) radial functions of the circular basis in place of nnp's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from ase.data import atomic_numbers
from ase.io import read

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "python" / "nnp" / "data" / "bundled"

SCATTER_SHIM = '''"""Stand-in for torch_scatter.scatter (sum/mean over dim 0 only), added by nnp's gemnet_reference.py."""
import torch


def scatter(src, index, dim=0, dim_size=None, reduce="add"):
    assert dim == 0
    size = int(index.max()) + 1 if dim_size is None else int(dim_size)
    out = torch.zeros((size,) + tuple(src.shape[1:]), dtype=src.dtype, device=src.device)
    out = out.index_add(0, index.long(), src)
    if reduce in ("add", "sum"):
        return out
    assert reduce == "mean"
    count = torch.zeros(size, dtype=src.dtype, device=src.device).index_add(0, index.long(), torch.ones_like(index, dtype=src.dtype))
    return out / count.clamp_min(1).view((-1,) + (1,) * (src.dim() - 1))
'''

# (file, old text, new text): every patch must apply exactly as written
PATCHES = [
    ("gemnet/model/gemnet.py", "from torch_scatter import scatter", "from scatter_shim import scatter"),
    ("gemnet/model/layers/atom_update_block.py", "from torch_scatter import scatter", "from scatter_shim import scatter"),
    ("gemnet/model/layers/basis_utils.py", "import numpy as np\n", "import math\nimport numpy as np\n"),
    ("gemnet/model/layers/basis_utils.py", "np.math.factorial", "math.factorial"),
    ("gemnet/training/data_container.py", "import numba\n", ""),
    ("gemnet/training/data_container.py", "    @numba.njit(nogil=True)\n", ""),
    ("gemnet/training/data_container.py",
     "            adj_mat = sp.csr_matrix(D_ij <= self.cutoff)\n            adj_mat -= sp.eye(n, dtype=np.bool)\n",
     "            adj_mat = sp.csr_matrix((D_ij <= self.cutoff) & ~np.eye(n, dtype=bool))\n"),
]


def prepare_reference(source: Path, workdir: Path) -> str:
    """Copy and patch the reference into ``workdir``; returns the reference's git commit (or 'unknown')."""
    if workdir.exists():
        shutil.rmtree(workdir)
    (workdir / "gemnet" / "training").mkdir(parents=True)
    shutil.copytree(source / "gemnet" / "model", workdir / "gemnet" / "model")
    shutil.copy(source / "gemnet" / "training" / "data_container.py", workdir / "gemnet" / "training")
    (workdir / "gemnet" / "__init__.py").write_text("")
    (workdir / "gemnet" / "training" / "__init__.py").write_text("")
    (workdir / "scatter_shim.py").write_text(SCATTER_SHIM)
    for name, old, new in PATCHES:
        path = workdir / name
        text = path.read_text()
        count = text.count(old)
        if count == 0:
            raise SystemExit(f"patch does not apply to {name}: {old!r}")
        path.write_text(text.replace(old, new))
    try:
        return subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def frames(count: int):
    aspirin = read(BUNDLED / "aspirin_xtb_small.extxyz", index=f":{count}")
    water = read(BUNDLED / "water_xtb_small.extxyz", index=f":{count}")
    for atoms in water:
        atoms.pbc = False  # the reference is molecular: compare on clusters
    return aspirin + water


def reference_batch(data_container_cls, atoms_list, cutoff: float, workdir: Path) -> dict:
    """The reference's own inputs (index lists from its DataContainer) for all frames as one batch."""
    path = workdir / "frames.npz"
    np.savez(path, R=np.concatenate([a.positions for a in atoms_list]),
             Z=np.concatenate([a.numbers for a in atoms_list]), N=np.array([len(a) for a in atoms_list]),
             E=np.zeros(len(atoms_list)), F=np.zeros((sum(len(a) for a in atoms_list), 3)))
    container = data_container_cls(str(path), cutoff=cutoff, int_cutoff=cutoff, triplets_only=True)
    batch = container[list(range(len(atoms_list)))]
    batch["R"] = torch.from_numpy(np.concatenate([a.positions for a in atoms_list]))  # float64, not float32
    return batch


def map_weights(nnp_model, ref, species) -> None:
    """Copy every parameter and scale factor of nnp's GemNet-T into the reference model."""
    def copy(dst, src):
        assert dst.shape == src.shape, (dst.shape, src.shape)
        dst.data.copy_(src.data)

    def dense(dst, src):
        copy(dst.linear.weight, src.linear.weight)

    def residuals(dst_list, src_seq):
        assert len(dst_list) == len(src_seq)
        for d, s in zip(dst_list, src_seq):
            for dl, sl in zip(d.dense_mlp, s.mlp):
                dense(dl, sl)

    def stack(dst_layers, src_layers):  # Dense + residual layers
        dense(dst_layers[0], src_layers[0])
        residuals(list(dst_layers)[1:], list(src_layers)[1:])

    def atom_update(dst, src):
        dense(dst.dense_rbf, src.dense_rbf)
        copy(dst.scale_sum.scale_factor, src.scale_sum.scale)
        stack(dst.layers, src.layers)

    copy(ref.rbf_basis.frequencies, nnp_model.radial.bessel.frequencies)
    for z_index, symbol in enumerate(species):
        ref.atom_emb.embeddings.weight.data[atomic_numbers[symbol] - 1] = nnp_model.embedding.table.weight.data[z_index]
    for name in ("mlp_rbf3", "mlp_rbf_h", "mlp_rbf_out"):
        dense(getattr(ref, name), getattr(nnp_model, name))
    copy(ref.mlp_cbf3.weight, nnp_model.mlp_cbf3)
    dense(ref.edge_emb.dense, nnp_model.edge_embedding.dense)
    for dst, src in zip(ref.int_blocks, nnp_model.blocks):
        dense(dst.dense_ca, src.dense_ca)
        t_dst, t_src = dst.trip_interaction, src.triplet
        for name in ("dense_ba", "mlp_rbf", "down_projection", "up_projection_ca", "up_projection_ac"):
            dense(getattr(t_dst, name), getattr(t_src, name))
        copy(t_dst.mlp_cbf.weight, t_src.bilinear.weight)
        copy(t_dst.scale_rbf.scale_factor, t_src.scale_rbf.scale)
        copy(t_dst.scale_cbf_sum.scale_factor, t_src.scale_cbf_sum.scale)
        residuals(dst.layers_before_skip, src.before_skip)
        residuals(dst.layers_after_skip, src.after_skip)
        atom_update(dst.atom_update, src.atom_update)
        dense(dst.concat_layer.dense, src.concat.dense)
        residuals(dst.residual_m, src.residual_m)
    for dst, src in zip(ref.out_blocks, [nnp_model.embedding_output, *nnp_model.outputs]):
        atom_update(dst, src)
        copy(dst.out_energy.linear.weight, src.energy.weight)


def nnp_energy_forces(model, atoms_list, species):
    """Energies (frames,) and forces (atoms, 3) of nnp's backbone, forces as -dE/dx by autograd."""
    from nnp.data.graph import atoms_to_graph

    energies, forces = [], []
    for atoms in atoms_list:
        graph = atoms_to_graph(atoms, species, model.cutoff, torch.float64, with_labels=False)
        pos = graph.pos.clone().requires_grad_(True)
        i, j = graph.edge_index
        energy = model(graph.species, graph.edge_index, pos[j] - pos[i] + graph.shifts).sum()
        forces.append(-torch.autograd.grad(energy, pos)[0])
        energies.append(energy.detach())
    return torch.stack(energies), torch.cat(forces)


def reference_fit(ref_cls, automatic_fit, weights_from, species, batch, workdir: Path, kwargs: dict) -> list:
    """Fit the reference's scale factors with its own AutomaticFit, starting from nnp's (unfitted) weights."""
    scale_file = workdir / "scaling_factors.json"
    scale_file.write_text("{}")
    automatic_fit.set2fitmode()
    # as the authors' fit_scaling.py: direct forces (no gradient; adds force-head factors, not compared)
    ref = ref_cls(**{**kwargs, "direct_forces": True}, scale_file=str(scale_file)).double()
    map_weights(weights_from, ref, species)  # all factors are 1 here
    with torch.no_grad():
        while not automatic_fit.fitting_completed():
            ref(dict(batch))
            automatic_fit.activeVar.fit()
    automatic_fit.fitting_mode = False
    fitted = json.loads(scale_file.read_text())
    blocks = kwargs["num_blocks"]
    names = [f"{kind}_{i}_{what}" for i in range(1, blocks + 1)
             for kind, what in (("TripInteraction", "had_rbf"), ("TripInteraction", "sum_cbf"), ("AtomUpdate", "sum"))]
    names += [f"OutBlock_{i}_sum" for i in range(blocks + 1)]
    return {name: fitted[name] for name in names}  # in nnp's order


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, required=True, help="a clone of TUM-DAML/gemnet_pytorch")
    parser.add_argument("--workdir", type=Path, default=ROOT / "training" / "experiments" / ".gemnet_reference")
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "gemnet_reference.json")
    parser.add_argument("--frames", type=int, default=3, help="frames of each of aspirin and water")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    commit = prepare_reference(args.reference.resolve(), args.workdir.resolve())
    sys.path.insert(0, str(args.workdir.resolve()))
    from gemnet.model.gemnet import GemNet
    from gemnet.model.layers.scaling import AutomaticFit
    from gemnet.training.data_container import DataContainer

    from nnp.models.gemnet_t import GemNetT, fit_scale_factors, scale_factors

    torch.manual_seed(args.seed)
    atoms_list = frames(args.frames)
    species = sorted({s for a in atoms_list for s in a.get_chemical_symbols()}, key=lambda s: atomic_numbers[s])
    model = GemNetT(len(species)).double()  # the authors' MD17 GemNet-T hyperparameters are its defaults
    hyper = dict(num_spherical=7, num_radial=6, num_blocks=4, emb_size_atom=128, emb_size_edge=128,
                 emb_size_trip=64, emb_size_quad=32, emb_size_rbf=16, emb_size_cbf=16, emb_size_sbf=32,
                 emb_size_bil_trip=64, emb_size_bil_quad=32, num_before_skip=1, num_after_skip=1, num_concat=1,
                 num_atom=2, triplets_only=True, direct_forces=False, cutoff=5.0, envelope_exponent=5,
                 extensive=True, output_init="HeOrthogonal", activation="swish")
    batch = reference_batch(DataContainer, atoms_list, 5.0, args.workdir.resolve())
    result = {"reference": "TUM-DAML/gemnet_pytorch", "reference_commit": commit, "frames": len(atoms_list),
              "atoms": int(sum(len(a) for a in atoms_list)), "species": species, "dtype": "float64",
              "patches": [f"{name}: {old.strip()!r} -> {new.strip()!r}" for name, old, new in PATCHES]
              + ["torch_scatter -> scatter_shim.py (index_add sum/mean)"],
              "command": "python " + " ".join(sys.argv)}

    # 1. scale factors: nnp's fit and the reference's AutomaticFit, from the same weights and batch
    ref_fitted = reference_fit(GemNet, AutomaticFit, model, species, batch, args.workdir.resolve(), hyper)
    from nnp.data.graph import atoms_to_graph, edge_vectors
    graphs = [atoms_to_graph(a, species, 5.0, torch.float64, with_labels=False) for a in atoms_list]
    from torch_geometric.data import Batch
    nnp_batch = Batch.from_data_list(graphs)
    fit_scale_factors(model, lambda: model(nnp_batch.species, nnp_batch.edge_index, edge_vectors(nnp_batch)))
    ours = [float(f.scale) for f in scale_factors(model)]
    theirs = [v for k, v in ref_fitted.items()]
    result["scale_factors_nnp"] = ours
    result["scale_factors_reference"] = ref_fitted
    result["scale_factor_max_rel_diff"] = float(np.max(np.abs(np.array(ours) - np.array(theirs)) / np.abs(theirs)))

    # 2. energies and forces with nnp's fitted weights in both
    empty = args.workdir.resolve() / "unit_scales.json"  # every factor starts at 1 and is copied from nnp
    empty.write_text("{}")
    ref = GemNet(**hyper, scale_file=str(empty)).double()
    map_weights(model, ref, species)
    ref_energy, ref_forces = ref(dict(batch))
    ref_energy, ref_forces = ref_energy.detach().squeeze(-1), ref_forces.detach()

    def compare(tag: str) -> None:
        energy, forces = nnp_energy_forces(model, atoms_list, species)
        result[tag] = {"energy_max_abs_diff": float((energy - ref_energy).abs().max()),
                       "force_max_abs_diff": float((forces - ref_forces).abs().max()),
                       "energy_max_abs": float(ref_energy.abs().max()),
                       "force_max_abs": float(ref_forces.abs().max())}
        print(tag, json.dumps(result[tag]))

    compare("nnp_constants_float64")
    # the reference computes the spherical-Bessel roots and their normalisation in float32: copy its
    # constants into nnp, so that what remains is the architecture (float64 throughout)
    from gemnet.model.layers.basis_utils import Jn, Jn_zeros
    zeros = Jn_zeros(7, 6)
    norm = np.stack([1 / np.array([0.5 * Jn(zeros[l, n], l + 1) ** 2 for n in range(6)]) ** 0.5 for l in range(7)])
    basis = model.circular
    result["roots_max_abs_diff"] = float((torch.from_numpy(zeros.astype(np.float64)) - basis.roots).abs().max())
    result["norm_max_rel_diff"] = float((torch.from_numpy(norm.astype(np.float64)) * basis.cutoff ** -1.5
                                         / basis.norm - 1).abs().max())
    basis.roots.copy_(torch.from_numpy(zeros.astype(np.float64)))
    basis.norm.copy_(torch.from_numpy(norm.astype(np.float64)) * basis.cutoff ** -1.5)
    compare("reference_float32_constants")

    # the reference's sympy-generated Bessel functions carry constants combined at float32 precision
    # (sympy keeps numpy float32 inputs at 24-bit precision): evaluate nnp with the reference's radial
    # part of the circular basis, everything else nnp's own
    cbf = ref.cbf_basis3

    def reference_radial(distance: torch.Tensor) -> torch.Tensor:
        x = distance * cbf.inv_cutoff
        values = torch.stack([f(x) for f in cbf.bessel_funcs], 1) * cbf.norm_const
        return (values * cbf.envelope(x)[:, None]).view(-1, 7, 6)

    d = torch.linspace(0.5, 4.99, 1000, dtype=torch.float64)
    ours_radial = model.circular.radial(d)
    result["circular_radial_max_rel_diff"] = float(((ours_radial - reference_radial(d)).abs()
                                                    / reference_radial(d).abs().amax(0)).max())
    model.circular.radial = reference_radial  # eager instance override, this script only
    compare("reference_circular_radial")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"scale factors: max relative difference {result['scale_factor_max_rel_diff']:.3g}")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

"""The C++ evaluator through its binding ``nnp._evaluator`` (the code that LAMMPS and the ASE calculator run)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pathlib import Path

from helpers import water_box
from lammps_models import ase_graph, load_model, metadata, reference_results, write_model

Evaluator = pytest.importorskip("nnp._evaluator").Evaluator
ModelError = pytest.importorskip("nnp._evaluator").ModelError


@pytest.fixture(scope="module")
def ref_model(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp("ev") / "ref.nnp.pt", layers=3, cutoff=3.0)


def graph(atoms, cutoff=3.0):
    return ase_graph(atoms, ["H", "O"], cutoff)


def test_metadata_is_exposed(ref_model):
    ev = Evaluator(str(ref_model))
    assert ev.species == ["H", "O"]
    assert ev.cutoff == 3.0 and ev.num_interactions == 3
    assert ev.dtype == "float64" and ev.direct_forces is False and ev.device == "cpu"
    # a version-1 file: no per-layer halo, receptive field one cutoff per layer
    assert ev.metadata == {**metadata(), "halo": "none", "receptive_hops": "3"}
    assert ev.halo_per_layer is False and ev.receptive_hops == 3
    assert Evaluator(str(write_model(ref_model.with_name("d.nnp.pt"), meta={"forces": "direct"}))).direct_forces


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 1e-4)])
def test_evaluate_equals_torchscript_in_python(tmp_path, dtype, tol):
    path = write_model(tmp_path / f"{dtype}.nnp.pt", dtype=dtype)
    atoms = water_box(seed=31)
    out = Evaluator(str(path)).evaluate(*graph(atoms), len(atoms))
    ref = reference_results(path, atoms)
    assert set(out) == {"energy", "atom_energy", "forces", "virial", "atom_virial"}
    n = len(atoms)
    assert isinstance(out["energy"], float)
    for key, shape in (("atom_energy", (n,)), ("forces", (n, 3)), ("virial", (3, 3)), ("atom_virial", (n, 3, 3))):
        assert out[key].shape == shape and out[key].dtype == np.float64
        np.testing.assert_allclose(out[key], ref[key], rtol=0, atol=tol, err_msg=key)
    assert out["energy"] == pytest.approx(float(ref["energy"]), rel=1e-12 if dtype == "float64" else 1e-6)
    # contract identities: W = sum of atom virials; forces sum to zero (no external field)
    np.testing.assert_allclose(out["atom_virial"].sum(0), out["virial"], atol=100 * tol)
    np.testing.assert_allclose(out["forces"].sum(0), 0.0, atol=100 * tol)


def test_ghost_nodes_are_not_counted(ref_model):
    """num_local < N: energy is the sum of the first num_local atom energies."""
    atoms = water_box(seed=32)
    species, edges, vectors = graph(atoms)
    ev = Evaluator(str(ref_model))
    out = ev.evaluate(species, edges, vectors, 10)
    assert out["energy"] == pytest.approx(out["atom_energy"][:10].sum(), abs=1e-10)
    full = ev.evaluate(species, edges, vectors, len(atoms))
    assert out["energy"] != pytest.approx(full["energy"])


def test_graph_without_edges(ref_model):
    ev = Evaluator(str(ref_model))
    out = ev.evaluate(np.array([0, 1, 1]), np.zeros((2, 0), dtype=np.int64), np.zeros((0, 3)), 3)
    assert np.all(out["forces"] == 0) and np.all(out["virial"] == 0)
    assert out["energy"] == pytest.approx(out["atom_energy"].sum())


def test_inputs_are_validated(ref_model):
    ev = Evaluator(str(ref_model))
    species, edges, vectors = graph(water_box(seed=33))
    n = len(species)
    with pytest.raises(ValueError, match="edge_index must have shape"):
        ev.evaluate(species, edges.T, vectors, n)
    with pytest.raises(ValueError, match="edge_vectors must have shape"):
        ev.evaluate(species, edges, vectors[:-1], n)
    with pytest.raises(ValueError, match="species index out of range"):
        ev.evaluate(species + 5, edges, vectors, n)
    with pytest.raises(ValueError, match="refers to a missing node"):
        ev.evaluate(species[:3], edges, vectors, 3)
    with pytest.raises(ValueError, match="num_local"):
        ev.evaluate(species, edges, vectors, n + 1)


def test_non_finite_outputs_are_located(tmp_path):
    path = write_model(tmp_path / "nan.nnp.pt", nan_species=1)  # every O atom has a NaN energy
    atoms = water_box(seed=34)
    species, edges, vectors = graph(atoms)
    ev = Evaluator(str(path))
    out = ev.evaluate(species, edges, vectors, len(atoms))  # unchecked: NaN comes back as is
    assert np.isnan(out["energy"])
    first_oxygen = int(np.flatnonzero(species == 1)[0])
    with pytest.raises(ModelError, match=f"NaN or infinite energy/force for node {first_oxygen}$"):
        ev.evaluate(species, edges, vectors, len(atoms), check_finite=True)
    good = Evaluator(str(write_model(tmp_path / "ok.nnp.pt")))
    good.evaluate(species, edges, vectors, len(atoms), check_finite=True)


BAD = {
    "format version": ({"meta": {"format_version": "7"}}, "has model format version 7"),
    "units": ({"meta": {"units": "lj"}}, "declares units 'lj'"),
    "dtype": ({"meta": {"dtype": "bfloat16"}}, "declares dtype 'bfloat16'"),
    "forces": ({"meta": {"forces": "both"}}, "declares forces 'both'"),
    "cutoff": ({"meta": {"cutoff": "-1"}}, "must be positive"),
    "num_interactions": ({"meta": {"num_interactions": "three"}}, "is not a number"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_metadata_is_refused(tmp_path, case):
    kwargs, message = BAD[case]
    with pytest.raises(ModelError, match=message):
        Evaluator(str(write_model(tmp_path / "bad.nnp.pt", **kwargs)))


@pytest.mark.parametrize("key", [k for k in metadata() if k != "provenance"])
def test_every_required_metadata_key(tmp_path, key):
    with pytest.raises(ModelError, match=rf"lacks nnp metadata \({key}\)"):
        Evaluator(str(write_model(tmp_path / "bad.nnp.pt", drop=(key,))))


def test_provenance_is_optional(tmp_path):
    assert Evaluator(str(write_model(tmp_path / "p.nnp.pt", drop=("provenance",)))).metadata["provenance"] == ""


def test_missing_corrupt_and_foreign_files(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        Evaluator(str(tmp_path / "missing.nnp.pt"))
    (tmp_path / "junk.nnp.pt").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelError, match="not a TorchScript model file"):
        Evaluator(str(tmp_path / "junk.nnp.pt"))
    good = write_model(tmp_path / "good.nnp.pt").read_bytes()
    (tmp_path / "truncated.nnp.pt").write_bytes(good[: len(good) // 2])
    with pytest.raises(ModelError, match="not a TorchScript model file"):
        Evaluator(str(tmp_path / "truncated.nnp.pt"))
    plain = tmp_path / "plain.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(plain))
    with pytest.raises(ModelError, match="lacks nnp metadata"):
        Evaluator(str(plain))
    ckpt = tmp_path / "checkpoint.pt"
    torch.save({"state_dict": {}}, ckpt)
    with pytest.raises(ModelError, match="not a TorchScript model file"):
        Evaluator(str(ckpt))


def test_device_selection(ref_model):
    with pytest.raises(ModelError, match="unknown device 'tpu'"):
        Evaluator(str(ref_model), "tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="device cuda requested.*use device cpu"):
            Evaluator(str(ref_model), "cuda")


@pytest.mark.cuda
def test_cuda_evaluator_equals_cpu(ref_model):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    atoms = water_box(seed=35)
    args = (*graph(atoms), len(atoms))
    cpu = Evaluator(str(ref_model), "cpu").evaluate(*args)
    gpu = Evaluator(str(ref_model), "cuda:0").evaluate(*args)
    assert Evaluator(str(ref_model), "cuda").device.startswith("cuda")
    for key in ("atom_energy", "forces", "virial", "atom_virial"):
        np.testing.assert_allclose(gpu[key], cpu[key], atol=1e-9, err_msg=key)


def test_python_and_binding_load_the_same_module(ref_model):
    module, meta = load_model(ref_model)
    # the evaluator fills in the version-2 keys a version-1 file lacks
    assert {**meta, "halo": "none", "receptive_hops": meta["num_interactions"]} == Evaluator(str(ref_model)).metadata
    assert hasattr(module, "node_features")


WITHOUT_EXTENSION = """
import importlib.abc, importlib.machinery, sys
class Refuse(importlib.abc.Loader):
    def create_module(self, spec):
        raise ImportError("extension hidden by the test")
    def exec_module(self, module):
        pass
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        return importlib.machinery.ModuleSpec(name, Refuse()) if name == "nnp._evaluator" else None
sys.meta_path.insert(0, Hide())
"""


def test_no_silent_fallback_without_the_extension(tmp_path):
    """Without the C++ extension the evaluator is an error (the Python one only when asked for), and a
    halo model does not export with the identity stand-ins of the halo ops."""
    import subprocess
    import sys

    from helpers import small_model

    from nnp.export import export_model

    model = export_model(small_model(cutoff=3.0), tmp_path / "m.nnp.pt")
    code = WITHOUT_EXTENSION + f"""
from nnp.errors import UserError
from nnp.evaluator import load_evaluator
from nnp.nn import halo
assert halo.IDENTITY_OPS
try:
    load_evaluator({str(model)!r})
except UserError as err:
    assert "C++ extension is not built" in str(err), err
else:
    raise SystemExit("load_evaluator fell back silently")
assert load_evaluator({str(model)!r}, backend="python").species == ["H", "O"]
import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})
from helpers import small_model
from nnp.export import export_model
try:
    export_model(small_model(cutoff=3.0), {str(tmp_path / "x.nnp.pt")!r})
except UserError as err:
    assert "halo" in str(err), err
else:
    raise SystemExit("a halo model exported with identity halo ops")
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]

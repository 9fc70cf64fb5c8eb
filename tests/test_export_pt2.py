"""Compiled model files (.nnp.pt2, torch.export + AOTInductor): same results as TorchScript and Python.

One tiny EGNN is compiled once for the module (AOTInductor takes ~30-90 s of C++ compilation on a busy
2-core box); GNS, PaiNN and a float32 EGNN are compiled only in the slow tests. Without a C++ compiler every test here is skipped with the reason.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import small_model, triclinic_water, water_box
from lammps_helpers import lammps_results, python_results, run_lammps
from nnp import contract
from nnp.evaluator import load_evaluator
from nnp.export import ModelFileError, export_model, load_exported
from nnp.export_pt2 import CompileUnavailable, check_compiler, example_inputs
from nnp.errors import UserError

TOL = 1e-10

try:
    check_compiler()
except CompileUnavailable as err:
    pytest.skip(str(err), allow_module_level=True)


def tiny(kind: str = "egnn"):
    return small_model(kind=kind, cutoff=3.0, layers=3, hidden=8)


@pytest.fixture(scope="module")
def egnn_files(tmp_path_factory):
    """(Python model, TorchScript file, .pt2 file) of one tiny float64 EGNN."""
    tmp = tmp_path_factory.mktemp("pt2")
    model = tiny()
    return model, export_model(model, tmp / "egnn.nnp.pt"), export_model(model, tmp / "egnn.nnp.pt2")


@pytest.fixture(scope="module")
def egnn_cuda_file(request, tmp_path_factory):
    """The same EGNN as a package compiled for CUDA (once: ~40 s of AOTInductor on the GPU machine)."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")  # before the CPU package of egnn_files is compiled
    model = request.getfixturevalue("egnn_files")[0]
    return export_model(model, tmp_path_factory.mktemp("pt2cuda") / "egnn_cuda.nnp.pt2", device="cuda")


def frame():
    species, edge_index, vectors, num_local = example_inputs(2, 3.0, torch.float64)
    return species, edge_index, vectors, int(num_local)


def as_numpy(x) -> np.ndarray:
    return x.detach().double().numpy() if torch.is_tensor(x) else np.asarray(x, dtype=float)


def assert_outputs_close(out: dict, ref: dict, label: str) -> None:
    for key in contract.OUTPUT_KEYS:
        a, b = as_numpy(out[key]), as_numpy(ref[key])
        np.testing.assert_allclose(a, b, atol=TOL, rtol=0, err_msg=f"{label}: {key}")


def test_pt2_equals_torchscript_and_python(egnn_files):
    model, ts_file, pt2_file = egnn_files
    graph = water_box(seed=5)
    from nnp.data.graph import atoms_to_graph, edge_vectors

    g = atoms_to_graph(graph, ["H", "O"], 3.0, torch.float64, with_labels=False)
    inputs = (g.species, g.edge_index, edge_vectors(g).detach(), int(g.num_nodes))
    ref = model(*inputs)
    assert g.edge_index.shape[1] > 50
    for path in (ts_file, pt2_file):
        for label, ev in (("C++", load_evaluator(path)), ("Python", None)):
            if ev is None:
                out = load_exported(path)[0](*inputs)
            else:
                out = ev.evaluate(*(x.numpy() if torch.is_tensor(x) else x for x in inputs))
            assert_outputs_close(out, ref, f"{path.name} via {label}")


def test_pt2_keeps_the_metadata(egnn_files):
    _, ts_file, pt2_file = egnn_files
    ts, pt2 = load_evaluator(ts_file), load_evaluator(pt2_file)
    for key in contract.METADATA_KEYS:
        if key != "provenance":  # holds the export time
            assert pt2.metadata[key] == ts.metadata[key], key
    assert pt2.halo_per_layer and pt2.species == ["H", "O"] and pt2.cutoff == 3.0
    # the compiled program reaches the halo ops through the dispatcher (extern calls, not inlined)
    with zipfile.ZipFile(pt2_file) as package:
        calls = "".join(package.read(n).decode() for n in package.namelist() if n.endswith("wrapper.json"))
    assert all(f'"target": "{op}"' in calls for op in contract.HALO_OPS)


@pytest.mark.parametrize("nodes,edges,num_local", [(0, 0, 0), (1, 0, 1), (2, 1, 2), (2, 1, 1), (3, 2, 1)])
def test_graphs_below_the_compiled_minimum(egnn_files, nodes, edges, num_local):
    """The program's dims start at 2; the evaluator pads smaller graphs with unconnected dummy nodes."""
    model, _, pt2_file = egnn_files
    species = torch.arange(nodes) % 2
    edge_index = torch.tensor([[0, 2], [1, 0]])[:, :edges]
    vectors = torch.tensor([[1.0, 0.2, 0.1], [-0.4, 0.9, 0.3]], dtype=torch.float64)[:edges]
    ref = model(species, edge_index, vectors, num_local)
    out = load_evaluator(pt2_file).evaluate(species.numpy(), edge_index.numpy(), vectors.numpy(), num_local)
    assert np.asarray(out["forces"]).shape == (nodes, 3)
    assert_outputs_close(out, ref, f"{nodes} nodes, {edges} edges")
    assert_outputs_close(load_exported(pt2_file)[0](species, edge_index, vectors, num_local), ref, "Python loader")


@pytest.mark.parametrize("system", ["periodic_water", "triclinic"])
def test_lammps_with_pt2_equals_python(egnn_files, tmp_path, system):
    model, _, pt2_file = egnn_files
    atoms = water_box(seed=10) if system == "periodic_water" else triclinic_water(11)
    lmp, held = run_lammps(atoms, pt2_file, tmp_path, ["H", "O"])
    out, ref = lammps_results(lmp), python_results(pt2_file, held)
    lmp.close()
    assert out["energy"] == pytest.approx(float(ref["energy"]), abs=TOL * len(held))
    for key, tol in (("atom_energy", TOL), ("forces", TOL), ("virial_voigt", 10 * TOL), ("atom_virial_voigt", TOL)):
        np.testing.assert_allclose(out[key], ref[key], atol=tol, rtol=0, err_msg=key)
    # and the .pt2 file's Python result is the model's own (python_results ran the compiled program)
    from nnp.data.graph import atoms_to_graph, edge_vectors

    g = atoms_to_graph(held, ["H", "O"], 3.0, torch.float64, with_labels=False)
    direct = model(g.species, g.edge_index, edge_vectors(g).detach(), int(g.num_nodes))
    np.testing.assert_allclose(ref["forces"], direct["forces"].detach().numpy(), atol=TOL, rtol=0)


@pytest.mark.mpi
def test_two_ranks_equal_one_rank_with_the_pt2_halo_model(egnn_files, tmp_path):
    """The compiled program calls nnp::halo through the dispatcher; on 2 ranks it must exchange features."""
    from test_lammps_mpi import assert_same, run_cases

    _, _, pt2_file = egnn_files
    cases = ["cubic", "empty_rank", "thin"]
    serial = run_cases(pt2_file, tmp_path, 1, cases)
    parallel = run_cases(pt2_file, tmp_path, 2, cases)
    assert "per-layer halo exchange" in parallel["stdout"]
    assert_same(serial, parallel, cases, "pt2 2 ranks")


def test_pt2_has_no_node_features(egnn_files):
    with pytest.raises(UserError, match="only the MD forward.*TorchScript"):
        load_exported(egnn_files[2])[0].node_features(*frame()[:3])


def test_corrupt_pt2_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.nnp.pt2"
    bad.write_bytes(b"not a zip archive at all")
    for load in (load_evaluator, load_exported):
        with pytest.raises(ModelFileError, match="is not a .pt2 model package.*--format pt2"):
            load(bad)


def test_pt2_without_metadata_is_a_clear_error(egnn_files, tmp_path):
    """The same package with the nnp keys dropped from its metadata."""
    _, _, pt2_file = egnn_files
    stripped = tmp_path / "stripped.nnp.pt2"
    with zipfile.ZipFile(pt2_file) as src, zipfile.ZipFile(stripped, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("_metadata.json"):
                text = data.decode()
                for key in contract.METADATA_KEYS:
                    text = text.replace(f'"{key}"', f'"dropped_{key}"')
                data = text.encode()
            dst.writestr(item, data)
    for load in (load_evaluator, load_exported):
        with pytest.raises(ModelFileError, match="lacks nnp metadata.*format_version.*not written by nnp export"):
            load(stripped)


def test_pt2_needs_the_pt2_suffix_and_gemnet_is_refused(tmp_path):
    with pytest.raises(UserError, match="pt2 model file must end in .nnp.pt2"):
        export_model(tiny(), tmp_path / "egnn.nnp.pt", format="pt2")
    with pytest.raises(UserError, match="torchscript model file must end in .nnp.pt, not .pt2"):
        export_model(tiny(), tmp_path / "egnn.nnp.pt2", format="torchscript")
    with pytest.raises(UserError, match="gemnet_t.*cannot be exported as .pt2.*TorchScript"):
        export_model(small_model(kind="gemnet_t", cutoff=3.0, layers=1, hidden=8), tmp_path / "g.nnp.pt2")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["gns", "painn"])
def test_other_halo_models_pt2_equal_python(tmp_path, kind):
    model = tiny(kind)
    path = export_model(model, tmp_path / f"{kind}.nnp.pt2")
    species, edge_index, vectors, num_local = frame()
    ref = model(species, edge_index, vectors, num_local)
    out = load_evaluator(path).evaluate(species.numpy(), edge_index.numpy(), vectors.numpy(), num_local)
    assert_outputs_close(out, ref, kind)


@pytest.mark.slow
def test_float32_pt2_sums_in_float64(tmp_path):
    """As in a TorchScript file: energy and virial float64, per-node outputs float32 (single precision)."""
    model = tiny()
    module, _ = load_exported(export_model(model, tmp_path / "f32.nnp.pt2", dtype="float32"))
    species, edge_index, vectors, num_local = frame()
    out = module(species, edge_index, vectors.float(), num_local)
    ref = model(species, edge_index, vectors, num_local)
    assert out["energy"].dtype == out["virial"].dtype == torch.float64
    assert out["forces"].dtype == out["atom_energy"].dtype == torch.float32
    for key in contract.OUTPUT_KEYS:
        np.testing.assert_allclose(as_numpy(out[key]), as_numpy(ref[key]), atol=1e-4, rtol=1e-5, err_msg=key)


# --- devices: a package runs on the device type it was compiled for (nnp export --format pt2 --device) ---

def deck_output(pt2_file: Path, tmp: Path, style: str) -> str:
    """stdout + stderr of a `run 0` with `style` and the package."""
    from lammps_helpers import run_deck, setup_lines
    from nnp.lammps import write_lammps_data

    data = tmp / "w.data"
    write_lammps_data(water_box(seed=3), data, ["H", "O"])
    lines = setup_lines(data, pt2_file, ["H", "O"])
    lines[lines.index("pair_style nnp")] = style
    done = run_deck("\n".join(lines + ["run 0"]), tmp)
    return done.stdout + done.stderr


def test_pair_style_runs_a_package_on_its_own_device(egnn_files, tmp_path):
    """Without a device keyword a CPU package runs on the CPU, also where a GPU is visible (the GPU check
    runs this there); asking for another device is an error naming the export option that fixes it."""
    _, _, pt2_file = egnn_files
    assert re.search(r"pair_style nnp: egnn model .* on cpu", deck_output(pt2_file, tmp_path, "pair_style nnp"))
    out = deck_output(pt2_file, tmp_path, "pair_style nnp device cuda")
    assert re.search(r"was compiled for cpu but pair_style nnp asks for device cuda: export it again .*"
                     r"--format pt2 --device cpu\|cuda.*pair_style nnp device cpu", out), out[-2000:]


def test_device_is_an_option_of_pt2_only(tmp_path):
    with pytest.raises(UserError, match="--device cuda applies to .pt2 packages only.*runs on any device"):
        export_model(tiny(), tmp_path / "egnn.nnp.pt", device="cuda")
    with pytest.raises(UserError, match="compiled for cpu or cuda, not 'tpu'"):
        export_model(tiny(), tmp_path / "egnn.nnp.pt2", device="tpu")


def test_cuda_package_without_a_gpu_is_a_clear_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: test_cuda_package_equals_the_cpu runs instead")
    with pytest.raises(UserError, match="for cuda needs a CUDA GPU.*--device cpu"):
        export_model(tiny(), tmp_path / "egnn.nnp.pt2", device="cuda")


@pytest.mark.cuda
def test_cuda_package_equals_the_cpu(egnn_cuda_file, egnn_files, tmp_path):
    """A package compiled for cuda: Python and LAMMPS (which picks cuda from the file) equal the CPU
    TorchScript file; asking pair_style nnp for the CPU is an error naming --device cpu."""
    model, ts_file, _ = egnn_files
    cuda_file = egnn_cuda_file
    with pytest.raises(ModelFileError, match="compiled for device 'cuda', not '?cpu'?.*--device cpu"):
        load_exported(cuda_file)
    from nnp.data.graph import atoms_to_graph, edge_vectors

    g = atoms_to_graph(water_box(seed=5), ["H", "O"], 3.0, torch.float64, with_labels=False)
    inputs = (g.species, g.edge_index, edge_vectors(g).detach(), int(g.num_nodes))
    ref = {k: v.detach() for k, v in load_exported(ts_file)[0](*inputs).items()}
    gpu = load_exported(cuda_file, "cuda")[0](*(x.cuda() if torch.is_tensor(x) else x for x in inputs))
    assert_outputs_close({k: v.cpu() for k, v in gpu.items()}, ref, "cuda package in Python")
    for nodes, edges, num_local in [(0, 0, 0), (2, 1, 1)]:  # padded below the compiled minimum on the GPU too
        species = torch.arange(nodes) % 2
        edge_index = torch.tensor([[0, 2], [1, 0]])[:, :edges]
        vectors = torch.tensor([[1.0, 0.2, 0.1], [-0.4, 0.9, 0.3]], dtype=torch.float64)[:edges]
        got = load_evaluator(cuda_file, "cuda").evaluate(species.numpy(), edge_index.numpy(), vectors.numpy(),
                                                         num_local)
        assert_outputs_close(got, model(species, edge_index, vectors, num_local), f"cuda, {nodes} nodes")
    lmp, held = run_lammps(water_box(seed=10), cuda_file, tmp_path, ["H", "O"])
    out, ref = lammps_results(lmp), python_results(ts_file, held)
    lmp.close()
    for key in ("atom_energy", "forces", "atom_virial_voigt"):
        np.testing.assert_allclose(out[key], ref[key], atol=TOL, rtol=0, err_msg=key)
    assert "on cuda" in deck_output(cuda_file, tmp_path, "pair_style nnp")
    assert "export it again" in deck_output(cuda_file, tmp_path, "pair_style nnp device cpu")


@pytest.mark.cuda
@pytest.mark.mpi
def test_two_ranks_on_one_gpu_equal_one_rank_with_the_cuda_package(egnn_cuda_file, tmp_path):
    """The compiled program's nnp::halo calls on a GPU, 2 ranks sharing it."""
    from test_lammps_mpi import assert_same, run_cases

    cuda_file = egnn_cuda_file
    cases = ["cubic", "empty_rank", "thin"]
    serial, parallel = run_cases(cuda_file, tmp_path, 1, cases), run_cases(cuda_file, tmp_path, 2, cases)
    assert "on cuda:0" in parallel["stdout"] and "per-layer halo exchange" in parallel["stdout"]
    assert_same(serial, parallel, cases, "cuda pt2 2 ranks")

"""The exported TorchScript file equals the Python model and carries the contract's metadata."""

import json

import numpy as np
import pytest
import torch

from helpers import ALL_KINDS, predict, small_model, water_box
from nnp import contract
from nnp.calculator import NNPCalculator
from nnp.data.graph import atoms_to_graph, edge_vectors
from nnp.export import ModelFileError, export_model, load_exported


@pytest.fixture(scope="module")
def model():
    return small_model()


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 1e-4)])
def test_exported_file_matches_python_model(kind, tmp_path, dtype, tol):
    model = small_model(kind=kind)
    path = export_model(model, tmp_path / "m.nnp.pt", dtype=dtype, provenance={"note": "test"})
    module, metadata = load_exported(path)
    atoms = water_box(seed=7, cell=np.array([[6.2, 0, 0], [0.4, 6.0, 0], [-0.3, 0.5, 6.4]]))
    graph = atoms_to_graph(atoms, model.species, model.cutoff, torch.float64, with_labels=False)
    ref = predict(model, atoms)
    out = module(graph.species, graph.edge_index, edge_vectors(graph).to(getattr(torch, dtype)), graph.num_nodes)
    assert set(out) == set(contract.OUTPUT_KEYS)
    for key in contract.OUTPUT_KEYS:
        assert out[key].dtype == (torch.float64 if key in contract.FLOAT64_OUTPUTS else getattr(torch, dtype))
        # float32 rounds each sum relative to its largest terms: compare on the scale of the largest value
        scale = 10.0 if dtype == "float64" else max(10.0, float(np.abs(ref[key]).max()))
        np.testing.assert_allclose(out[key].detach().double().numpy(), ref[key], rtol=tol, atol=tol * scale)
    assert metadata["species"] == "H O"
    assert float(metadata["cutoff"]) == model.cutoff
    assert int(metadata["num_interactions"]) == 3
    assert metadata["dtype"] == dtype and metadata["units"] == "metal" and metadata["model_kind"] == kind
    assert metadata["forces"] == ("direct" if kind == "gemnet_dt" else "conservative")
    assert json.loads(metadata["provenance"])["note"] == "test"
    assert set(metadata) == set(contract.METADATA_KEYS)


def test_ghost_atoms_do_not_count_but_send_messages(model, tmp_path):
    """num_local < N: energy sums local atoms only, forces on ghosts are returned for their owners."""
    atoms = water_box(seed=8)
    atoms.pbc = False
    graph = atoms_to_graph(atoms, model.species, model.cutoff, torch.float64, with_labels=False)
    full = model(graph.species, graph.edge_index, edge_vectors(graph), graph.num_nodes)
    part = model(graph.species, graph.edge_index, edge_vectors(graph), 10)
    assert part["energy"].item() == pytest.approx(full["atom_energy"][:10].sum().item(), abs=1e-12)
    assert torch.allclose(part["atom_energy"], full["atom_energy"])
    assert part["forces"][10:].abs().sum() > 0  # ghosts feel the local energy


def test_ase_calculator_uses_the_file(model, tmp_path):
    path = export_model(model, tmp_path / "m.nnp.pt")
    atoms = water_box(seed=9)
    ref = predict(model, atoms)
    atoms.calc = NNPCalculator(path)
    assert type(atoms.calc.evaluator).__module__ == "nnp._evaluator"  # the C++ code LAMMPS runs
    assert atoms.get_potential_energy() == pytest.approx(float(ref["energy"]), abs=1e-10)
    np.testing.assert_allclose(atoms.get_forces(), ref["forces"], atol=1e-10)
    stress = atoms.get_stress(voigt=False)
    np.testing.assert_allclose(stress, -ref["virial"] / atoms.get_volume(), atol=1e-10)


def test_bad_model_files_give_clear_errors(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_exported(tmp_path / "missing.nnp.pt")
    junk = tmp_path / "junk.nnp.pt"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(ModelFileError, match="not a TorchScript model file"):
        load_exported(junk)
    plain = tmp_path / "plain.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(plain))
    with pytest.raises(ModelFileError, match="lacks nnp metadata"):
        load_exported(plain)


def test_python_validates_metadata_with_the_pair_styles_code(tmp_path):
    """One validator: Python's check is read_model_info in pair_nnp/evaluator.cpp, so a file LAMMPS refuses
    is refused in Python with the same message (each case breaks one key of a good file)."""
    from nnp._evaluator import Evaluator, ModelError
    from nnp.export import check_metadata

    path = export_model(small_model(cutoff=3.0), tmp_path / "m.nnp.pt")
    good = load_exported(path)[1]
    assert check_metadata(path, good) == good
    v1 = {**{k: v for k, v in good.items() if k not in ("halo", "receptive_hops")}, "format_version": "1"}
    assert check_metadata(path, v1)["receptive_hops"] == good["num_interactions"]  # version-1 gap filled
    cases = {"units": ("real", "declares units 'real'"), "dtype": ("float16", "declares dtype 'float16'"),
             "cutoff": ("five", "is not a number"), "forces": ("magic", "declares forces 'magic'"),
             "halo": ("sometimes", "declares halo 'sometimes'"), "format_version": ("9", "this nnp reads 1 and 2")}
    for key, (value, message) in cases.items():
        bad = {**good, key: value}
        with pytest.raises(ModelFileError, match=message):
            check_metadata(path, bad)
        module = torch.jit.load(str(path))
        broken = tmp_path / f"bad-{key}.nnp.pt"
        torch.jit.save(module, str(broken), _extra_files=bad)
        with pytest.raises(ModelError, match=message):
            Evaluator(str(broken))
        with pytest.raises(ModelFileError, match=message):
            load_exported(broken)


def test_float32_model_accumulates_energy_and_virial_in_float64(tmp_path):
    """The system sums of a float32 file are float64 sums of its float32 terms (docs/model_contract.md)."""
    model = small_model(kind="egnn")
    path = export_model(model, tmp_path / "m32.nnp.pt", dtype="float32")
    module, _ = load_exported(path)
    atoms = water_box(n_side=4, seed=3)  # 192 atoms of about -150 eV each (reference energies)
    graph = atoms_to_graph(atoms, model.species, model.cutoff, torch.float64, with_labels=False)
    out = module(graph.species, graph.edge_index, edge_vectors(graph).float(), graph.num_nodes)
    assert out["energy"].dtype == torch.float64 and out["virial"].dtype == torch.float64
    assert out["atom_energy"].dtype == torch.float32
    exact = float(out["atom_energy"].detach().double().sum())
    assert abs(float(out["energy"].detach()) - exact) < 1e-9 * abs(exact)

"""The contract is written once per language: python/nnp/contract.py and pair_nnp/contract.h agree."""

import re
from pathlib import Path

import pytest
import torch

from nnp import contract, units

ROOT = Path(__file__).resolve().parents[1]
HEADER = (ROOT / "pair_nnp" / "contract.h").read_text()


def cpp_strings(name: str) -> tuple[str, ...]:
    body = re.search(rf"{name}\[\]\s*=\s*\{{(.*?)\}};", HEADER, flags=re.S).group(1)
    return tuple(re.findall(r'"([^"]*)"', body))


def cpp_enum(name: str) -> tuple[str, ...]:
    body = re.search(rf"enum {name}\s*\{{(.*?)\}};", HEADER, flags=re.S).group(1)
    return tuple(v.strip() for v in body.split(",") if v.strip())


def test_constants_agree():
    assert int(re.search(r"FORMAT_VERSION = (\d+);", HEADER).group(1)) == contract.FORMAT_VERSION
    readable = re.search(r"READABLE_FORMAT_VERSIONS\[\] = \{(.*?)\};", HEADER).group(1)
    assert tuple(int(v) for v in readable.split(",")) == contract.READABLE_FORMAT_VERSIONS
    assert re.search(r'UNITS = "(\w+)";', HEADER).group(1) == contract.UNITS
    assert float(re.search(r"KCAL_PER_MOL_PER_EV = ([0-9.e+-]+);", HEADER).group(1)) == units.KCAL_PER_MOL_PER_EV
    for name in ("MODEL_SUFFIX", "PT2_SUFFIX"):
        assert re.search(rf'{name} = "([^"]+)";', HEADER).group(1) == getattr(contract, name), name
    for name in ("PT2_MIN_NODES", "PT2_MIN_EDGES"):
        assert int(re.search(rf"{name} = (\d+);", HEADER).group(1)) == getattr(contract, name), name
    for name in ("INPUT_KEYS", "OUTPUT_KEYS", "METADATA_KEYS", "METADATA_KEYS_SINCE_V2", "DTYPES", "FORCE_KINDS",
                 "HALO_MODES", "HALO_OPS"):
        assert cpp_strings(name) == getattr(contract, name), name


def test_cpp_enums_index_the_arrays_they_name():
    """The C++ code reads keys as OUTPUT_KEYS[FORCES] etc.: each enum must follow its array's order."""
    pairs = {"Output": ("OUTPUT_KEYS", ""), "Metadata": ("METADATA_KEYS", "META_"), "Dtype": ("DTYPES", ""),
             "ForceKind": ("FORCE_KINDS", ""), "HaloMode": ("HALO_MODES", "HALO_")}
    for enum, (array, prefix) in pairs.items():
        names = tuple(n[len(prefix):].lower() for n in cpp_enum(enum))
        assert names == getattr(contract, array), enum


def test_cpp_code_uses_the_contract_not_literals():
    values = contract.OUTPUT_KEYS + contract.DTYPES + contract.FORCE_KINDS + contract.HALO_MODES
    checks = {"evaluator.cpp": values + contract.METADATA_KEYS, "pair_nnp.cpp": values, "bindings.cpp": values,
              "backend_torchscript.cpp": values + contract.METADATA_KEYS,
              "backend_aoti.cpp": values + contract.METADATA_KEYS}
    for source, keys in checks.items():
        code = (ROOT / "pair_nnp" / source).read_text()
        for key in keys:
            assert f'"{key}"' not in code, f"{source} spells {key!r} instead of using contract.h"


def test_contract_document_names_every_key():
    doc = (ROOT / "docs" / "model_contract.md").read_text()
    for key in contract.METADATA_KEYS + contract.OUTPUT_KEYS + contract.INPUT_KEYS + contract.HALO_MODES:
        assert f"`{key}`" in doc, key
    for op in contract.HALO_OPS:
        assert op in doc, op


def test_binding_reports_metadata(tmp_path):
    from helpers import small_model
    from nnp._evaluator import Evaluator, ModelError
    from nnp.export import export_model

    path = export_model(small_model(cutoff=3.0), tmp_path / "m.nnp.pt")
    evaluator = Evaluator(str(path))
    assert evaluator.species == ["H", "O"] and evaluator.cutoff == 3.0 and evaluator.num_interactions == 3
    assert set(evaluator.metadata) == set(contract.METADATA_KEYS)
    assert evaluator.metadata["format_version"] == str(contract.FORMAT_VERSION)
    assert evaluator.halo_per_layer and evaluator.receptive_hops == 3

    with pytest.raises(ModelError, match="does not exist"):
        Evaluator(str(tmp_path / "missing.nnp.pt"))
    (tmp_path / "junk").write_text("junk")
    with pytest.raises(ModelError, match="not a TorchScript model file"):
        Evaluator(str(tmp_path / "junk"))


# --- the halo operation -------------------------------------------------------------------------------

def test_halo_ops_have_the_contract_schema():
    from nnp.nn.halo import halo  # noqa: F401  (loads the ops)

    for op in contract.HALO_OPS:
        namespace, name = op.split("::")
        schema = str(getattr(getattr(torch.ops, namespace), name).default._schema)
        assert re.fullmatch(rf"{namespace}::{name}\(Tensor \w+, int layer\) -> Tensor", schema), schema


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_halo_is_the_identity_outside_lammps_and_so_is_its_gradient(dtype):
    from nnp.nn.halo import halo

    x = torch.randn(7, 5, dtype=dtype, requires_grad=True)
    y = halo(x, 0)
    assert torch.equal(y, x) and y.data_ptr() != x.data_ptr()  # a new tensor, same values
    weights = torch.randn(7, 5, dtype=dtype)
    (grad,) = torch.autograd.grad((y * y * weights).sum(), x, create_graph=True)
    torch.testing.assert_close(grad, 2 * x * weights)
    (second,) = torch.autograd.grad(grad.sum(), x)  # double backward (training with forces in the loss)
    torch.testing.assert_close(second, 2 * weights)


def test_exported_files_declare_and_call_the_halo(tmp_path):
    from helpers import small_model
    from nnp.export import export_model, load_exported

    expected = {"egnn": ("per_layer", 3), "gns": ("per_layer", 3), "painn": ("per_layer", 3), "gemnet_t": ("none", 7), "gemnet_dt": ("none", 7)}
    for kind, (halo, hops) in expected.items():
        module, meta = load_exported(export_model(small_model(kind=kind, layers=3, hidden=8), tmp_path / f"{kind}.pt"))
        assert (meta["halo"], int(meta["receptive_hops"])) == (halo, hops), kind
        graph = str(module.backbone.node_features.inlined_graph)
        assert ("nnp::halo" in graph) == (halo == "per_layer"), kind


def test_halo_can_be_traced_by_torch_export():
    """A torch.export graph carries the op (its Meta kernel gives shapes), for a future AOTInductor path."""
    from nnp.nn.halo import halo

    class Layer(torch.nn.Module):
        def forward(self, x):
            return halo(2.0 * x, 0) + 1.0

    nodes = torch.export.Dim("nodes", min=2)
    program = torch.export.export(Layer(), (torch.randn(4, 3),), dynamic_shapes={"x": {0: nodes}})
    assert "torch.ops.nnp.halo.default" in str(program.graph_module.code)
    x = torch.randn(6, 3)
    torch.testing.assert_close(program.module()(x), 2.0 * x + 1.0)


def test_cpp_bond_radii_and_scale_are_nnp_chemistry():
    """compute bond/deviation keeps a copy of the covalent radii and the default scale: they must agree."""
    from nnp import chemistry

    code = (ROOT / "pair_nnp" / "compute_bond_deviation.cpp").read_text()
    table = dict(re.findall(r'\{"(\w+)",\s*([0-9.]+)\}', code))
    assert len(table) > 10
    for symbol, radius in table.items():
        assert float(radius) == chemistry.covalent_radius(symbol), symbol
    header = (ROOT / "pair_nnp" / "compute_bond_deviation.h").read_text()
    assert float(re.search(r"double scale = ([0-9.]+);", header).group(1)) == chemistry.BOND_SCALE

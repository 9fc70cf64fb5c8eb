"""The contract is written once per language: python/nnp/contract.py and pair_nnp/contract.h agree."""

import re
from pathlib import Path

from nnp import contract

HEADER = (Path(__file__).resolve().parents[1] / "pair_nnp" / "contract.h").read_text()


def cpp_strings(name: str) -> tuple[str, ...]:
    body = re.search(rf"{name}\[\]\s*=\s*\{{(.*?)\}};", HEADER, flags=re.S).group(1)
    return tuple(re.findall(r'"([^"]*)"', body))


def test_constants_agree():
    assert int(re.search(r"FORMAT_VERSION = (\d+);", HEADER).group(1)) == contract.FORMAT_VERSION
    assert re.search(r'UNITS = "(\w+)";', HEADER).group(1) == contract.UNITS
    for name in ("INPUT_KEYS", "OUTPUT_KEYS", "METADATA_KEYS", "DTYPES", "FORCE_KINDS"):
        assert cpp_strings(name) == getattr(contract, name), name


def test_contract_document_names_every_key():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "model_contract.md").read_text()
    for key in contract.METADATA_KEYS + contract.OUTPUT_KEYS + contract.INPUT_KEYS:
        assert f"`{key}`" in doc, key


def test_binding_reports_metadata(tmp_path):
    from helpers import small_model
    from nnp._evaluator import Evaluator, ModelError
    from nnp.export import export_model

    path = export_model(small_model(cutoff=3.0), tmp_path / "m.nnp.pt")
    evaluator = Evaluator(str(path))
    assert evaluator.species == ["H", "O"] and evaluator.cutoff == 3.0 and evaluator.num_interactions == 3
    assert set(evaluator.metadata) == set(contract.METADATA_KEYS)
    import pytest

    with pytest.raises(ModelError, match="does not exist"):
        Evaluator(str(tmp_path / "missing.nnp.pt"))
    (tmp_path / "junk").write_text("junk")
    with pytest.raises(ModelError, match="not a TorchScript model file"):
        Evaluator(str(tmp_path / "junk"))

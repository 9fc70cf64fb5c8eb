"""The pretrained model that ships with nnp: files and card, by name in LAMMPS and ASE, finetuning, errors."""

import hashlib
import json
import platform
import re
import runpy
import zipfile
from pathlib import Path
from types import SimpleNamespace

import ase.io
import numpy as np
import pytest
from ase import Atoms

from helpers import small_model, water_box
from lammps_helpers import lammps_results, run_lammps
from nnp.calculator import NNPCalculator
from nnp.cli import main
from nnp.data.dataset import load_structures
from nnp.export import export_model, load_exported
from nnp.pretrained import get
from nnp.train.checkpoint import load_checkpoint

NAME = "organic-xtb"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def aspirin():
    return load_structures("bundled:aspirin_xtb_test_small")


def test_bundled_files_load_and_match_their_card():
    model = get(NAME)
    card = model.card
    assert set(card["elements"]) == {"H", "C", "N", "O", "F", "S", "Cl"}
    checkpoint = load_checkpoint(model.checkpoint)
    assert checkpoint["model_init"]["species"] == card["elements"]
    for variant, dtype in (("float64", "float64"), ("float32", "float32")):
        module, metadata = load_exported(model.file(variant))
        assert metadata["species"].split() == card["elements"] and metadata["dtype"] == dtype
        assert float(metadata["cutoff"]) == card["cutoff_A"]
        assert metadata["model_kind"] == card["architecture"]["kind"]
        assert sum(p.numel() for p in module.parameters()) == card["parameters"]
    assert sum(v.numel() for k, v in checkpoint["model"].items() if not k.endswith(("_shift", "reference_energies"))) > 0
    size = sum(model.file(v).stat().st_size for v in card["files"])
    assert size < 20e6  # bundled inside the package: a few MB
    assert model.markdown.exists() and "Known limits" in model.markdown.read_text()
    # the held-out benchmark molecules are listed, and the zero-shot errors on them are measured numbers
    assert {"aspirin", "ethanol", "uracil"} <= set(card["data_card"]["held_out"])
    assert all(0 < z["force_mae_meV_A"] < 2000 for z in card["zero_shot"].values())


def test_bundled_pt2_is_portable_and_equals_the_float32_file(aspirin):
    """The shipped .nnp.pt2 targets x86-64-v3 (AVX2), not the CPU it was built on, and gives the float32
    TorchScript file's energy and forces (by name, through the C++ evaluator, as pair_style nnp would)."""
    model = get(NAME)
    if "pt2" not in model.card["files"]:
        pytest.skip("this bundle ships no .nnp.pt2")
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip(f"the bundled .nnp.pt2 is x86-64 code; this machine is {platform.machine()}")
    pt2 = model.file("pt2")
    with zipfile.ZipFile(pt2) as archive:
        meta = [json.loads(archive.read(n)) for n in archive.namelist() if n.endswith("_metadata.json")]
    assert {m["AOTI_CPU_ISA"] for m in meta} == {"AVX2"}
    atoms = aspirin[0].copy()
    atoms.calc = NNPCalculator(pt2.name)  # a file name on the model search path resolves
    compiled = atoms.get_potential_energy(), atoms.get_forces()
    atoms.calc = NNPCalculator(f"{NAME}-f32")
    assert compiled[0] == pytest.approx(atoms.get_potential_energy(), abs=1e-3)
    np.testing.assert_allclose(compiled[1], atoms.get_forces(), atol=1e-3)


def test_zero_shot_in_lammps_by_name_equals_ase(tmp_path, aspirin):
    atoms = aspirin[0].copy()
    atoms.center(vacuum=8.0)
    elements = ["C", "H", "O"]
    lmp, held = run_lammps(atoms, NAME, tmp_path, elements, boundary="f f f")  # pair_coeff * * organic-xtb C H O
    out = lammps_results(lmp)
    lmp.close()
    held.calc = NNPCalculator(NAME)
    assert out["energy"] == pytest.approx(held.get_potential_energy(), abs=1e-8)
    np.testing.assert_allclose(out["forces"], held.get_forces(), atol=1e-8)
    # and it is a potential for aspirin, not noise: forces within a few hundred meV/Å of xTB
    reference = aspirin[0]
    probe = reference.copy()
    probe.calc = NNPCalculator(NAME)
    assert np.abs(probe.get_forces() - reference.get_forces()).mean() < 0.5


def test_models_list_and_card(capsys):
    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert re.search(rf"^{NAME}\s+H C N O F S Cl\s+5\.0A", listing, flags=re.M)
    assert main(["models", "card", NAME]) == 0
    card = capsys.readouterr().out
    assert card.startswith(f"# {NAME}") and str(get(NAME).file("float64")) in card
    assert main(["models", "card", "no-such-model"]) == 2
    assert "unknown pretrained model 'no-such-model'" in capsys.readouterr().err


def test_finetune_from_the_bundled_name_transfers_every_weight(tmp_path, aspirin):
    data = tmp_path / "mine.extxyz"
    ase.io.write(data, aspirin[:12])
    # learning rate 0: the finetuned file must give the pretrained forces (every weight transferred)
    run = tmp_path / "frozen"
    assert main(["finetune", "--from", NAME, "--data", str(data), "--output-dir", str(run), "--no-progress",
                 "--set", "train.epochs=1", "--set", "train.lr=0.0", "--set", "train.ema_decay=null"]) == 0
    frame = aspirin[20].copy()
    frame.calc = NNPCalculator(run / "model.nnp.pt")
    finetuned = frame.get_forces()
    frame.calc = NNPCalculator(NAME)
    np.testing.assert_allclose(finetuned, frame.get_forces(), atol=1e-5)
    summary = json.loads((run / "results.json").read_text())
    assert summary["species"][:7] == get(NAME).elements
    # the defaults train: a few epochs on 12 frames lower the validation force error
    run = tmp_path / "default"
    assert main(["finetune", "--from", NAME, "--data", str(data), "--output-dir", str(run), "--no-progress",
                 "--set", "train.epochs=3"]) == 0
    config = load_checkpoint(run / "best.ckpt")["config"]
    from nnp.train.finetune import FINETUNE_DEFAULTS

    assert all(config[section][key] == value for section, values in FINETUNE_DEFAULTS.items()
               for key, value in values.items() if key != "epochs")  # the defaults reached the run
    assert config["model"]["kind"] == get(NAME).card["architecture"]["kind"]
    assert (run / "model.nnp.pt").exists()
    # bundled, a warm-started run lists every training stage: the bundled model's, then its own
    bundle = runpy.run_path(str(ROOT / "training" / "organic" / "bundle.py"))
    checkpoint = load_checkpoint(run / "best.ckpt")
    stages, history = bundle["training_stages"](checkpoint, run, SimpleNamespace(train_threads=1, recipe="mine"))
    card, parent = get(NAME).card["training"], load_checkpoint(get(NAME).checkpoint)
    assert sum(s["epochs"] for s in stages[:-1]) == card["epochs"] == parent["epoch"]
    assert sum(s["train_seconds"] for s in stages[:-1]) == pytest.approx(card["train_seconds"])
    assert stages[-1]["epochs"] == checkpoint["epoch"] and stages[-1]["recipe"] == "mine"
    assert stages[-1]["warm_start"] == str(get(NAME).checkpoint)
    assert stages[-1]["warm_start_sha256_8"] == hashlib.sha256(get(NAME).checkpoint.read_bytes()).hexdigest()[:8]
    assert history == [*parent["history"], *checkpoint["history"]]


def test_unknown_elements_and_names_are_one_line_errors(tmp_path, capsys, aspirin):
    silane = Atoms("SiH4", positions=[[0, 0, 0], [0.86, 0.86, 0.86], [-0.86, -0.86, 0.86], [-0.86, 0.86, -0.86],
                                      [0.86, -0.86, -0.86]])
    from ase.calculators.singlepoint import SinglePointCalculator

    silane.calc = SinglePointCalculator(silane, energy=-10.0, forces=np.zeros((5, 3)))
    data = tmp_path / "with_si.extxyz"
    ase.io.write(data, list(aspirin[:3]) + [silane] * 3)
    assert main(["finetune", "--from", NAME, "--data", str(data), "--output-dir", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "element(s) Si not known to" in err and len(err.strip().splitlines()) == 1
    assert main(["finetune", "--from", "no-such-model", "--data", str(data)]) == 2
    assert "unknown pretrained model 'no-such-model'" in capsys.readouterr().err
    assert main(["finetune", "--from", NAME]) == 2  # no --data, no --config
    assert "--data" in capsys.readouterr().err
    silane.center(vacuum=6.0)
    with pytest.raises(Exception, match="element Si"):
        run_lammps(silane, NAME, tmp_path, ["Si", "H"], boundary="f f f")
    with pytest.raises(Exception, match="neither a file nor a bundled model"):
        run_lammps(water_box(seed=1), "no-such-model", tmp_path, ["H", "O"])


def test_models_on_nnp_model_path_resolve_by_name_everywhere(tmp_path, monkeypatch):
    directory = tmp_path / "models"
    path = export_model(small_model(cutoff=3.0, layers=2), directory / "my-water.nnp.pt")
    monkeypatch.setenv("NNP_MODEL_PATH", str(directory))
    atoms = water_box(seed=3)
    lmp, held = run_lammps(atoms, "my-water", tmp_path, ["H", "O"])  # pair_coeff * * my-water H O
    by_name = lammps_results(lmp)
    lmp.close()
    lmp, _ = run_lammps(atoms, path, tmp_path, ["H", "O"])
    by_path = lammps_results(lmp)
    lmp.close()
    np.testing.assert_array_equal(by_name["forces"], by_path["forces"])
    held.calc = NNPCalculator("my-water")
    assert held.calc.evaluator.path == str(path)
    assert held.get_potential_energy() == pytest.approx(by_path["energy"], abs=1e-8)
    assert load_exported("my-water")[1]["species"] == "H O"
    assert NNPCalculator("my-water.nnp.pt").evaluator.path == str(path)  # the file name on the search path
    monkeypatch.setenv("NNP_MODEL_PATH", str(tmp_path / "elsewhere"))
    with pytest.raises(Exception, match="my-water.nnp.pt"):
        NNPCalculator("my-water")


def test_export_from_the_bundled_name_reproduces_the_bundled_file(tmp_path, aspirin):
    out = tmp_path / "mine-f32.nnp.pt"
    assert main(["export", "--checkpoint", NAME, "--output", str(out), "--dtype", "float32"]) == 0
    frame = aspirin[5].copy()
    frame.calc = NNPCalculator(out)
    mine = frame.get_forces()
    frame.calc = NNPCalculator(f"{NAME}-f32")
    np.testing.assert_allclose(mine, frame.get_forces(), atol=1e-6)

"""Training engine: learning happens, checkpoints are atomic, a killed run resumes exactly."""

import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
import yaml
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from nnp.config import ConfigError, config_from_dict, load_config
from nnp.data.dataset import split_indices
from nnp.data.pack import FrameSummary, subset_statistics, summary_table
from nnp.data.graph import edge_vectors
from nnp.export import load_exported
from nnp.train.trainer import Trainer, load_checkpoint, model_for_data, prepare_data, run_training


def emt_dataset(path: Path, n_frames: int = 24, seed: int = 0) -> Path:
    """Rattled Cu/Ni fcc cells labelled with ASE's EMT (a real, cheap many-body potential)."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n_frames):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        symbols = atoms.get_chemical_symbols()
        symbols[k % 4] = "Ni"
        atoms.set_chemical_symbols(symbols)
        atoms.rattle(0.08, seed=int(rng.integers(1 << 30)))
        atoms.calc = EMT()
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")
    return path


def small_config(tmp_path: Path, data: Path, **train) -> dict:
    return {
        "name": "t",
        "output_dir": str(tmp_path / "run"),
        "model": {"kind": "egnn", "cutoff": 3.0, "hidden": 16, "layers": 2, "num_rbf": 8},
        "data": {"path": str(data), "val_fraction": 0.2, "test_fraction": 0.2},
        "train": {"epochs": 4, "batch_size": 4, "lr": 5e-3, "dtype": "float64", "scheduler": "cosine",
                  "warmup_epochs": 1, **train},
    }


def test_config_rejects_unknown_keys(tmp_path):
    with pytest.raises(ConfigError, match="unknown key.*learning_rate.*section 'train'"):
        config_from_dict({"train": {"learning_rate": 1.0}})
    with pytest.raises(ConfigError, match="optimizer"):
        config_from_dict({"train": {"optimizer": "sgd"}})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_numbers_that_yaml_reads_as_strings_are_numbers_and_non_numbers_are_errors(tmp_path):
    # PyYAML reads 3e-3 (no dot) as the string '3e-3', in a file and in --set alike
    path = tmp_path / "run.yaml"
    path.write_text("train: {lr: 3e-3, epochs: 1e3}\n")
    config = load_config(path, ["train.min_lr=1e-6"])
    assert (config.train.lr, config.train.epochs, config.train.min_lr) == (0.003, 1000, 1e-6)
    assert isinstance(config.train.lr, float) and isinstance(config.train.epochs, int)
    with pytest.raises(ConfigError, match="train.lr must be a number, got 'fast'"):
        load_config(path, ["train.lr=fast"])
    with pytest.raises(ConfigError, match="train.epochs must be a whole number, got 2.5"):
        load_config(path, ["train.epochs=2.5"])
    with pytest.raises(ConfigError, match="train.batch_size must be a number, got True"):
        load_config(path, ["train.batch_size=true"])


def test_splits_are_fixed_by_seed_and_disjoint():
    a, b = split_indices(50, 0.1, 0.2, seed=3), split_indices(50, 0.1, 0.2, seed=3)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    every = np.concatenate(list(a.values()))
    assert sorted(every.tolist()) == list(range(50)) and len(a["test"]) == 10 and len(a["val"]) == 5


def test_reference_energies_least_squares():
    from ase import Atoms

    e = {"H": -0.5, "O": -75.0}
    frames = []
    for n_h, n_o in [(2, 1), (1, 1), (4, 2), (0, 2)]:
        atoms = Atoms("H" * n_h + "O" * n_o, positions=np.random.rand(n_h + n_o, 3))
        atoms.calc = SinglePointCalculator(atoms, energy=n_h * e["H"] + n_o * e["O"])
        frames.append(atoms)
    # the one fit nnp uses, packed or in memory: subset_statistics over the summary table
    table = summary_table([FrameSummary.of(atoms, n_edges=0) for atoms in frames])
    stats = subset_statistics(table, np.arange(len(frames)), ["H", "O"])
    np.testing.assert_allclose(stats["reference_energies"], [-0.5, -75.0], atol=1e-10)


def test_training_reduces_error_and_writes_artifacts(tmp_path):
    data = emt_dataset(tmp_path / "emt.extxyz")
    config = config_from_dict(small_config(tmp_path, data, epochs=15, batch_size=2, lr=1e-2))
    prepared = prepare_data(config, progress=False)
    model = model_for_data(config, prepared)
    from nnp.train.trainer import evaluate

    before = evaluate(model, prepared.splits["val"])["forces_rmse"]
    summary = run_training(config, progress=False)
    after = summary["metrics"]["val"]["forces_rmse"]
    assert after < 0.7 * before
    run = config.run_dir
    for name in ("last.ckpt", "best.ckpt", "metrics.csv", "learning_curves.png", "results.json", "model.nnp.pt"):
        assert (run / name).exists(), name
    assert not list(run.glob("*.tmp"))
    assert len((run / "metrics.csv").read_text().splitlines()) == 16
    checkpoint = load_checkpoint(run / "last.ckpt")
    assert checkpoint["epoch"] == 15
    # the energy shift is refitted to the trained model: no mean energy error left on the training frames
    module, _ = load_exported(summary["model_file"])
    errors = [float(module(g.species, g.edge_index, edge_vectors(g), g.num_nodes)["energy"].detach() - g.energy.sum())
              for g in prepared.splits["train"]]
    assert abs(np.mean(errors)) < 1e-8


def test_stress_labels_are_trained_and_reported_as_nnp_evaluate_reports_them(tmp_path):
    """Strained EMT cells with stress labels and train.stress_weight: the validation stress error falls, and the
    trainer's stress and pressure errors equal those nnp evaluate's code finds with the exported file on the same
    validation frames (one definition: six Voigt components, pressure = -trace/3, eV/Å³); the training loss weighs
    the stress as the validation loss does."""
    from torch_geometric.data import Batch

    from nnp.train.evaluate import evaluate_model_file
    from nnp.train.tasks import EnergyForceTask
    from nnp.train.trainer import evaluate

    rng = np.random.default_rng(0)
    frames = []
    for _ in range(24):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
        atoms.set_cell(atoms.cell[:] @ (np.eye(3) + rng.normal(0.0, 0.02, (3, 3))), scale_atoms=True)
        atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
        atoms.calc = EMT()
        labels = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(), "stress": atoms.get_stress()}
        atoms.calc = SinglePointCalculator(atoms, **labels)
        frames.append(atoms)
    ase.io.write(tmp_path / "strained.extxyz", frames, format="extxyz")
    config = config_from_dict(small_config(tmp_path, tmp_path / "strained.extxyz", epochs=15, batch_size=2, lr=1e-2,
                                           stress_weight=100.0))
    prepared = prepare_data(config, progress=False)
    model = model_for_data(config, prepared)
    before = evaluate(model, prepared.splits["val"])
    # the training loss and the validation loss that picks the best epoch are one quantity
    task = EnergyForceTask(config.train, augment_rotations=False)
    val_set = prepared.splits["val"]
    batch = Batch.from_data_list([val_set.graph(k) for k in range(len(val_set))])
    trained_on = float(task.loss(model, batch).detach())
    validated_on = task.summarize(task.evaluate_batch(model, batch))["loss"]
    assert trained_on == pytest.approx(validated_on, rel=1e-9)
    summary = run_training(config, progress=False)
    after = summary["metrics"]["val"]
    assert after["stress_mae"] < 0.7 * before["stress_mae"] and after["pressure_mae"] < before["pressure_mae"]
    val = split_indices(len(frames), 0.2, 0.2, config.data.split_seed)["val"]
    exported = evaluate_model_file(summary["model_file"], [frames[k] for k in val])
    for key in ("stress_mae", "stress_rmse", "pressure_mae", "forces_mae"):
        assert exported[key] == pytest.approx(after[key], rel=1e-6), key
    assert "S MAE" in summary["table"]


@pytest.mark.parametrize("kind", ["gns", "gemnet_t", "gemnet_dt"])
def test_every_architecture_trains_and_exports_with_the_same_code(tmp_path, kind):
    data = emt_dataset(tmp_path / "emt.extxyz", n_frames=12)
    cfg = small_config(tmp_path, data, epochs=3)
    cfg["model"] = {"kind": kind, "cutoff": 3.0, "hidden": 16, "layers": 2, "emb_trip": 8, "emb_rbf": 8,
                    "emb_cbf": 8, "num_spherical": 3, "num_radial": 4}
    summary = run_training(config_from_dict(cfg), progress=False)
    checkpoint = load_checkpoint(tmp_path / "run" / "last.ckpt")
    history = checkpoint["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    if kind == "gemnet_t":  # the engine fitted GemNet-T's scale factors on the data before training
        from nnp.models.gemnet_t import needs_scale_fit, scale_factors
        from nnp.train.checkpoint import model_from_checkpoint

        backbone = model_from_checkpoint(checkpoint).backbone
        assert not needs_scale_fit(backbone) and all(float(f.scale) != 1.0 for f in scale_factors(backbone))
    from nnp.export import load_exported

    _, metadata = load_exported(summary["model_file"])
    assert metadata["model_kind"] == kind


def test_time_limit_stops_before_an_epoch_that_would_overrun(tmp_path):
    data = emt_dataset(tmp_path / "emt.extxyz", n_frames=12)
    config = config_from_dict(small_config(tmp_path, data, epochs=50, time_limit_minutes=1e-6))
    prepared = prepare_data(config, progress=False)
    trainer = Trainer(config, model_for_data(config, prepared), prepared, progress=False)
    fit = trainer.fit()
    assert fit == {"epochs": 1, "stopped_by": "time limit", "best_val_loss": fit["best_val_loss"]}
    assert (config.run_dir / "best.ckpt").exists()
    # a limit shorter than an epoch stops inside it, after one step (the limit is 60 µs: any step is longer, on any load), not at the epoch's end
    assert len(trainer.loader) > 1 and trainer.history[0]["epoch_fraction"] == 1 / len(trainer.loader)


def test_cpu_limit_stops_on_this_process_cpu_time_and_counts_resumed_epochs(tmp_path):
    """A CPU budget stops like the wall-clock one, on the process's CPU seconds (recorded per epoch), and a
    resumed run counts the CPU its checkpoint's epochs already spent."""
    from nnp.train.checkpoint import save_atomic

    data = emt_dataset(tmp_path / "emt.extxyz", n_frames=12)
    fit = partial(_fit, tmp_path, data)
    assert fit(epochs=50, cpu_limit_minutes=1e-5)["stopped_by"] == "cpu limit"  # one epoch costs more
    last = tmp_path / "run" / "last.ckpt"
    checkpoint = load_checkpoint(last)
    assert checkpoint["epoch"] == 1 and checkpoint["history"][0]["cpu_seconds"] > 0
    checkpoint["history"] = [{**row, "cpu_seconds": 2000.0} for row in checkpoint["history"]]
    save_atomic(checkpoint, last)
    resumed = fit(epochs=50, cpu_limit_minutes=30)  # 2,000 CPU s spent of 1,800: a resume trains one epoch
    assert (resumed["epochs"], resumed["stopped_by"]) == (2, "cpu limit")
    with pytest.raises(ConfigError, match=r"train.cpu_limit_minutes must be positive"):
        config_from_dict(small_config(tmp_path / "bad", data, cpu_limit_minutes=0))


def _final_parameters(run_dir: Path) -> dict:
    return load_checkpoint(run_dir / "last.ckpt")["model"]


def test_killed_run_resumes_to_the_same_result(tmp_path):
    data = emt_dataset(tmp_path / "emt.extxyz", n_frames=40)
    straight = tmp_path / "straight"
    straight.mkdir()
    cfg = small_config(straight, data, epochs=5)
    config = config_from_dict(cfg)
    prepared = prepare_data(config, progress=False)
    Trainer(config, model_for_data(config, prepared), prepared, progress=False).fit()

    killed = tmp_path / "killed"
    killed.mkdir()
    cfg_path = killed / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(small_config(killed, data, epochs=5)))
    command = [sys.executable, "-m", "nnp.cli", "train", "--config", str(cfg_path), "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = killed / "run" / "last.ckpt"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if last.exists() and load_checkpoint(last)["epoch"] >= 2:
            break
        time.sleep(0.05)
    assert process.poll() is None, "training finished before it could be interrupted"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    interrupted_at = load_checkpoint(last)["epoch"]
    assert 2 <= interrupted_at < 5
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    resumed, reference = _final_parameters(killed / "run"), _final_parameters(straight / "run")
    for key in reference:
        torch.testing.assert_close(resumed[key], reference[key], rtol=0, atol=1e-10)


def _fit(tmp_path: Path, data, **train) -> dict:
    """One training run in ``tmp_path/run`` (resumed if it holds last.ckpt) with ``train`` overrides."""
    config = config_from_dict(small_config(tmp_path, data, **train))
    prepared = prepare_data(config, progress=False)
    return Trainer(config, model_for_data(config, prepared), prepared, progress=False).fit()


def test_a_run_resumes_only_under_its_own_settings(tmp_path):
    """Resuming a last.ckpt under another recipe would continue the old weights and optimiser state as if
    they were the new run's: an error; a longer or time-limited continuation of the same run is fine."""
    from nnp.errors import UserError

    data = emt_dataset(tmp_path / "emt.extxyz", n_frames=12)
    fit = partial(_fit, tmp_path, data)
    assert fit(epochs=1)["epochs"] == 1
    with pytest.raises(UserError, match=r"other settings \(train.lr: 0.005 -> 0.01\).*another output_dir"):
        fit(epochs=2, lr=1e-2)
    assert fit(epochs=2, time_limit_minutes=30)["epochs"] == 2  # the same run, continued


def test_time_limit_counts_the_epochs_a_resumed_run_already_spent(tmp_path):
    """A killed run resumed with the same limit must not get the whole limit again. Its checkpoint says two
    epochs took 1,000 s each; resumed under a 30 min limit, it trains one epoch (a resume always trains one)."""
    from nnp.train.checkpoint import save_atomic

    data = emt_dataset(tmp_path / "emt.extxyz", n_frames=12)
    fit = partial(_fit, tmp_path, data)
    assert fit(epochs=2)["epochs"] == 2
    last = tmp_path / "run" / "last.ckpt"
    checkpoint = load_checkpoint(last)
    checkpoint["history"] = [{**row, "seconds": 1000.0} for row in checkpoint["history"]]
    save_atomic(checkpoint, last)
    resumed = fit(epochs=50, time_limit_minutes=30)
    assert (resumed["epochs"], resumed["stopped_by"]) == (3, "time limit")


def _typed_strained_frames(path: Path, types: list) -> Path:
    """Strained, rattled EMT Cu cells with energy, forces and stress, ``info["config_type"]`` from ``types``
    (None: no type) in turn."""
    rng = np.random.default_rng(3)
    frames = []
    for k in range(12):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.set_cell(atoms.cell[:] @ (np.eye(3) + rng.normal(0.0, 0.02, (3, 3))), scale_atoms=True)
        atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
        atoms.calc = EMT()
        labels = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(), "stress": atoms.get_stress()}
        atoms.calc = SinglePointCalculator(atoms, **labels)
        if types[k % len(types)] is not None:
            atoms.info["config_type"] = types[k % len(types)]
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")
    return path


def test_config_type_weights_scale_each_frames_energy_force_and_stress_terms(tmp_path):
    """train.config_type_weights: a frame's weight is that of its config_type (1 without one); the loss is linear in
    the weights with every term of a frame (energy, forces, stress) scaled by its weight, all-ones weights give the
    unweighted loss exactly, and the validation loss is the same quantity while the metrics stay unweighted."""
    from torch_geometric.data import Batch

    from nnp.train.tasks import EnergyForceTask

    data = _typed_strained_frames(tmp_path / "typed.extxyz", ["a", "b", None])
    weights = {"a": 0.3, "b": 2.5}
    config = config_from_dict(small_config(tmp_path, data, stress_weight=10.0, config_type_weights=weights))
    prepared = prepare_data(config, progress=False)
    frames = ase.io.read(data, ":")
    train = prepared.splits["train"]
    for position, k in enumerate(train.indices):
        assert float(train.graph(position).weight) == weights.get(frames[k].info.get("config_type"), 1.0)
    model = model_for_data(config, prepared)
    task = EnergyForceTask(config.train, augment_rotations=False)
    batch = Batch.from_data_list([train.graph(p) for p in range(len(train))])

    def loss(weight):
        batch.weight = torch.as_tensor(weight, dtype=torch.float64)
        return float(task.loss(model, batch).detach())

    unweighted = config_from_dict(small_config(tmp_path, data, stress_weight=10.0))
    plain = Batch.from_data_list([prepare_data(unweighted, progress=False).splits["train"].graph(p)
                                  for p in range(len(train))])
    assert not hasattr(plain, "weight")
    n = len(train)
    assert loss(np.ones(n)) == pytest.approx(float(task.loss(model, plain).detach()), rel=1e-12)
    alone = [loss(np.eye(n)[f]) for f in range(n)]  # each frame's own terms
    assert min(alone) > 0
    w = np.random.default_rng(0).uniform(0, 3, n)
    assert loss(w) == pytest.approx(float(np.dot(w, alone)), rel=1e-10)
    assert loss(np.ones(n)) == pytest.approx(sum(alone), rel=1e-10)
    # the validation loss that picks the best epoch is the training loss, weights included; the metrics are not weighted
    trained = loss(w)  # batch.weight is now w
    validated = task.summarize(task.evaluate_batch(model, batch))
    assert validated["loss"] == pytest.approx(trained, rel=1e-9)
    assert validated["forces_rmse"] == pytest.approx(task.summarize(task.evaluate_batch(model, plain))["forces_rmse"])


def test_config_type_weights_errors_and_finetuning_does_not_inherit_them(tmp_path):
    """A type no frame has (a misspelling) is an error that says so, in a file or a pack (which keeps each frame's type
    and gives it the same weight); a finetune of a checkpoint trained with weights starts without them (they belong
    to that run's data)."""
    from nnp.data.errors import DatasetError
    from nnp.data.info import dataset_info
    from nnp.data.pack import pack_dataset
    from nnp.train.finetune import finetune_config

    data = _typed_strained_frames(tmp_path / "typed.extxyz", ["contact", None])
    assert "config types: contact (6), untyped (6)" in dataset_info(str(data))  # what a user checks names against
    with pytest.raises(DatasetError, match=r"names 'contcat', which no frame .* \(types present: contact\)"):
        prepare_data(config_from_dict(small_config(tmp_path, data, config_type_weights={"contcat": 0.5})),
                     progress=False)
    # a pack keeps each frame's type and counts them: the same weights, the same checks
    pack_dataset([data], tmp_path / "pack", progress=False)
    assert "config types: contact (6), untyped (6)" in dataset_info(str(tmp_path / "pack"))
    weighted = {"contact": 0.5}
    in_memory = prepare_data(config_from_dict(small_config(tmp_path, data, config_type_weights=weighted)),
                             progress=False)
    packed = prepare_data(config_from_dict(small_config(tmp_path, tmp_path / "pack", config_type_weights=weighted)),
                          progress=False)
    for name, split in in_memory.splits.items():
        assert [float(split.graph(p).weight) for p in range(len(split))] == [
            float(packed.splits[name].graph(p).weight) for p in range(len(split))]
    assert {float(g.weight) for s in packed.splits.values() for g in map(s.graph, range(len(s)))} == {0.5, 1.0}
    with pytest.raises(DatasetError, match=r"names 'contcat'.*types present: contact\).*pack the data again"):
        prepare_data(config_from_dict(small_config(tmp_path, tmp_path / "pack", config_type_weights={"contcat": 1})),
                     progress=False)
    summary = run_training(config_from_dict(small_config(tmp_path, data, epochs=1, config_type_weights={"contact": 0.5})),
                           progress=False)
    assert summary["epochs"] == 1
    untyped = emt_dataset(tmp_path / "emt.extxyz", n_frames=8)
    again = finetune_config(tmp_path / "run" / "best.ckpt", str(untyped))
    assert again.train.config_type_weights == {}
    prepare_data(again, progress=False)  # no contact frames, and no error

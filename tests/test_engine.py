"""The training engine at scale: declared heads, freezing, packed = in-memory, DDP over torchrun, CUDA."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from helpers import ALL_KINDS, small_model
from nnp.config import config_from_dict
from nnp.data.pack import pack_dataset
from nnp.models.potential import is_head
from nnp.train.checkpoint import load_checkpoint
from nnp.train.finetune import parameter_groups, split_parameters
from nnp.train.loader import GlobalBatchSampler, make_loader
from nnp.train.trainer import model_for_data, prepare_data, run_training
from test_training import emt_dataset, small_config

GEMNET = {"kind": "gemnet_t", "cutoff": 3.0, "hidden": 16, "layers": 2, "emb_trip": 8, "emb_rbf": 8, "emb_cbf": 8,
          "num_spherical": 3, "num_radial": 4}
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_architecture_declares_its_head(kind):
    model = small_model(kind=kind)
    backbone, head = split_parameters(model)
    assert backbone and head
    declared = model.head_prefixes()
    names = [name for name, _ in model.named_parameters()]
    for prefix in declared:  # each declared module exists and holds parameters
        assert any(is_head(name, (prefix,)) for name in names), prefix
    assert sum(p.numel() for p in backbone + head) == sum(p.numel() for p in model.parameters())
    groups = parameter_groups(model, lr=1e-3, backbone_lr_factor=0.1)
    assert [g["lr"] for g in groups] == pytest.approx([1e-4, 1e-3])
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in head}


def _finetune_from_trained(tmp_path, model_section, finetune):
    """Train 1 epoch from scratch, then finetune 1 epoch from it; return (source, finetuned) weights."""
    data = emt_dataset(tmp_path / "emt.extxyz", n_frames=12)
    cfg = small_config(tmp_path / "a", data, epochs=1)
    cfg["model"] = model_section
    run_training(config_from_dict(cfg), progress=False)
    source = load_checkpoint(tmp_path / "a" / "run" / "best.ckpt")
    fine = small_config(tmp_path / "b", data, epochs=1)
    fine["model"] = model_section
    fine["finetune"] = {"from_checkpoint": str(tmp_path / "a" / "run" / "best.ckpt"), **finetune}
    run_training(config_from_dict(fine), progress=False)
    return source["model"], load_checkpoint(tmp_path / "b" / "run" / "last.ckpt")["model"]


def _changed(before: dict, after: dict, head: tuple[str, ...]) -> tuple[set, set]:
    """Backbone and head parameter names whose values changed."""
    moved = {k for k in before if k.startswith("backbone.") and not torch.equal(before[k], after[k])}
    return {k for k in moved if not is_head(k, head)}, {k for k in moved if is_head(k, head)}


def test_frozen_gemnet_backbone_still_trains_its_head(tmp_path):
    """GemNet has no `readout`: freezing must still leave its output blocks trainable."""
    source, tuned = _finetune_from_trained(tmp_path, GEMNET, {"freeze_backbone_epochs": 1, "reinit_readout": False})
    head = small_model(kind="gemnet_t").head_prefixes()
    backbone_moved, head_moved = _changed(source, tuned, head)
    assert not backbone_moved
    assert head_moved


def test_backbone_lr_factor_scales_the_backbone_only(tmp_path):
    """A zero backbone learning rate keeps the backbone (AdamW: no decay either) while the head learns."""
    source, tuned = _finetune_from_trained(tmp_path, GEMNET, {"backbone_lr_factor": 0.0, "reinit_readout": False})
    backbone_moved, head_moved = _changed(source, tuned, small_model(kind="gemnet_t").head_prefixes())
    assert not backbone_moved and head_moved


def _packed_and_in_memory(tmp_path):
    data = emt_dataset(tmp_path / "emt.extxyz", n_frames=30)
    pack = pack_dataset([data], tmp_path / "emt.pack", cutoff=3.0, progress=False)
    configs = {}
    for name, path in (("memory", data), ("pack", pack)):
        configs[name] = config_from_dict(small_config(tmp_path / name, path, epochs=2))
    return configs


def test_packed_dataset_gives_the_same_graphs_batches_and_statistics(tmp_path):
    configs = _packed_and_in_memory(tmp_path)
    prepared = {name: prepare_data(config, progress=False) for name, config in configs.items()}
    memory, packed = prepared["memory"], prepared["pack"]
    assert memory.species == packed.species
    assert packed.splits["train"].cached is None and memory.splits["train"].cached is not None
    for field in ("reference_energies", "force_scale", "avg_num_neighbors"):
        torch.testing.assert_close(torch.tensor(getattr(packed.statistics, field)),
                                   torch.tensor(getattr(memory.statistics, field)), rtol=1e-10, atol=1e-10)
    batches = {}
    for name, data in prepared.items():
        sampler = GlobalBatchSampler(len(data.splits["train"]), 4, seed=3)
        sampler.set_epoch(1)
        batches[name] = list(make_loader(data.splits["train"], sampler, num_workers=2 if name == "pack" else 0,
                                         pin_memory=False))
    assert len(batches["memory"]) == len(batches["pack"]) > 1
    for a, b in zip(batches["memory"], batches["pack"]):
        for key in ("pos", "species", "edge_index", "shifts", "cell", "energy", "forces", "batch"):
            assert torch.equal(getattr(a, key), getattr(b, key)), key
    # the same model (same statistics) from both
    for (key, a), b in zip(model_for_data(configs["memory"], memory).state_dict().items(),
                           model_for_data(configs["pack"], packed).state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=key)


def _torchrun(procs: int, config: Path) -> list[str]:
    # torch.distributed.run is what the torchrun script calls; the script may live in another venv's bin
    # (a venv with --system-site-packages over the machine's torch), the module is wherever torch is
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}", "-m", "nnp.cli", "train", "--config",
            str(config), "--no-progress"]


@pytest.mark.slow
def test_torchrun_on_a_pack_equals_one_process_and_resumes_after_sigkill(tmp_path):
    data = emt_dataset(tmp_path / "emt.extxyz", n_frames=40)
    pack = pack_dataset([data], tmp_path / "emt.pack", cutoff=3.0, progress=False)

    def config(name: str, epochs: int) -> Path:
        (tmp_path / name).mkdir()
        cfg = small_config(tmp_path / name, pack, epochs=epochs, batch_size=4, scheduler="none")
        cfg["train"]["num_workers"] = 1
        path = tmp_path / name / "config.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    one = subprocess.run(_torchrun(1, config("one", 5)), capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    reference = load_checkpoint(tmp_path / "one" / "run" / "last.ckpt")["model"]

    command = _torchrun(2, config("two", 5))
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    last = tmp_path / "two" / "run" / "last.ckpt"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if last.exists() and load_checkpoint(last)["epoch"] >= 2:
            break
        time.sleep(0.05)
    assert process.poll() is None, "training finished before it could be interrupted"
    os.killpg(process.pid, signal.SIGKILL)  # torchrun and both workers
    process.wait()
    assert 2 <= load_checkpoint(last)["epoch"] < 5
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    two = load_checkpoint(last)
    assert two["epoch"] == 5
    for key, value in reference.items():
        torch.testing.assert_close(two["model"][key], value, rtol=1e-7, atol=1e-9, msg=key)


@CUDA
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_runs_on_the_gpu(tmp_path, dtype):
    data = emt_dataset(tmp_path / "emt.extxyz", n_frames=12)
    cfg = small_config(tmp_path, data, epochs=2, dtype=dtype, device="cuda")
    summary = run_training(config_from_dict(cfg), progress=False)
    history = load_checkpoint(tmp_path / "run" / "last.ckpt")["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert summary["metrics"]["test"]["forces_rmse"] < 10


@CUDA
@pytest.mark.cuda
def test_gpu_training_equals_cpu_training_in_float64(tmp_path):
    data = emt_dataset(tmp_path / "emt.extxyz", n_frames=12)
    weights = {}
    for device in ("cpu", "cuda"):
        cfg = small_config(tmp_path / device, data, epochs=2, device=device)
        run_training(config_from_dict(cfg), progress=False)
        weights[device] = load_checkpoint(tmp_path / device / "run" / "last.ckpt")["model"]
    for key, value in weights["cpu"].items():
        torch.testing.assert_close(weights["cuda"][key], value, rtol=1e-5, atol=1e-7, msg=key)


@CUDA
@pytest.mark.cuda
def test_ddp_with_one_gpu(tmp_path):
    data = emt_dataset(tmp_path / "emt.extxyz", n_frames=12)
    cfg = small_config(tmp_path, data, epochs=2, device="cuda")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    done = subprocess.run(_torchrun(1, path), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert load_checkpoint(tmp_path / "run" / "last.ckpt")["epoch"] == 2

"""Run configuration: YAML -> validated dataclasses (unknown keys are errors, not silently ignored)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError


class ConfigError(UserError):
    """A configuration file or dictionary is invalid."""


@dataclass
class ModelConfig:
    """Architecture. ``hidden``/``layers`` are the width and number of message-passing blocks of
    every model; the ``emb_*``/``num_*``/``envelope_exponent`` keys are GemNet's (``emb_bil_trip``,
    ``num_before_skip``, ``num_after_skip``, ``num_concat``, ``num_atom`` and ``envelope_exponent`` only
    GemNet-T's; defaults are the authors' MD17 values)."""

    kind: str = "egnn"  # egnn | gns | painn | gemnet_t | gemnet_dt
    cutoff: float = 5.0
    hidden: int = 64
    layers: int = 3
    num_rbf: int = 16
    update_vectors: bool = True  # egnn: EGNN coordinate updates on edge vectors
    emb_trip: int = 64
    emb_rbf: int = 16
    emb_cbf: int = 16
    num_spherical: int = 7
    num_radial: int = 6
    emb_bil_trip: int = 64
    num_before_skip: int = 1
    num_after_skip: int = 1
    num_concat: int = 1
    num_atom: int = 2
    envelope_exponent: int = 5


@dataclass
class DataConfig:
    path: str = "bundled:water_tip3p_small"
    format: str | None = None
    # where an extxyz/ASE-db file keeps its labels when not under ASE's names (MACE: REF_energy, REF_forces, REF_stress)
    energy_key: str = "energy"
    forces_key: str = "forces"
    stress_key: str = "stress"
    max_frames: int | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    split_seed: int = 0

    @property
    def label_keys(self):
        from .data.readers import LabelKeys

        return LabelKeys(self.energy_key, self.forces_key, self.stress_key)


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 4
    optimizer: str = "adamw"  # adam | adamw
    lr: float = 1e-3
    weight_decay: float = 0.0
    scheduler: str = "plateau"  # plateau | cosine | none
    scheduler_patience: int = 5
    scheduler_factor: float = 0.5
    warmup_epochs: int = 0
    min_lr: float = 1e-6
    energy_weight: float = 1.0
    force_weight: float = 10.0
    stress_weight: float = 0.0
    # per-frame loss weight by the frame's info["config_type"] (frames without one, or of a type not named: 1);
    # e.g. {contact: 0.3} for `nnp data contacts` frames. The training and validation loss; metrics stay unweighted
    config_type_weights: dict[str, float] = field(default_factory=dict)
    grad_clip: float | None = 10.0
    early_stopping_patience: int = 30
    time_limit_minutes: float | None = None  # the run's total training time, resumed epochs included
    # the run's total CPU time in this process (all its threads, not DataLoader workers), resumed epochs
    # included: a budget that a shared machine's load does not shrink (equal-compute comparisons)
    cpu_limit_minutes: float | None = None
    rotation_augmentation: bool | None = None  # None: on for models that are not rotation invariant (gns)
    ema_decay: float | None = None  # e.g. 0.999: validate, checkpoint-select and export the EMA weights
    seed: int = 0
    dtype: str = "float32"
    device: str = "auto"  # auto (CUDA when available) | cpu | cuda; under torchrun: GPU LOCAL_RANK
    num_workers: int | None = None  # DataLoader workers; None: 0 for in-memory data, up to 4 for packs
    tf32: bool = False  # CUDA only: TF32 matrix products for float32 models (see docs/training.md)
    refit_energy_shift: bool = True  # refit the per-atom energy shift after every epoch (docs/training.md)


@dataclass
class PretrainConfig:
    """Self-supervised pretraining (``nnp pretrain``); see :mod:`nnp.pretrain.masking` for the paper's choices."""

    task: str = "masked"  # masked | denoise | masked+denoise
    target: str = "force"  # force: the potential's own force (-dE/dx; GemNet-dT: its force head), every weight
    #                        transfers | vector_head: a separate vector head on the backbone's features (dropped)
    mask_embedding: bool = True  # target force: learned embedding added to every atom's input (2 rows: atoms of
    #                              intact molecules / remaining atoms of masked molecules); never in the potential
    mask_ratio: float = 0.5  # masked molecules per frame = floor(ratio x molecules with >= 2 atoms + 0.5), >= 1
    mask_heavy: bool = False  # also hide heavy atoms, not only hydrogens
    distance_weight: float = 0.0  # extra term on the length of the predicted vector
    noise_sigma: float = 0.04  # Å (0.2 is the other literature value; the paper's water runs used 1.0)
    noise_target: str = "eps"  # eps: predict the unit noise eps | displacement: predict sigma x eps in Å (paper)
    denoise_weight: float = 1.0  # weight of the noise term in masked+denoise
    bond_scale: float = 1.2  # bonds: d < bond_scale * (r_cov_i + r_cov_j)


@dataclass
class FinetuneConfig:
    """Finetuning from a pretrained checkpoint (``nnp finetune --from``)."""

    from_checkpoint: str | None = None
    reinit_readout: bool | None = None  # re-initialise the energy readout; None: no for a force-target
    #                                     pretraining checkpoint (every weight transfers), yes otherwise
    freeze_backbone_epochs: int = 0  # train only the head (and readout) for this many epochs
    backbone_lr_factor: float = 1.0  # backbone learning rate = factor x train.lr
    allow_new_elements: bool = False  # elements the pretrained model never saw get fresh embeddings (else an error)
    replay: str | None = None  # frames of the pretraining data mixed into the training split (never validated on)
    replay_frames: int = 500  # how many of them (evenly spaced through the file)


@dataclass
class RunConfig:
    name: str = "run"
    output_dir: str | None = None  # default: runs/<name>
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir or Path("runs") / self.name)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig, "pretrain": PretrainConfig,
             "finetune": FinetuneConfig}


def flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists are leaves)."""
    out = {}
    for key, value in tree.items():
        out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def config_changes(before: dict[str, Any], now: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (before, now) for every setting that differs between two configs (as dicts). Keys only one
    side has (a setting added to nnp since the other was recorded) are not compared."""
    old, new = flat(before), flat(now)
    return {k: (old[k], new[k]) for k in sorted(old.keys() & new.keys()) if old[k] != new[k]}


def describe_changes(changes: dict[str, tuple[Any, Any]]) -> str:
    return "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items())


def build_dataclass(cls, values: dict[str, Any], where: str):
    """``cls(**values)`` for a config section; a non-mapping, an unknown or a missing key is a ConfigError."""
    if not isinstance(values, dict):
        raise ConfigError(f"section '{where}' must be a mapping, got {type(values).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(unknown)} in section '{where}'; known keys: {', '.join(known)}"
        )
    values = {key: _number(value, known[key].type, f"{where}.{key}") for key, value in values.items()}
    try:
        return cls(**values)
    except TypeError as err:  # a required key is missing
        raise ConfigError(f"section '{where}': {err}") from None


def _number(value: Any, annotation: Any, name: str) -> Any:
    """``value`` as the number a ``float``/``int`` field declares. YAML reads ``3e-3`` (no dot) as a string:
    such strings are converted; anything else that is not a number is a ConfigError naming the key."""
    kind = str(annotation).split("|")[0].strip()
    if kind not in ("float", "int") or value is None:
        return value
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if kind == "float":
        return float(number)
    if float(number).is_integer():
        return int(number)
    raise ConfigError(f"{name} must be a whole number, got {value!r}")


def _weights_problems(weights: Any) -> list[str]:
    """What is wrong with ``train.config_type_weights`` (a mapping of type name -> weight >= 0)."""
    example = "e.g. train.config_type_weights={contact: 0.3}"
    if not isinstance(weights, dict):
        return [f"train.config_type_weights must be a mapping of config_type to weight ({example}), "
                f"not {weights!r}"]
    bad = [f"{k!r}: {v!r}" for k, v in weights.items()
           if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0]
    if bad:
        return [f"train.config_type_weights: weights must be finite numbers >= 0, got {', '.join(bad)} ({example})"]
    return []


def config_from_dict(values: dict[str, Any], source: str = "<dict>") -> RunConfig:
    """Validate a nested dict (as read from YAML) into a :class:`RunConfig`."""
    values = dict(values or {})
    top = {k: values.pop(k) for k in list(values) if k not in _SECTIONS}
    sections = {name: build_dataclass(cls, values.get(name, {}), name) for name, cls in _SECTIONS.items()}
    try:
        config = build_dataclass(RunConfig, {**top, **sections}, "top level")
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    _check(config, source)
    return config


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML run config; ``overrides`` are ``section.key=value`` strings (YAML-typed values)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return config_from_dict(apply_overrides(values, overrides), str(path))


def apply_overrides(values: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """``values`` (nested, changed in place and returned) with ``section.key=value`` strings applied."""
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override '{item}' must look like section.key=value")
        *parents, leaf = key.split(".")
        target = values
        for p in parents:
            target = target.setdefault(p, {})
        target[leaf] = yaml.safe_load(raw)
    return values


def _check(config: RunConfig, source: str) -> None:
    problems = []
    t, d, m = config.train, config.data, config.model
    if t.optimizer not in ("adam", "adamw"):
        problems.append(f"train.optimizer must be adam or adamw, not {t.optimizer!r}")
    if t.scheduler not in ("plateau", "cosine", "none"):
        problems.append(f"train.scheduler must be plateau, cosine or none, not {t.scheduler!r}")
    if t.device not in ("auto", "cpu", "cuda"):
        problems.append(f"train.device must be auto, cpu or cuda, not {t.device!r}")
    if t.num_workers is not None and t.num_workers < 0:
        problems.append("train.num_workers must be >= 0 or null")
    if t.dtype not in ("float32", "float64"):
        problems.append(f"train.dtype must be float32 or float64, not {t.dtype!r}")
    if not 0 <= d.val_fraction < 1 or not 0 <= d.test_fraction < 1 or d.val_fraction + d.test_fraction >= 1:
        problems.append("data.val_fraction and data.test_fraction must be in [0, 1) and sum to < 1")
    if m.cutoff <= 0:
        problems.append("model.cutoff must be positive (Å)")
    if t.batch_size < 1 or t.epochs < 1:
        problems.append("train.batch_size and train.epochs must be >= 1")
    if config.pretrain.task not in ("masked", "denoise", "masked+denoise"):
        problems.append(f"pretrain.task must be masked, denoise or masked+denoise, not {config.pretrain.task!r}")
    if config.pretrain.target not in ("force", "vector_head"):
        problems.append(f"pretrain.target must be force or vector_head, not {config.pretrain.target!r}")
    if config.pretrain.noise_target not in ("eps", "displacement"):
        problems.append(f"pretrain.noise_target must be eps or displacement, not {config.pretrain.noise_target!r}")
    if not 0 < config.pretrain.mask_ratio <= 1:
        problems.append("pretrain.mask_ratio must be in (0, 1]")
    if config.finetune.replay_frames < 1:
        problems.append("finetune.replay_frames must be >= 1 (set finetune.replay: null for no replay)")
    for limit in ("time_limit_minutes", "cpu_limit_minutes"):
        if getattr(t, limit) is not None and not getattr(t, limit) > 0:
            problems.append(f"train.{limit} must be positive (minutes) or null for no limit")
    problems += _weights_problems(t.config_type_weights)
    if t.ema_decay is not None and not 0 < t.ema_decay < 1:
        problems.append("train.ema_decay must be in (0, 1) or null")
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))

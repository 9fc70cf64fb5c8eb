"""`nnp learn` configuration: YAML -> validated dataclasses (unknown keys are errors).

A minimal ``learn.yaml``::

    output_dir: runs/learn-aspirin
    start: organic-xtb                  # a bundled model, a checkpoint (.ckpt), or a training config (.yaml)
    initial_data: aspirin_20.extxyz     # labelled frames to start from
    explore:
      systems:
        - {structure: aspirin_start.xyz, temperatures: [500], steps: 4000, replicas: 4}
    deviation: {lo: 0.05, hi: 0.35}     # eV/Å on max_devi_f: DeePMD-kit's trust levels (calibrate: N, optional)
    select: {per_iteration: 30}
    contacts: {sources: 4}              # optional: 4 x 3 contact frames per iteration (a short-range wall), weight 1
    stop: {candidate_fraction: 0.02, max_labels: 300, max_iterations: 10}

The labeller defaults to GFN2-xTB through tblite; any ASE calculator is ``{calculator: module:Name,
kwargs: {...}}`` (a class or a function that returns a calculator).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import ConfigError, build_dataclass
from ..lammps.deck import BAROSTAT_COUPLINGS

DEFAULT_LABELLER = "nnp.data.generate.xtb:xtb_calculator"


@dataclass
class SystemConfig:
    """One exploration system: ``replicas`` runs of ``steps`` steps at each temperature: NVT, or NPT at each of
    ``pressures`` (bar; a box periodic in x, y and z)."""

    structure: str  # any structure file nnp reads; a LAMMPS data file (.data) takes its elements from Masses
    index: int = 0  # frame of the structure file to start from
    type_symbols: list | None = None  # LAMMPS data file: element of each atom type, in type order (pair_coeff * * O H)
    temperatures: list = field(default_factory=lambda: [300.0])  # K
    pressures: list | None = None  # bar: NPT at each (with each temperature); None: NVT at the structure's volume
    steps: int = 2000
    replicas: int = 2


@dataclass
class ExploreConfig:
    systems: list = field(default_factory=list)  # of SystemConfig
    timestep_fs: float = 0.5
    out_freq: int = 10  # steps between deviation measurements (and candidate frames)
    thermostat_fs: float = 100.0  # Nosé–Hoover damping time
    barostat_fs: float = 1000.0  # Nosé–Hoover barostat damping time (systems with pressures)
    barostat: str = "iso"  # iso (shape kept) | aniso | tri: how the box may change under pressure (DP-GEN's npt-*)
    vacuum: float = 50.0  # Å around a non-periodic system (LAMMPS needs a box)


@dataclass
class DeviationConfig:
    """DeePMD-kit's trust levels on max_devi_f (eV/Å): below lo accurate, at or above hi failed."""

    lo: float = 0.05
    hi: float = 0.35
    # explored frames (below hi, drawn at random) labelled per iteration to measure how member 0's real force
    # error compares with the deviation, scale = median(error / deviation) (nnp.learn.calibration); a frame
    # is then accurate when scale * deviation < lo. hi stays on the raw deviation. 0: off (DeePMD's levels)
    calibrate: int = 0


@dataclass
class SelectConfig:
    per_iteration: int = 30  # candidates labelled per iteration (diverse, by farthest-point sampling)
    fingerprint_bins: int = 32  # distance histogram bins per element pair


@dataclass
class ContactsConfig:
    """Contact frames (``nnp data contacts``, nnp.data.contacts) made each iteration from that iteration's labelled
    candidates: ``sources`` of them, ``per_source`` contacts each, labelled and kept up to ``max_energy`` eV above
    their source. A short-range wall the exploration rarely reaches (RESULTS §14.9). ``sources: 0``: off.
    ``weight``: their loss weight in training (``train.config_type_weights`` of config_type "contact")."""

    sources: int = 0
    per_source: int = 3
    max_energy: float = 20.0  # eV
    weight: float = 1.0


@dataclass
class LabellerConfig:
    calculator: str = DEFAULT_LABELLER  # module:Name (class or factory returning an ASE calculator)
    kwargs: dict = field(default_factory=dict)


@dataclass
class StopConfig:
    """Stop when (candidates + failed) / explored frames < candidate_fraction, or at either budget.

    ``max_labels`` counts every labelled frame, the initial ones included."""

    candidate_fraction: float = 0.02
    max_labels: int = 300
    max_iterations: int = 10


@dataclass
class LearnConfig:
    output_dir: str
    start: str  # bundled model name | *.ckpt (finetuned from) | *.yaml training config (from scratch)
    initial_data: str
    # its labels under other names than ASE's, e.g. {energy: REF_energy, forces: REF_forces} (MACE's files)
    initial_data_keys: dict = field(default_factory=dict)
    ensemble: int = 4  # members; member 0 drives the exploration
    seed: int = 0
    train: list = field(default_factory=list)  # section.key=value overrides for every member's training
    # overrides (after train's) for one more ensemble once the loop stops: the production models, trained longer
    # on every label and warm-started from the loop's last ensemble; empty: the loop's last ensemble is the result
    final_train: list = field(default_factory=list)
    explore: ExploreConfig = field(default_factory=ExploreConfig)
    deviation: DeviationConfig = field(default_factory=DeviationConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    contacts: ContactsConfig = field(default_factory=ContactsConfig)
    labeller: LabellerConfig = field(default_factory=LabellerConfig)
    stop: StopConfig = field(default_factory=StopConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir)

    @property
    def from_scratch(self) -> bool:
        return str(self.start).endswith((".yaml", ".yml"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_NESTED = {"explore": ExploreConfig, "deviation": DeviationConfig, "select": SelectConfig,
           "contacts": ContactsConfig, "labeller": LabellerConfig, "stop": StopConfig}


def learn_config_from_dict(values: dict[str, Any], source: str = "<dict>") -> LearnConfig:
    """Validate a nested dict (as read from YAML) into a :class:`LearnConfig`."""
    values = dict(values or {})
    try:
        nested = {k: build_dataclass(cls, values.pop(k, {}) or {}, k) for k, cls in _NESTED.items()}
        nested["explore"].systems = [build_dataclass(SystemConfig, s, f"explore.systems[{k}]")
                                     for k, s in enumerate(nested["explore"].systems)]
        config = build_dataclass(LearnConfig, {**values, **nested}, "top level")
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    _check(config, source)
    return config


def load_learn_config(path: str | Path) -> LearnConfig:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return learn_config_from_dict(values, str(path))


def _check(config: LearnConfig, source: str) -> None:
    problems = []
    unknown_labels = sorted(set(config.initial_data_keys) - {"energy", "forces", "stress"})
    if unknown_labels:
        problems.append(f"initial_data_keys names the file's keys of energy, forces and stress, not {unknown_labels}")
    if config.ensemble < 2:
        problems.append(f"ensemble must be >= 2 (the deviation needs two members), not {config.ensemble}")
    if not config.explore.systems:
        problems.append("explore.systems is empty: name at least one structure to run MD from")
    for k, system in enumerate(config.explore.systems):
        if system.steps < config.explore.out_freq or system.replicas < 1 or not system.temperatures:
            problems.append(f"explore.systems[{k}] needs steps >= explore.out_freq, replicas >= 1 and a temperature")
        if system.pressures is not None and not system.pressures:
            problems.append(f"explore.systems[{k}].pressures is empty: give at least one pressure (bar), or remove it "
                            "for NVT")
        if system.type_symbols is not None and not str(system.structure).endswith(".data"):
            problems.append(f"explore.systems[{k}].type_symbols names the elements of a LAMMPS data file's atom types; "
                            f"{system.structure} is not one (.data): remove type_symbols")
    if config.explore.out_freq < 1 or config.explore.timestep_fs <= 0:
        problems.append("explore.out_freq must be >= 1 and explore.timestep_fs > 0")
    if config.explore.barostat not in BAROSTAT_COUPLINGS:
        problems.append(f"explore.barostat must be one of {', '.join(BAROSTAT_COUPLINGS)}, "
                        f"not {config.explore.barostat!r}")
    if config.explore.thermostat_fs <= 0 or config.explore.barostat_fs <= 0:
        problems.append("explore.thermostat_fs and explore.barostat_fs must be > 0 (damping times, fs)")
    if not 0 <= config.deviation.lo < config.deviation.hi:
        problems.append(f"deviation needs 0 <= lo < hi, got lo={config.deviation.lo} hi={config.deviation.hi}")
    if config.deviation.calibrate < 0:
        problems.append(f"deviation.calibrate must be >= 0 (frames per iteration), not {config.deviation.calibrate}")
    if config.select.per_iteration < 1:
        problems.append("select.per_iteration must be >= 1")
    if config.contacts.sources < 0 or config.contacts.per_source < 1 or not config.contacts.max_energy > 0:
        problems.append("contacts needs sources >= 0 (0: off), per_source >= 1 and max_energy > 0 (eV)")
    if not config.contacts.weight >= 0:
        problems.append(f"contacts.weight must be >= 0 (the contact frames' loss weight), not {config.contacts.weight}")
    if ":" not in config.labeller.calculator:
        problems.append(f"labeller.calculator must look like module:Name, not {config.labeller.calculator!r}")
    if config.stop.max_iterations < 1 or config.stop.max_labels < 1:
        problems.append("stop.max_iterations and stop.max_labels must be >= 1")
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))

"""``diverse-xtb``: thousands of random small molecules, hot GFN2-xTB MD frames (issue #14 pretraining set).

Molecules come from :mod:`.molecule_graphs` (random valid graphs of C, N, O, F, S, Cl with hydrogens,
unique, aspirin excluded, deterministic for a seed). Each molecule is sampled at every temperature from
its own ETKDG conformer (a different embedding seed per segment), MMFF-relaxed where MMFF has
parameters, then a short Langevin MD run with xTB keeps a frame every ``interval`` steps after
``equilibration_steps``. Sampling reuses :func:`.xtb.sample_md` (resumable, dropped frames counted,
finite-difference force checks); the card adds composition, element counts and label statistics.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms

from .clusters import build_cluster, draw_cluster_members
from .molecule_graphs import EMBED_CHECK_SEED, HELD_OUT, Enumeration, composition, held_out_reason, random_molecules
from .resumable import ResumableTrajectory
from .xtb import LEVEL_OF_THEORY, Segment, sample_md

NAME = "diverse-xtb"
CLUSTER = "cluster:"  # label prefix of cluster segments
EMBED_ATTEMPTS = 20


def conformer(smiles: str, seed: int) -> Atoms:
    """One ETKDG conformer (hydrogens added), MMFF-relaxed when MMFF has parameters for the molecule."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    for attempt in range(EMBED_ATTEMPTS):
        params = AllChem.ETKDGv3()
        params.randomSeed = (seed + 7919 * attempt) % 2**31
        params.useRandomCoords = attempt > 0
        if AllChem.EmbedMolecule(mol, params) == 0:
            break
    else:  # the enumeration checked that this seed embeds
        params = AllChem.ETKDGv3()
        params.randomSeed = EMBED_CHECK_SEED
        if AllChem.EmbedMolecule(mol, params) != 0:
            raise RuntimeError(f"RDKit could not embed {smiles} in 3D ({EMBED_ATTEMPTS} attempts from seed {seed})")
    if AllChem.MMFFHasAllMoleculeParams(mol):
        AllChem.MMFFOptimizeMolecule(mol, maxIters=500)
    return Atoms([a.GetSymbol() for a in mol.GetAtoms()], positions=mol.GetConformer().GetPositions())


def split_frames(frames_per_molecule: int, temperatures: Sequence[float]) -> list[int]:
    """Frames per temperature, as equal as possible, the first temperatures getting the remainder."""
    base, extra = divmod(frames_per_molecule, len(temperatures))
    return [base + (k < extra) for k in range(len(temperatures))]


@dataclass(frozen=True)
class Sampling:
    """What is sampled of each molecule, and how many non-bonded clusters go between the molecules.

    v1 (the defaults): every molecule at every temperature. v2 (:data:`PRESETS`): each molecule at one
    temperature (cycling through them), plus displaced single points, plus clusters of two or three
    molecules (water among them) making ``cluster_share`` of all frames.
    """

    frames_per_molecule: int = 25
    temperatures: tuple[float, ...] = (500.0, 1000.0)
    one_temperature_per_molecule: bool = False
    displaced_frames: int = 0  # per molecule (see xtb.Segment.displacement)
    max_displacement: float = 0.25  # Å
    cluster_share: float = 0.0  # fraction of all frames that are cluster frames
    cluster_frames: int = 2  # MD frames per cluster
    cluster_temperatures: tuple[float, ...] = (300.0, 500.0)

    def __post_init__(self):
        object.__setattr__(self, "temperatures", tuple(float(t) for t in self.temperatures))
        if self.frames_per_molecule < 1 or not self.temperatures:
            raise ValueError("need frames_per_molecule >= 1 and at least one temperature")
        if not 0 <= self.cluster_share < 1 or self.displaced_frames < 0:
            raise ValueError("need 0 <= cluster_share < 1 and displaced_frames >= 0")

    def resume_key(self) -> dict:
        """Resume-key entries: v1's exactly as before, the v2 fields only when used."""
        key = {"frames_per_molecule": self.frames_per_molecule, "temperatures_K": list(self.temperatures)}
        defaults = Sampling()
        for name in ("one_temperature_per_molecule", "displaced_frames", "max_displacement", "cluster_share",
                     "cluster_frames", "cluster_temperatures"):
            if getattr(self, name) != getattr(defaults, name):
                key[name] = list(getattr(self, name)) if name == "cluster_temperatures" else getattr(self, name)
        return key

    def clusters_per_molecule(self) -> float:
        """Clusters per molecule so that cluster frames are ``cluster_share`` of all frames."""
        per_molecule = self.frames_per_molecule + self.displaced_frames
        return self.cluster_share * per_molecule / (self.cluster_frames * (1 - self.cluster_share))


# `nnp data generate diverse-xtb --preset NAME`: the published versions of the set
PRESETS = {
    "v1": {"n_molecules": 4000, "max_heavy_atoms": 9, "sampling": Sampling()},
    "v2": {"n_molecules": 20000, "max_heavy_atoms": 12,
           "sampling": Sampling(frames_per_molecule=2, temperatures=(300.0, 500.0, 1000.0),
                                one_temperature_per_molecule=True, displaced_frames=1, max_displacement=0.05,
                                cluster_share=0.18)},
}


def diverse_segments(smiles: Sequence[str], sampling: Sampling, seed: int, shard: int = 0,
                     shards: int = 1) -> list[Segment]:
    """The segments of the molecules of this shard (index % shards == shard) and of their clusters.

    Conformers (and clusters) are built only when the MD reaches them; their seeds depend on the molecule's
    index in the whole list, so a molecule starts from the same conformer whichever shard samples it.
    Clusters follow the molecule they are counted after, so any prefix of the run has the cluster share.
    """
    temperatures = sampling.temperatures
    rate = sampling.clusters_per_molecule()
    heavy = _heavy_atom_counts(smiles) if rate > 0 else []
    segments = []
    for m, s in enumerate(smiles):
        if m % shards != shard:
            continue
        if sampling.one_temperature_per_molecule:
            plan = [(m % len(temperatures), temperatures[m % len(temperatures)], sampling.frames_per_molecule)]
        else:
            plan = list(zip(range(len(temperatures)), temperatures,
                            split_frames(sampling.frames_per_molecule, temperatures)))
        for t, temperature, frames in plan:
            if frames == 0:
                continue
            embed_seed = (seed * 1_000_003 + m * len(temperatures) + t) % 2**31
            segments.append(Segment(f"{s}@{int(temperature)}K", lambda s=s, k=embed_seed: conformer(s, k),
                                    float(temperature), frames))
        if sampling.displaced_frames:
            embed_seed = (seed * 1_000_003 + m * len(temperatures) + len(temperatures)) % 2**31
            segments.append(Segment(f"{s}@displaced", lambda s=s, k=embed_seed: conformer(s, k), 0.0,
                                    sampling.displaced_frames, displacement=sampling.max_displacement))
        for c in range(int((m + 1) * rate) - int(m * rate)):
            segments.append(_cluster_segment(smiles, heavy, sampling, seed, int(m * rate) + c))
    return segments


def _heavy_atom_counts(smiles: Sequence[str]) -> list[int]:
    from rdkit import Chem

    return [Chem.MolFromSmiles(s).GetNumHeavyAtoms() for s in smiles]


def _cluster_segment(smiles: Sequence[str], heavy: Sequence[int], sampling: Sampling, seed: int,
                     index: int) -> Segment:
    """Cluster number ``index`` of the run: members, temperature and geometry depend on it and the seed only."""
    rng = np.random.default_rng([seed, 0xC1, index])
    members = draw_cluster_members(smiles, heavy, rng)
    temperature = float(sampling.cluster_temperatures[index % len(sampling.cluster_temperatures)])
    builders = [lambda s=s, k=k: conformer(s, (seed * 7_919 + index * 5 + k) % 2**31) for k, s in enumerate(members)]
    build_seed = (seed * 1_000_033 + index) % 2**31
    return Segment(f"{CLUSTER}{'.'.join(members)}@{int(temperature)}K",
                   lambda: build_cluster(builders, build_seed), temperature, sampling.cluster_frames)


def cached_molecules(n_molecules: int, seed: int, max_heavy_atoms: int,
                     cache_dir: Path | None = None) -> tuple[Enumeration, float]:
    """:func:`random_molecules` and its CPU seconds, kept in ``cache_dir`` so that the shards of a run, its
    restarts and ``--card-only`` draw 20,000 molecules once (minutes of 3D-embedding checks), not each time."""
    key = json.dumps([n_molecules, seed, max_heavy_atoms, sorted(HELD_OUT.values())])
    path = None if cache_dir is None else Path(cache_dir) / f".molecules-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    if path is not None and path.exists():
        cached = json.loads(path.read_text())
        return Enumeration(cached["smiles"], cached["attempts"], Counter(cached["rejected"]), cached["excluded"]), \
            cached["seconds"]
    tick = time.process_time()
    enumeration = random_molecules(n_molecules, seed=seed, max_heavy_atoms=max_heavy_atoms)
    seconds = time.process_time() - tick
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "smiles": enumeration.smiles, "attempts": enumeration.attempts,
                                   "rejected": dict(enumeration.rejected), "excluded": enumeration.excluded,
                                   "seconds": seconds}))
        os.replace(tmp, path)
    return enumeration, seconds


def _plan(n_molecules: int, sampling: Sampling, seed: int, max_heavy_atoms: int, shard: int = 0,
          shards: int = 1, cache_dir: Path | None = None) -> tuple[Enumeration, float, list[Segment], dict]:
    """Molecules, their segments and the resume-key entries of a diverse-xtb run (or of one shard of it)."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard must be in 0..{shards - 1}, got {shard} of {shards}")
    enumeration, seconds = cached_molecules(n_molecules, seed, max_heavy_atoms, cache_dir)
    segments = diverse_segments(enumeration.smiles, sampling, seed, shard, shards)
    extra = {"molecules": n_molecules, **sampling.resume_key(), "max_heavy_atoms": max_heavy_atoms}
    if shards > 1:
        extra["shard"] = [shard, shards]
    return enumeration, seconds, segments, extra


def _sampling(sampling: Sampling | None, fields: dict) -> Sampling:
    """``sampling`` (default v1) with the given fields replaced (``frames_per_molecule=``, ``temperatures=``...)."""
    base = sampling or Sampling()
    return dataclasses.replace(base, **fields) if fields else base


def generate_diverse_xtb(output: str | Path, n_molecules: int = 4000, sampling: Sampling | None = None, *,
                         seed: int = 0, interval: int = 5, equilibration_steps: int = 20, max_heavy_atoms: int = 9,
                         friction_per_fs: float = 0.02, check_every: int = 500, shard: int = 0, shards: int = 1,
                         progress: bool = True, **sampling_fields) -> Path:
    """Generate (or continue) the diverse set into ``output`` (extxyz) with its card; returns the path.

    ``sampling``: what is sampled (default: v1's); keyword fields of :class:`Sampling` override it.
    ``shard``/``shards``: sample only the molecules with index % shards == shard (run the shards as separate
    processes into separate outputs, then pack them together).
    """
    sampling = _sampling(sampling, sampling_fields)
    enumeration, seconds, segments, extra = _plan(n_molecules, sampling, seed, max_heavy_atoms, shard, shards,
                                                  Path(output).parent)
    path = sample_md(output, segments, NAME, timestep_fs=0.5, interval=interval,
                     equilibration_steps=equilibration_steps, seed=seed + 1_000_003 * shard,
                     friction_per_fs=friction_per_fs, check_every=check_every, progress=progress,
                     compact_parameters=True, extra_parameters=extra)
    _complete_card(path, enumeration, seconds, seed, complete=True, segments=segments)
    return path


def write_partial_card(output: str | Path, n_molecules: int = 4000, sampling: Sampling | None = None, *,
                       seed: int = 0, max_heavy_atoms: int = 9, shard: int = 0, shards: int = 1,
                       **sampling_fields) -> Path:
    """Card of the frames a generation has written so far (``complete`` once every segment is done)."""
    from .xtb import segments_digest

    path = Path(output)
    state_path = path.with_name(path.name + ".state.json")
    if not state_path.exists():
        raise FileNotFoundError(f"{state_path} not found: no generation into {path} to describe")
    state = json.loads(state_path.read_text())
    enumeration, seconds, segments, _ = _plan(n_molecules, _sampling(sampling, sampling_fields), seed,
                                              max_heavy_atoms, shard, shards, path.parent)
    parameters = state["parameters"]
    if parameters.get("segments") != json.loads(json.dumps(segments_digest(segments))):
        raise ValueError(f"{path} was generated with other molecules/frames/temperatures/seed than asked for")
    # the state is saved with each frame, so a finished segment still shows as the current one
    segment = state["segment"]
    completed = segment + int(segment < len(segments) and state["segment_frames"] >= segments[segment].frames)
    out = ResumableTrajectory(path, parameters)
    out.write_card({
        "dataset": NAME, "temperatures_K": sorted(parameters["temperatures_K"]),
        "timestep_fs": parameters["timestep_fs"], "sampling_interval_steps": parameters["interval"],
        "equilibration_steps": parameters["equilibration_steps"], "friction_per_fs": parameters["friction_per_fs"],
        "seed": parameters["seed"], "frames": state["frames"], "systems": len(segments),
        "segments_completed": completed,
        "dropped_failed_scf": state["dropped_scf"], "dropped_exploded_geometry": state["dropped_geometry"],
        **{key: state.get(key, 0) for key in ("failed_equilibrations", "skipped_segments", "skipped_frames")},
        "finite_difference_check": {"frames_checked": state["fd_checked"],
                                    "max_abs_error_eV_per_A": state["fd_max_error"]},
        "generation_seconds": state["seconds"],
    })
    if sys.argv and sys.argv[0].endswith("nnp") and "--card-only" in sys.argv:  # the command that makes the frames
        out.update_card({"command": " ".join(a for a in sys.argv if a != "--card-only"),
                         "card_command": " ".join(sys.argv)})
    return _complete_card(path, enumeration, seconds, seed, complete=completed >= len(segments),
                          max_frames=state["frames"], segments=segments)


def _complete_card(path: Path, enumeration: Enumeration, enumeration_seconds: float, seed: int, complete: bool,
                   segments: Sequence[Segment], max_frames: int | None = None) -> Path:
    """Add composition, exclusions and frame statistics to the card; write its Markdown rendering.

    Composition describes the molecules this output samples (its shard); the SMILES file lists them.
    """
    out = ResumableTrajectory(path, {})
    molecules_file = path.with_name(path.name + ".molecules.json")
    mine = list(dict.fromkeys(s.label.rsplit("@", 1)[0] for s in segments if not s.label.startswith(CLUSTER)))
    molecules_file.write_text(json.dumps(mine, indent=0))
    out.update_card({
        "complete": complete,
        "level_of_theory": LEVEL_OF_THEORY,
        "how_made": ("random heavy-atom graphs (C, N, O, F, S, Cl; spanning tree + ring closures + bond orders), "
                     "RDKit-sanitized, hydrogens added, neutral closed-shell, unique by canonical SMILES; per "
                     "molecule and temperature one ETKDG conformer (own seed), MMFF-relaxed when parametrized, "
                     "then GFN2-xTB Langevin MD; v2 also: displaced single points of the conformer (Gaussian "
                     "noise, sigma up to max_displacement) and MD of non-bonded clusters of two or three small "
                     "molecules or water placed at 0.65-0.9 of their van der Waals contact distance"),
        "held_out_benchmark": "the ten revised-MD17 molecules (exclusions below) are never sampled, alone or in "
                              "clusters",
        "molecule_enumeration": {"seed": seed, "attempts": enumeration.attempts,
                                 "rejected": dict(enumeration.rejected), "seconds": enumeration_seconds,
                                 "smiles_file": molecules_file.name},
        "exclusions": [{"canonical_smiles": s, "times_drawn": n, "reason": held_out_reason(s)}
                       for s, n in enumeration.excluded.items()],
        "composition": composition(mine),
        **frame_statistics(path, max_frames),
    })
    write_markdown_card(out.card_path)
    return out.card_path


def merge_shard_cards(outputs: Sequence[str | Path], card_path: str | Path) -> Path:
    """One card for a set generated as shards (``--shard I N`` into separate outputs), and its Markdown.

    Counts (frames, drops, seconds, finite-difference checks) are summed over the shards' cards; composition
    and frame statistics are recomputed over all shards' molecules and frames. ``complete`` only if every
    shard finished.
    """
    outputs = [Path(o) for o in outputs]
    cards = []
    for output in outputs:
        card_file = output.with_name(output.name + ".card.json")
        if not card_file.exists():
            raise FileNotFoundError(f"{card_file} not found: generate the shard (or write its card with --card-only)")
        cards.append(json.loads(card_file.read_text()))
    shards = [tuple(c["parameters"].get("shard", (0, 1))) for c in cards]
    if len(set(shards)) != len(shards) or any(c["parameters"].get("segments") is None for c in cards):
        raise ValueError(f"the cards of {[str(o) for o in outputs]} are not distinct shards of one generation")
    summed = ("frames", "systems", "segments_completed", "dropped_failed_scf", "dropped_exploded_geometry",
              "failed_equilibrations", "skipped_segments", "skipped_frames", "generation_seconds")
    molecules = [m for o in outputs for m in json.loads(o.with_name(o.name + ".molecules.json").read_text())]
    per_shard = ("command", "card_command", "parameters", "file_sha256")
    merged = {key: value for key, value in cards[0].items() if key not in per_shard}
    merged.update({key: sum(c.get(key, 0) for c in cards) for key in summed})
    merged.update({
        "complete": all(c.get("complete") for c in cards),
        "command": " && ".join(str(c.get("command")) for c in cards),
        "shards": [{"output": str(o), "shard": list(sh), "frames": c["frames"], "complete": c.get("complete", False),
                    "command": c.get("command"), "file_sha256": c.get("file_sha256")}
                   for o, sh, c in zip(outputs, shards, cards)],
        "finite_difference_check": {
            "frames_checked": sum(c["finite_difference_check"]["frames_checked"] for c in cards),
            "max_abs_error_eV_per_A": max(c["finite_difference_check"]["max_abs_error_eV_per_A"] for c in cards)},
        "composition": composition(molecules),
        **frame_statistics(outputs, [c["frames"] for c in cards]),
    })
    card_path = Path(card_path)
    card_path.write_text(json.dumps(merged, indent=2))
    write_markdown_card(card_path)
    return card_path


def frame_statistics(paths: str | Path | Sequence[str | Path], max_frames: int | None | Sequence[int] = None) -> dict:
    """Element counts and label statistics of extxyz files (the first ``max_frames`` of each), streamed."""
    import ase.io

    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    limits = max_frames if isinstance(max_frames, (list, tuple)) else [max_frames] * len(paths)
    atoms_of, frames_with = Counter(), Counter()
    force_sq, force_n, force_max = defaultdict(float), Counter(), defaultdict(float)
    energy_per_atom, temperatures, systems, kinds, n = [], Counter(), set(), Counter(), 0
    frames = (frame for path, limit in zip(paths, limits) if limit != 0 and Path(path).stat().st_size > 0
              for frame in ase.io.iread(path, index=slice(0, limit), format="extxyz"))
    for frame in frames:
        n += 1
        symbols = np.array(frame.get_chemical_symbols())
        forces = frame.get_forces()
        energy_per_atom.append(frame.get_potential_energy() / len(frame))
        system, _, how = str(frame.info.get("system", "")).rpartition("@")
        temperatures["displaced" if how == "displaced" else str(frame.info.get("temperature_K"))] += 1
        if system.startswith(CLUSTER):
            kinds["cluster"] += 1
        else:
            systems.add(system)
            kinds["displaced" if how == "displaced" else "molecule_md"] += 1
        norms = np.linalg.norm(forces, axis=1)
        for symbol in set(symbols):
            mask = symbols == symbol
            atoms_of[symbol] += int(mask.sum())
            frames_with[symbol] += 1
            force_sq[symbol] += float((forces[mask] ** 2).sum())
            force_n[symbol] += int(mask.sum()) * 3
            force_max[symbol] = max(force_max[symbol], float(norms[mask].max()))
    if n == 0:
        return {"frame_statistics": {"frames": 0}}
    e = np.array(energy_per_atom)
    return {"frame_statistics": {
        "frames": n,
        "distinct_molecules_in_frames": len(systems),
        "frames_per_temperature_K": dict(temperatures),
        "frames_per_kind": {k: kinds[k] for k in ("molecule_md", "displaced", "cluster")},
        "cluster_frame_share": kinds["cluster"] / n,
        "atoms_per_element": dict(sorted(atoms_of.items())),
        "frames_containing_element": dict(sorted(frames_with.items())),
        "energy_per_atom_eV": {"mean": float(e.mean()), "std": float(e.std()), "min": float(e.min()),
                               "max": float(e.max())},
        "force_component_rms_eV_per_A": {s: float(np.sqrt(force_sq[s] / force_n[s])) for s in sorted(force_n)},
        "force_norm_max_eV_per_A": {s: force_max[s] for s in sorted(force_max)},
    }}


def write_markdown_card(card_path: str | Path) -> Path:
    """Short Markdown rendering of a diverse-xtb card, next to it (``.card.md``)."""
    card_path = Path(card_path)
    card = json.loads(card_path.read_text())
    stats, comp = card["frame_statistics"], card["composition"]
    lines = [f"# {card['dataset']}", "",
             f"{stats['frames']} frames; {stats.get('distinct_molecules_in_frames', 0)} of {comp['molecules']} "
             f"distinct molecules sampled{'' if card.get('complete') else ' so far (unfinished)'}; "
             f"{card['level_of_theory']}.", "",
             f"How made: {card['how_made']}. Temperatures {card['temperatures_K']} K, timestep "
             f"{card['timestep_fs']} fs, a frame every {card['sampling_interval_steps']} steps after "
             f"{card['equilibration_steps']} equilibration steps, seed {card['seed']}.", "",
             f"Dropped: {card['dropped_failed_scf']} failed SCF, {card['dropped_exploded_geometry']} exploded "
             f"geometries; {card.get('failed_equilibrations', 0)} failed equilibrations, "
             f"{card.get('skipped_segments', 0)} molecule/temperature runs given up "
             f"({card.get('skipped_frames', 0)} frames). Finite-difference force check: "
             f"{card['finite_difference_check']['frames_checked']} "
             f"frames, max error {card['finite_difference_check']['max_abs_error_eV_per_A']:.1e} eV/Å. "
             f"Generation: {card['generation_seconds']:.0f} s. Command: `{card.get('command')}`.", "",
             f"Frames by kind: {stats.get('frames_per_kind', {})} (cluster share "
             f"{stats.get('cluster_frame_share', 0):.1%}); by temperature: {stats.get('frames_per_temperature_K')}.",
             "",
             "Exclusions: " + "; ".join(f"{x['canonical_smiles']} ({x['reason']}, drawn {x['times_drawn']}x)"
                                        for x in card["exclusions"]), "",
             "| heavy atoms | " + " | ".join(comp["heavy_atom_histogram"]) + " |",
             "|---" * (len(comp["heavy_atom_histogram"]) + 1) + "|",
             "| molecules | " + " | ".join(str(v) for v in comp["heavy_atom_histogram"].values()) + " |", "",
             f"Rings per molecule: {comp['ring_count_histogram']}; aromatic: {comp['molecules_with_aromatic_ring']}.",
             "Functional groups (molecules): " + ", ".join(f"{k} {v}" for k, v in
                                                           comp["molecules_with_functional_group"].items()), "",
             "| element | atoms | frames containing | force rms (eV/Å) | max |F| (eV/Å) |", "|---|---|---|---|---|"]
    for s in stats.get("atoms_per_element", {}):
        lines.append(f"| {s} | {stats['atoms_per_element'][s]} | {stats['frames_containing_element'][s]} | "
                     f"{stats['force_component_rms_eV_per_A'][s]:.3f} | {stats['force_norm_max_eV_per_A'][s]:.2f} |")
    if "energy_per_atom_eV" in stats:
        e = stats["energy_per_atom_eV"]
        lines += ["", f"Energy per atom (eV): mean {e['mean']:.3f}, std {e['std']:.3f}, "
                      f"min {e['min']:.3f}, max {e['max']:.3f}."]
    md = card_path.with_name(card_path.name.removesuffix(".json") + ".md")
    md.write_text("\n".join(lines) + "\n")
    return md

"""What a rerun of ``nnp learn`` may change in a started loop's config, and what it may not.

The loop records the config it last ran with (``learn-config.json``). A rerun may change how the loop goes on
(training overrides, exploration, trust levels, selection, stopping rule): the stages still to run use the new
values, and a loop stopped by a rule the change lifts goes on (``loop.run_learning``). It may not change what its
data and members are (the start, the initial frames, the number of members, the seed, the labeller): those would
mix two loops in one folder.
"""

from __future__ import annotations

from typing import Any

from ..config import ConfigError

FIXED = ("start", "initial_data", "ensemble", "seed", "labeller")
# the sections a stop depends on: a stopped iteration is looked at again when one of them changed
LOOP_SECTIONS = ("explore", "deviation", "select", "stop")


def flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists are leaves)."""
    out = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        out.update(flat(value, name + ".") if isinstance(value, dict) else {name: value})
    return out


def config_changes(before: dict[str, Any], now: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (before, now) for every value that differs; ``output_dir`` aside (the folder may move), and
    keys the recorded config does not have (written by an older nnp, before they existed)."""
    a, b = flat(before), flat(now)
    return {k: (a[k], b.get(k)) for k in sorted(a) if k != "output_dir" and a[k] != b.get(k)}


def check_changes(changes: dict[str, tuple[Any, Any]], run_dir: str) -> None:
    """A change to what the loop's data and members are is an error that names it."""
    fixed = [k for k in changes if k.split(".")[0] in FIXED]
    if fixed:
        listed = "; ".join(f"{k}: {changes[k][0]!r} -> {changes[k][1]!r}" for k in fixed)
        raise ConfigError(f"{run_dir} is a loop started with other {', '.join(sorted({k.split('.')[0] for k in fixed}))} "
                          f"({listed}): these cannot change in a started loop; give the new config another "
                          "output_dir, or restore the old values")


def describe(changes: dict[str, tuple[Any, Any]]) -> str:
    return "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items())

"""What a rerun of ``nnp learn`` may change in a started loop's config, and what it may not.

The loop records the config it last ran with (``learn-config.json``). A rerun may change how the loop goes on
(training overrides, exploration, trust levels, selection, stopping rule): the stages still to run use the new
values, and a loop stopped by a rule the change lifts goes on (``loop.run_learning``). It may not change what its
data and members are (the start, the initial frames, the number of members, the seed, the labeller): those would
mix two loops in one folder.
"""

from __future__ import annotations

from typing import Any

from ..config import ConfigError, describe_changes

FIXED = ("start", "initial_data", "initial_data_keys", "ensemble", "seed", "labeller")
# the sections a stop depends on: a stopped iteration is looked at again when one of them changed
LOOP_SECTIONS = ("explore", "deviation", "select", "stop")


def check_changes(changes: dict[str, tuple[Any, Any]], run_dir: str) -> None:
    """A change to what the loop's data and members are is an error that names it."""
    fixed = [k for k in changes if k.split(".")[0] in FIXED]
    if fixed:
        listed = describe_changes({k: changes[k] for k in fixed})
        raise ConfigError(f"{run_dir} is a loop started with other {', '.join(sorted({k.split('.')[0] for k in fixed}))} "
                          f"({listed}): these cannot change in a started loop; give the new config another "
                          "output_dir, or restore the old values")


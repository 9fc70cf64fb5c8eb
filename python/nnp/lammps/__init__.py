"""The one low-level LAMMPS layer of nnp, below data/generate and md.

``session`` finds the MPI library of the ``mpich`` wheel and loads the pair_nnp plugin (``make_lammps``);
``data_file`` writes structures as LAMMPS data files (``load_atoms``: straight into a running LAMMPS) and reads
a user's; ``deck`` holds the lines every nnp deck starts with and the NVE energy trace; ``state`` reads a running
LAMMPS back (atoms in id order, the box).
"""

from .data_file import load_atoms, read_lammps_data, write_lammps_data
from .deck import boundary, nnp_lines, npt_lines, nve_energy_trace, nvt_lines, system_lines
from .session import lmp_executable, make_lammps, mpirun_executable, plugin_dir, plugin_path, subprocess_env
from .state import box_cell, by_id, current_atoms, unwrapped_positions

__all__ = ["boundary", "box_cell", "by_id", "current_atoms", "lmp_executable", "load_atoms", "make_lammps",
           "mpirun_executable", "nnp_lines", "npt_lines", "nve_energy_trace", "nvt_lines", "plugin_dir", "plugin_path", "read_lammps_data",
           "subprocess_env", "system_lines", "unwrapped_positions", "write_lammps_data"]

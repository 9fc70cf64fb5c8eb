"""nnp: pretrained neural network potentials that run production MD in LAMMPS.

Kept light on import (no torch here): the ``lmp`` launcher imports this package to find the plugin.
"""

__version__ = "0.1.0"

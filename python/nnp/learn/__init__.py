"""Active learning over the ensemble's model deviation (``nnp learn``, docs/active_learning.md).

``config`` reads learn.yaml; ``exploration`` runs LAMMPS with ``pair_style nnp ensemble``;
``selection`` applies DeePMD-kit's trust window and picks diverse candidates; ``labelling`` labels them
with any ASE calculator, resumably; ``loop`` runs train -> explore -> select -> label until it stops.
"""

from .config import LearnConfig, learn_config_from_dict, load_learn_config
from .loop import run_learning

__all__ = ["LearnConfig", "learn_config_from_dict", "load_learn_config", "run_learning"]

"""The model contract shared by the Python models, the exporter and the C++ pair style.

The prose lives in ``docs/model_contract.md``; this module is its Python mirror and
``pair_nnp/contract.h`` its C++ mirror (``tests/test_contract.py`` checks they agree).
"""

from __future__ import annotations

FORMAT_VERSION = 1
UNITS = "metal"  # eV, Å, eV/Å inside every model file

# forward(species, edge_index, edge_vectors, num_local) -> Dict[str, Tensor]
INPUT_KEYS = ("species", "edge_index", "edge_vectors", "num_local")
OUTPUT_KEYS = ("energy", "atom_energy", "forces", "virial", "atom_virial")

# TorchScript extra files, one per key
METADATA_KEYS = (
    "format_version",
    "species",
    "cutoff",
    "num_interactions",
    "dtype",
    "units",
    "model_kind",
    "forces",
    "nnp_version",
    "provenance",
)
DTYPES = ("float32", "float64")
FORCE_KINDS = ("conservative", "direct")

MODEL_SUFFIX = ".nnp.pt"

"""The model contract shared by the Python models, the exporter and the C++ pair style.

The prose lives in ``docs/model_contract.md``; this module is its Python mirror and
``pair_nnp/contract.h`` its C++ mirror (``tests/test_contract.py`` checks they agree).
"""

from __future__ import annotations

FORMAT_VERSION = 2  # what the exporter writes
READABLE_FORMAT_VERSIONS = (1, 2)  # what the readers accept
UNITS = "metal"  # eV, Å, eV/Å inside every model file

# forward(species, edge_index, edge_vectors, num_local) -> Dict[str, Tensor]
INPUT_KEYS = ("species", "edge_index", "edge_vectors", "num_local")
OUTPUT_KEYS = ("energy", "atom_energy", "forces", "virial", "atom_virial")
FLOAT64_OUTPUTS = ("energy", "virial")  # system sums: float64 in every model (accumulated in float64)

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
    "halo",
    "receptive_hops",
)
# keys a version-1 file does not have; readers use HALO_NONE and num_interactions for them
METADATA_KEYS_SINCE_V2 = ("halo", "receptive_hops")
DTYPES = ("float32", "float64")
FORCE_KINDS = ("conservative", "direct")

# metadata `halo`: does the model call the halo operation after each message-passing layer?
HALO_MODES = ("per_layer", "none")
HALO_PER_LAYER, HALO_NONE = HALO_MODES
# the halo operation and its adjoint (custom ops, defined in pair_nnp/halo.cpp, loaded by nnp.nn.halo)
HALO_OPS = ("nnp::halo", "nnp::halo_reverse")

MODEL_SUFFIX = ".nnp.pt"

// The model contract, C++ mirror of python/nnp/contract.py (prose: docs/model_contract.md).
// tests/test_contract.py checks that both mirrors agree.
#ifndef NNP_CONTRACT_H
#define NNP_CONTRACT_H

namespace nnp {
namespace contract {

constexpr int FORMAT_VERSION = 1;
constexpr const char *UNITS = "metal";

// forward(species, edge_index, edge_vectors, num_local) -> Dict[str, Tensor]
constexpr const char *INPUT_KEYS[] = {"species", "edge_index", "edge_vectors", "num_local"};
constexpr const char *OUTPUT_KEYS[] = {"energy", "atom_energy", "forces", "virial", "atom_virial"};

// TorchScript extra files, one per key
constexpr const char *METADATA_KEYS[] = {"format_version", "species", "cutoff", "num_interactions", "dtype",
                                         "units", "model_kind", "forces", "nnp_version", "provenance"};
constexpr const char *DTYPES[] = {"float32", "float64"};
constexpr const char *FORCE_KINDS[] = {"conservative", "direct"};

}  // namespace contract
}  // namespace nnp

#endif

// The model contract, C++ mirror of python/nnp/contract.py (prose: docs/model_contract.md).
// tests/test_contract.py checks that both mirrors agree. The evaluator and the pair style index these
// arrays with the enums below instead of repeating the strings.
#ifndef NNP_CONTRACT_H
#define NNP_CONTRACT_H

namespace nnp {
namespace contract {

constexpr int FORMAT_VERSION = 2;  // what the exporter writes
constexpr int READABLE_FORMAT_VERSIONS[] = {1, 2};
constexpr const char *UNITS = "metal";
// LAMMPS `real` energies are kcal/mol (python/nnp/units.py: KCAL_PER_MOL_PER_EV, ASE's value)
constexpr double KCAL_PER_MOL_PER_EV = 23.060548012069496;

// forward(species, edge_index, edge_vectors, num_local) -> Dict[str, Tensor]
constexpr const char *INPUT_KEYS[] = {"species", "edge_index", "edge_vectors", "num_local"};
constexpr const char *OUTPUT_KEYS[] = {"energy", "atom_energy", "forces", "virial", "atom_virial"};
enum Output { ENERGY, ATOM_ENERGY, FORCES, VIRIAL, ATOM_VIRIAL };

// TorchScript extra files, one per key
constexpr const char *METADATA_KEYS[] = {"format_version", "species", "cutoff", "num_interactions", "dtype",
                                         "units", "model_kind", "forces", "nnp_version", "provenance",
                                         "halo", "receptive_hops"};
enum Metadata {
  META_FORMAT_VERSION, META_SPECIES, META_CUTOFF, META_NUM_INTERACTIONS, META_DTYPE, META_UNITS,
  META_MODEL_KIND, META_FORCES, META_NNP_VERSION, META_PROVENANCE, META_HALO, META_RECEPTIVE_HOPS
};
// keys a version-1 file does not have (readers use "none" and num_interactions)
constexpr const char *METADATA_KEYS_SINCE_V2[] = {"halo", "receptive_hops"};

constexpr const char *DTYPES[] = {"float32", "float64"};
enum Dtype { FLOAT32, FLOAT64 };
constexpr const char *FORCE_KINDS[] = {"conservative", "direct"};
enum ForceKind { CONSERVATIVE, DIRECT };
constexpr const char *HALO_MODES[] = {"per_layer", "none"};
enum HaloMode { HALO_PER_LAYER, HALO_NONE };
constexpr const char *HALO_OPS[] = {"nnp::halo", "nnp::halo_reverse"};

constexpr const char *MODEL_SUFFIX = ".nnp.pt";
constexpr const char *PT2_SUFFIX = ".nnp.pt2";  // torch.export + AOTInductor package
// smallest graph a .pt2 program accepts (smaller graphs get padded)
constexpr int PT2_MIN_NODES = 2;
constexpr int PT2_MIN_EDGES = 2;

}  // namespace contract
}  // namespace nnp

#endif

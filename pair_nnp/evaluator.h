// Loads an nnp model file, validates its metadata against the contract, and evaluates it.
// Shared by the LAMMPS pair style and the Python binding (and so by the ASE calculator).
#ifndef NNP_EVALUATOR_H
#define NNP_EVALUATOR_H

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "backend.h"

namespace nnp {

struct ModelInfo {
  std::vector<std::string> species;  // element symbols in species-index order
  double cutoff = 0.0;               // Å
  int num_interactions = 0;          // message-passing layers
  bool halo_per_layer = false;       // calls nnp::halo after each layer (contract v2, metadata halo)
  int receptive_hops = 0;            // an atom's energy reaches this many edges (hops) through the graph
  std::string dtype;                 // float32 | float64
  std::string model_kind;
  bool direct_forces = false;        // forces from a head, not the energy gradient
  std::map<std::string, std::string> metadata;  // every metadata key, as stored
};

// Outputs of one evaluation, as contiguous float64 CPU tensors.
struct Result {
  double energy = 0.0;
  torch::Tensor atom_energy;  // (N,)
  torch::Tensor forces;       // (N, 3)
  torch::Tensor virial;       // (3, 3)
  torch::Tensor atom_virial;  // (N, 3, 3)
};

class Evaluator {
 public:
  // name_or_path: a TorchScript file (*.nnp.pt) or an AOTInductor package (*.nnp.pt2), chosen by suffix,
  // or the name of a bundled model (resolve_model_path). device: "cpu", "cuda", "cuda:K"; throws Error on a
  // missing/corrupt/foreign file or bad device.
  Evaluator(const std::string &name_or_path, const std::string &device = "cpu");

  const std::string &path() const { return path_; }  // the file that was loaded
  const ModelInfo &info() const { return info_; }
  std::string device() const { return device_.str(); }
  const torch::Device &torch_device() const { return device_; }
  torch::ScalarType dtype() const { return dtype_; }

  // Tensors already on the model's device: species (N,) int64, edge_index (2, E) int64, edge_vectors
  // (E, 3) in the model dtype. Returns the model's outputs without copying them anywhere.
  Outputs forward(const torch::Tensor &species, const torch::Tensor &edge_index, const torch::Tensor &edge_vectors,
                  int64_t num_local);

  // species: N indices; edge_index: 2*E (row 0 centres, row 1 neighbours); edge_vectors: E*3 (Å).
  Result evaluate(const int64_t *species, int64_t num_nodes, const int64_t *edge_index,
                  const double *edge_vectors, int64_t num_edges, int64_t num_local);

  // Index of the first node with a non-finite force (any node) or energy (nodes < num_local; a negative
  // num_local checks every node), or -1 when all are finite. A non-finite total energy or virial without
  // a non-finite atom returns num_nodes.
  static int64_t first_non_finite(const Result &result, int64_t num_local = -1);

 private:
  std::string path_;
  ModelInfo info_;
  torch::Device device_;
  torch::ScalarType dtype_;
  std::unique_ptr<Backend> backend_;
};

// The one validator of model-file metadata (TorchScript and .pt2; Python's nnp.export.check_metadata calls
// it through the binding): every contract key is checked, version-1 gaps are filled (halo none, one hop
// per layer), and a bad file is an Error naming path, the problem and the fix.
ModelInfo read_model_info(const std::string &path, const MetadataMap &stored);

// Parse "cpu", "cuda", "cuda:K"; "cuda" on a machine without CUDA is an Error naming the problem.
torch::Device parse_device(const std::string &device);

}  // namespace nnp

#endif

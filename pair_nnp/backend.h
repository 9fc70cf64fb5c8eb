// How a model file is run: one interface, two formats (docs/model_contract.md, "File formats").
//   TorchScript  *.nnp.pt   torch::jit::load, metadata in the archive's extra files (backend_torchscript.cpp)
//   AOTInductor  *.nnp.pt2  torch.export + AOTInductor package, metadata in the package (backend_aoti.cpp)
// The Evaluator picks one by file suffix and validates the metadata the same way for both.
#ifndef NNP_BACKEND_H
#define NNP_BACKEND_H

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>

#include <torch/torch.h>

namespace nnp {

// Every problem with a model file or an evaluation, with a message meant for the user.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Outputs of one evaluation as the model returned them: on the model's device, in its dtype.
struct Outputs {
  torch::Tensor energy;       // ()
  torch::Tensor atom_energy;  // (N,)
  torch::Tensor forces;       // (N, 3)
  torch::Tensor virial;       // (3, 3)
  torch::Tensor atom_virial;  // (N, 3, 3)
};

using MetadataMap = std::unordered_map<std::string, std::string>;

class Backend {
 public:
  virtual ~Backend() = default;
  // Every metadata string stored in the file (the contract's keys among them, if nnp wrote it).
  virtual const MetadataMap &metadata() const = 0;
  // Contract inputs on the model's device; throws Error when the model fails.
  virtual Outputs forward(const torch::Tensor &species, const torch::Tensor &edge_index,
                          const torch::Tensor &edge_vectors, int64_t num_local) = 0;
};

// Throws Error naming the file when it cannot be loaded as that format.
std::unique_ptr<Backend> open_torchscript(const std::string &path, const torch::Device &device);
std::unique_ptr<Backend> open_aoti(const std::string &path, const torch::Device &device);

// By suffix: ".pt2" -> AOTInductor, anything else -> TorchScript.
std::unique_ptr<Backend> open_backend(const std::string &path, const torch::Device &device);

std::string first_line(const std::string &text);

}  // namespace nnp

#endif

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

#include <c10/core/DeviceGuard.h>
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
std::string aoti_device_type(const std::string &path);  // compiled_device_type of a .pt2 package

// By suffix: ".pt2" -> AOTInductor, anything else -> TorchScript.
std::unique_ptr<Backend> open_backend(const std::string &path, const torch::Device &device);

// The device type a file was compiled for: "cpu" or "cuda" for a .pt2 package (AOTInductor compiles for
// one), "" for a TorchScript file (runs on any device). Throws Error when a .pt2 package is unreadable.
std::string compiled_device_type(const std::string &path);

// Makes `device` this thread's current device while it lives (nothing on the CPU), so that every CUDA
// call of a rank on cuda:1 (kernels, streams, pinned host buffers, the CUDA context itself) goes to
// cuda:1 and not to device 0. Device-generic (c10::OptionalDeviceGuard): compiles against CPU-only torch.
class DeviceScope {
 public:
  explicit DeviceScope(const torch::Device &device) {
    if (!device.is_cpu()) guard_.reset_device(device);
  }

 private:
  c10::OptionalDeviceGuard guard_;
};

// Waits for the work queued so far on this thread's current stream of `device` (nothing on the CPU):
// this rank's work only, unlike torch::cuda::synchronize() (the whole current device, device 0 by default).
void synchronize_stream(const torch::Device &device);

std::string first_line(const std::string &text);

}  // namespace nnp

#endif

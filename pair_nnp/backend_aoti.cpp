// AOTInductor packages (*.nnp.pt2), written by `nnp export --format pt2` (python/nnp/export_pt2.py).
// The compiled program takes (species, edge_index, edge_vectors, num_local as a 0-d int64 tensor) and
// returns the outputs as a list in contract::OUTPUT_KEYS order. Its dynamic node and edge dims start at
// PT2_MIN_NODES / PT2_MIN_EDGES: smaller graphs get two dummy nodes joined by two edges, after every
// real node and touching none, and the outputs are cut back to the real nodes. A model that calls
// nnp::halo reaches the op through the dispatcher: it is registered by libnnp_core.so, which holds
// this file, so it is always loaded before the package.
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include "backend.h"
#include "contract.h"

namespace nnp {

namespace {

using torch::inductor::AOTIModelPackageLoader;

constexpr double DUMMY_EDGE_LENGTH = 1.0;  // Å; the dummy nodes see nothing else, any length works
constexpr const char *DEVICE_KEY = "AOTI_DEVICE_KEY";  // written by AOTInductor into every package

std::string not_a_package(const std::string &path) {
  return path + " is not a .pt2 model package (export one with `nnp export --format pt2`): ";
}

MetadataMap read_package_metadata(const std::string &path) {
  MetadataMap metadata;
  try {
    for (const auto &[key, value] : AOTIModelPackageLoader::load_metadata_from_package(path, "model"))
      metadata[key] = value;
  } catch (const c10::Error &err) {
    throw Error(not_a_package(path) + first_line(err.what_without_backtrace()));
  } catch (const std::exception &err) {
    throw Error(not_a_package(path) + first_line(err.what()));
  }
  return metadata;
}

class AotiBackend : public Backend {
 public:
  AotiBackend(const std::string &path, const torch::Device &device) : device_(device) {
    const std::string hint = not_a_package(path);
    metadata_ = read_package_metadata(path);
    const std::string compiled_for = metadata_.count(DEVICE_KEY) ? metadata_.at(DEVICE_KEY) : "";
    const std::string wanted = c10::DeviceTypeName(device.type(), /*lower_case=*/true);
    if (compiled_for != wanted)
      throw Error(path + " was compiled for device '" + compiled_for + "', not " + device.str() +
                  ": export it again for this device (nnp export --format pt2 --device " + wanted +
                  ") or run on " + compiled_for + " (pair_style nnp device " + compiled_for + ")");
    DeviceScope scope(device);  // the loader's CUDA kernels and constants on this rank's device
    try {
      loader_ = std::make_unique<AOTIModelPackageLoader>(path, "model", false, 1,
                                                         device.has_index() ? device.index() : -1);
    } catch (const c10::Error &err) {
      throw Error(hint + first_line(err.what_without_backtrace()));
    } catch (const std::exception &err) {
      throw Error(hint + first_line(err.what()));
    }
  }

  const MetadataMap &metadata() const override { return metadata_; }

  Outputs forward(const torch::Tensor &species, const torch::Tensor &edge_index, const torch::Tensor &edge_vectors,
                  int64_t num_local) override {
    DeviceScope scope(device_);
    const int64_t n = species.size(0);
    std::vector<torch::Tensor> inputs{species.contiguous(), edge_index.contiguous(), edge_vectors.contiguous(),
                                      torch::scalar_tensor(num_local, torch::dtype(torch::kInt64).device(device_))};
    if (n < contract::PT2_MIN_NODES || edge_index.size(1) < contract::PT2_MIN_EDGES) pad(inputs, n);
    std::vector<torch::Tensor> out;
    try {
      out = loader_->run(inputs);
    } catch (const std::exception &err) {
      throw Error(std::string("model evaluation failed: ") + first_line(err.what()));
    }
    constexpr size_t num_outputs = sizeof(contract::OUTPUT_KEYS) / sizeof(contract::OUTPUT_KEYS[0]);
    if (out.size() != num_outputs)
      throw Error("compiled model returned " + std::to_string(out.size()) + " outputs, expected " +
                  std::to_string(num_outputs) + " (contract violation)");
    using namespace contract;
    auto nodes = [&](Output key) { return out[key].narrow(0, 0, std::min<int64_t>(n, out[key].size(0))); };
    return Outputs{out[ENERGY], nodes(ATOM_ENERGY), nodes(FORCES), out[VIRIAL], nodes(ATOM_VIRIAL)};
  }

 private:
  // Two dummy nodes (n, n+1) and the edges n->n+1, n+1->n: non-local, unconnected to the real graph.
  void pad(std::vector<torch::Tensor> &inputs, int64_t n) const {
    auto as_long = torch::dtype(torch::kInt64).device(device_);
    inputs[0] = torch::cat({inputs[0], torch::zeros({2}, as_long)});
    inputs[1] = torch::cat({inputs[1], torch::tensor({n, n + 1, n + 1, n}, as_long).view({2, 2})}, 1);
    auto step = torch::zeros({2, 3}, inputs[2].options());
    step.select(1, 0).copy_(torch::tensor({DUMMY_EDGE_LENGTH, -DUMMY_EDGE_LENGTH}, inputs[2].options()));
    inputs[2] = torch::cat({inputs[2], step});
  }

  torch::Device device_;
  MetadataMap metadata_;
  std::unique_ptr<AOTIModelPackageLoader> loader_;
};

}  // namespace

std::unique_ptr<Backend> open_aoti(const std::string &path, const torch::Device &device) {
  return std::make_unique<AotiBackend>(path, device);
}

std::string aoti_device_type(const std::string &path) {
  const MetadataMap metadata = read_package_metadata(path);
  return metadata.count(DEVICE_KEY) ? metadata.at(DEVICE_KEY) : "";
}

}  // namespace nnp

// TorchScript model files (*.nnp.pt): the model's forward returns Dict[str, Tensor].
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/script.h>

#include "backend.h"
#include "contract.h"

namespace nnp {

namespace {

class TorchScriptBackend : public Backend {
 public:
  TorchScriptBackend(const std::string &path, const torch::Device &device) {
    // Graph sizes change every MD step; the profiling executor would re-specialise the graph for each new
    // shape (measured 2.2x slower per evaluation for aspirin). The plain executor runs the same ops.
    torch::jit::setGraphExecutorOptimize(false);
    std::unordered_map<std::string, std::string> extra;
    for (const char *key : contract::METADATA_KEYS) extra[key] = "";
    const std::string hint = path + " is not a TorchScript model file (export one with `nnp export`): ";
    try {
      module_ = torch::jit::load(path, device, extra);
    } catch (const c10::Error &err) {
      throw Error(hint + first_line(err.what_without_backtrace()));
    } catch (const std::exception &err) {
      throw Error(hint + first_line(err.what()));
    }
    module_.eval();
    for (const auto &[key, value] : extra)
      if (!value.empty()) metadata_[key] = value;
  }

  const MetadataMap &metadata() const override { return metadata_; }

  Outputs forward(const torch::Tensor &species, const torch::Tensor &edge_index, const torch::Tensor &edge_vectors,
                  int64_t num_local) override {
    using namespace contract;
    std::vector<torch::jit::IValue> inputs{species, edge_index, edge_vectors, num_local};
    torch::jit::IValue output;
    torch::jit::setGraphExecutorOptimize(false);  // thread-local: also on a thread other than the loader's
    try {
      output = module_.forward(inputs);
    } catch (const std::exception &err) {
      throw Error(std::string("model evaluation failed: ") + first_line(err.what()));
    }
    if (!output.isGenericDict()) throw Error("model output is not a dictionary (contract violation)");
    auto out = output.toGenericDict();
    auto get = [&](Output key) {
      auto it = out.find(std::string(OUTPUT_KEYS[key]));
      if (it == out.end())
        throw Error(std::string("model output lacks '") + OUTPUT_KEYS[key] + "' (contract violation)");
      return it->value().toTensor().detach();
    };
    return Outputs{get(ENERGY), get(ATOM_ENERGY), get(FORCES), get(VIRIAL), get(ATOM_VIRIAL)};
  }

 private:
  torch::jit::Module module_;
  MetadataMap metadata_;
};

}  // namespace

std::unique_ptr<Backend> open_torchscript(const std::string &path, const torch::Device &device) {
  return std::make_unique<TorchScriptBackend>(path, device);
}

}  // namespace nnp

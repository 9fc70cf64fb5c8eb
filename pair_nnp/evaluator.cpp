#include "evaluator.h"
#include "model_path.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include <c10/core/impl/VirtualGuardImpl.h>
#include <torch/cuda.h>

#include "contract.h"

namespace nnp {

namespace {

std::vector<std::string> split_words(const std::string &text) {
  std::istringstream stream(text);
  std::vector<std::string> words;
  for (std::string word; stream >> word;) words.push_back(word);
  return words;
}

bool ends_with(const std::string &text, const std::string &suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::string first_line(const std::string &text) { return text.substr(0, text.find('\n')); }

std::unique_ptr<Backend> open_backend(const std::string &path, const torch::Device &device) {
  return ends_with(path, ".pt2") ? open_aoti(path, device) : open_torchscript(path, device);
}

std::string compiled_device_type(const std::string &path) {
  return ends_with(path, ".pt2") ? aoti_device_type(path) : std::string();
}

void synchronize_stream(const torch::Device &device) {
  if (device.is_cpu()) return;
  c10::impl::VirtualGuardImpl(device.type()).getStream(device).synchronize();
}

torch::Device parse_device(const std::string &device) {
  if (device == "cpu") return torch::Device(torch::kCPU);
  if (device.rfind("cuda", 0) == 0) {
    if (!torch::cuda::is_available())
      throw Error("device " + device + " requested, but " +
                  (torch::cuda::device_count() == 0 ? std::string("no CUDA GPU is visible")
                                                    : std::string("CUDA is not usable")) +
                  " (this torch may be a CPU-only build): use device cpu");
    try {
      return torch::Device(device);
    } catch (const c10::Error &) {
      throw Error("cannot parse device '" + device + "': use cpu, cuda or cuda:K");
    }
  }
  throw Error("unknown device '" + device + "': use cpu, cuda or cuda:K");
}

namespace {

using namespace contract;

bool is_readable_version(const std::string &version) {
  for (int v : READABLE_FORMAT_VERSIONS)
    if (version == std::to_string(v)) return true;
  return false;
}

std::string readable_versions() {
  std::string out;
  for (int v : READABLE_FORMAT_VERSIONS) out += (out.empty() ? "" : " and ") + std::to_string(v);
  return out;
}

bool since_v2(const std::string &key) {
  for (const char *k : METADATA_KEYS_SINCE_V2)
    if (key == k) return true;
  return false;
}

}  // namespace

Evaluator::Evaluator(const std::string &name_or_path, const std::string &device)
    : path_(resolve_model_path(name_or_path)), device_(parse_device(device)), dtype_(torch::kFloat64) {
  DeviceScope scope(device_);  // the model's weights, its CUDA context and AOTInductor's kernels on device_
  backend_ = open_backend(path_, device_);
  info_ = read_model_info(path_, backend_->metadata());
  dtype_ = info_.dtype == DTYPES[FLOAT32] ? torch::kFloat32 : torch::kFloat64;
}

namespace {

void read_halo_metadata(ModelInfo &info, const std::string &path, const MetadataMap &extra, bool version_1) {
  if (version_1) {  // no halo calls; an atom's energy reaches one cutoff per layer
    info.halo_per_layer = false;
    info.receptive_hops = info.num_interactions;
    info.metadata[METADATA_KEYS[META_HALO]] = HALO_MODES[HALO_NONE];
    info.metadata[METADATA_KEYS[META_RECEPTIVE_HOPS]] = std::to_string(info.num_interactions);
    return;
  }
  const std::string &halo = extra.at(METADATA_KEYS[META_HALO]);
  if (halo != HALO_MODES[HALO_PER_LAYER] && halo != HALO_MODES[HALO_NONE])
    throw Error(path + " declares halo '" + halo + "'; expected " + HALO_MODES[HALO_PER_LAYER] + " or " +
                HALO_MODES[HALO_NONE]);
  info.halo_per_layer = halo == HALO_MODES[HALO_PER_LAYER];
  const std::string &hops = extra.at(METADATA_KEYS[META_RECEPTIVE_HOPS]);
  try {
    info.receptive_hops = std::stoi(hops);
  } catch (const std::exception &) {
    throw Error(path + ": metadata receptive_hops '" + hops + "' is not a number");
  }
  if (info.receptive_hops < 1) throw Error(path + ": receptive_hops must be positive");
}

}  // namespace

ModelInfo read_model_info(const std::string &path, const MetadataMap &stored) {
  ModelInfo info;
  MetadataMap extra;
  for (const char *key : METADATA_KEYS) extra[key] = stored.count(key) ? stored.at(key) : "";
  const std::string version = extra[METADATA_KEYS[META_FORMAT_VERSION]];
  const bool version_1 = version == "1";
  std::string missing;
  for (const char *key : METADATA_KEYS) {
    // keys added in version 2 are required once the file says it is version 2 or later
    const bool optional = key == std::string(METADATA_KEYS[META_PROVENANCE]) || ((version_1 || version.empty()) && since_v2(key));
    if (extra[key].empty() && !optional) missing += std::string(missing.empty() ? "" : ", ") + key;
    info.metadata[key] = extra[key];
  }
  if (!version.empty() && !is_readable_version(version))
    throw Error(path + " has model format version " + version + ", this nnp reads " + readable_versions() +
                ": upgrade nnp or re-export the model");
  if (!missing.empty())
    throw Error(path + " lacks nnp metadata (" + missing + "): it was not written by nnp export");
  if (extra[METADATA_KEYS[META_UNITS]] != UNITS)
    throw Error(path + " declares units '" + extra[METADATA_KEYS[META_UNITS]] + "'; format version " + version +
                " requires " + UNITS);
  info.dtype = extra[METADATA_KEYS[META_DTYPE]];
  if (info.dtype != DTYPES[FLOAT64] && info.dtype != DTYPES[FLOAT32])
    throw Error(path + " declares dtype '" + info.dtype + "'; expected " + DTYPES[FLOAT32] + " or " +
                DTYPES[FLOAT64]);
  info.species = split_words(extra[METADATA_KEYS[META_SPECIES]]);
  if (info.species.empty()) throw Error(path + " declares no species");
  const std::string &cutoff = extra[METADATA_KEYS[META_CUTOFF]];
  const std::string &layers = extra[METADATA_KEYS[META_NUM_INTERACTIONS]];
  try {
    info.cutoff = std::stod(cutoff);
    info.num_interactions = std::stoi(layers);
  } catch (const std::exception &) {
    throw Error(path + ": metadata cutoff '" + cutoff + "' or num_interactions '" + layers + "' is not a number");
  }
  if (!(info.cutoff > 0.0) || info.num_interactions < 1)
    throw Error(path + ": cutoff and num_interactions must be positive");
  info.model_kind = extra[METADATA_KEYS[META_MODEL_KIND]];
  const std::string &forces = extra[METADATA_KEYS[META_FORCES]];
  if (forces != FORCE_KINDS[CONSERVATIVE] && forces != FORCE_KINDS[DIRECT])
    throw Error(path + " declares forces '" + forces + "'; expected " + FORCE_KINDS[CONSERVATIVE] + " or " +
                FORCE_KINDS[DIRECT]);
  info.direct_forces = forces == FORCE_KINDS[DIRECT];
  read_halo_metadata(info, path, extra, version_1);
  return info;
}

Outputs Evaluator::forward(const torch::Tensor &species, const torch::Tensor &edge_index,
                           const torch::Tensor &edge_vectors, int64_t num_local) {
  DeviceScope scope(device_);
  Outputs result = backend_->forward(species, edge_index, edge_vectors, num_local);
  const int64_t num_nodes = species.size(0);
  if (result.forces.size(0) != num_nodes || result.atom_energy.size(0) != num_nodes)
    throw Error("model returned outputs for " + std::to_string(result.forces.size(0)) + " nodes, expected " +
                std::to_string(num_nodes) + " (contract violation)");
  return result;
}

Result Evaluator::evaluate(const int64_t *species, int64_t num_nodes, const int64_t *edge_index,
                           const double *edge_vectors, int64_t num_edges, int64_t num_local) {
  DeviceScope scope(device_);
  auto as_long = torch::TensorOptions().dtype(torch::kInt64);
  auto as_double = torch::TensorOptions().dtype(torch::kFloat64);
  // from_blob does not own the memory: .to() copies onto the device / into the model dtype
  // (empty inputs may come with null pointers: build those tensors without from_blob)
  torch::Tensor t_species =
      num_nodes > 0 ? torch::from_blob(const_cast<int64_t *>(species), {num_nodes}, as_long).to(device_)
                    : torch::empty({0}, as_long.device(device_));
  torch::Tensor t_edges =
      num_edges > 0 ? torch::from_blob(const_cast<int64_t *>(edge_index), {2, num_edges}, as_long).to(device_)
                    : torch::empty({2, 0}, as_long.device(device_));
  torch::Tensor t_vectors =
      num_edges > 0 ? torch::from_blob(const_cast<double *>(edge_vectors), {num_edges, 3}, as_double)
                          .to(device_, dtype_, /*non_blocking=*/false, /*copy=*/true)
                    : torch::empty({0, 3}, torch::TensorOptions().dtype(dtype_).device(device_));
  Outputs out = forward(t_species, t_edges, t_vectors, num_local);
  auto host = [](const torch::Tensor &t) { return t.to(torch::kCPU, torch::kFloat64).contiguous(); };
  Result result;
  result.energy = host(out.energy).item<double>();
  result.atom_energy = host(out.atom_energy);
  result.forces = host(out.forces);
  result.virial = host(out.virial);
  result.atom_virial = host(out.atom_virial);
  return result;
}

int64_t Evaluator::first_non_finite(const Result &result, int64_t num_local) {
  const int64_t n = result.atom_energy.size(0);
  if (num_local < 0 || num_local > n) num_local = n;
  const double *e = result.atom_energy.data_ptr<double>();
  const double *f = result.forces.data_ptr<double>();
  for (int64_t i = 0; i < n; ++i)
    if ((i < num_local && !std::isfinite(e[i])) || !std::isfinite(f[3 * i]) || !std::isfinite(f[3 * i + 1]) ||
        !std::isfinite(f[3 * i + 2]))
      return i;
  if (!std::isfinite(result.energy)) return n;
  const double *w = result.virial.data_ptr<double>();
  for (int k = 0; k < 9; ++k)
    if (!std::isfinite(w[k])) return n;
  return -1;
}

}  // namespace nnp

// The ensemble of pair_style nnp (`pair_style nnp ensemble m2.nnp.pt m3.nnp.pt out_freq N out_file F`):
// extra models evaluated on the driving model's graph every out_freq steps, their forces brought to
// the owners of ghost atoms, the model deviation (deviation.h) reduced over ranks, written to a file
// and kept for compute nnp/deviation. Nothing runs between deviation steps.
#ifndef LMP_NNP_ENSEMBLE_H
#define LMP_NNP_ENSEMBLE_H

#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "pointers.h"

namespace nnp {
class Evaluator;
class HaloExchanger;
struct Outputs;
}  // namespace nnp

namespace LAMMPS_NS {

// What the last deviation step measured, in LAMMPS units (force, energy per atom).
struct DeviationValues {
  bigint step = -1;                 // -1: never computed
  double max_f = 0.0, min_f = 0.0, avg_f = 0.0, devi_e = 0.0;
  std::vector<double> atom;         // eps_i by local atom index (owned atoms; 0 for NULL types)
};

class NNPEnsemble : protected Pointers {
 public:
  NNPEnsemble(LAMMPS *lmp, std::vector<std::string> paths, bigint out_freq, std::string out_file);
  ~NNPEnsemble() override;

  // Loads every member on the driver's device; an incompatible member is an error naming its file.
  void load(const nnp::Evaluator &driver, const std::string &driver_path);
  bool due(bigint step) const { return step % out_freq_ == 0; }
  bigint out_freq() const { return out_freq_; }
  int members() const { return static_cast<int>(models_.size()) + 1; }  // the driver included
  bool loaded() const { return !models_.empty(); }
  const DeviationValues &last() const { return last_; }

  // Evaluates the members on the driver's graph and updates last(). `halo` is the exchanger the
  // members' nnp::halo calls use (nullptr: none); `reverse` adds ghost rows of a (nodes, F) tensor to
  // their owners (nullptr when every node is owned). Collective over all ranks.
  void evaluate(const nnp::Outputs &driver, const torch::Tensor &species, const torch::Tensor &edge_index,
                const torch::Tensor &edge_vectors, int64_t num_local, nnp::HaloExchanger *halo,
                const std::function<void(torch::Tensor)> &reverse, const std::vector<int> &node_atom,
                double energy_factor);

 private:
  std::vector<std::string> paths_;
  std::vector<std::unique_ptr<nnp::Evaluator>> models_;
  bigint out_freq_;
  std::string out_file_;
  FILE *out_ = nullptr;
  bigint written_step_ = -1;
  DeviationValues last_;

  void write();
};

}  // namespace LAMMPS_NS

#endif

// The ensemble of pair_style nnp (`pair_style nnp ensemble m2.nnp.pt m3.nnp.pt out_freq N out_file F
// [relative L] [relative_v L] [atomic]`): extra models evaluated on the driving model's graph every
// out_freq steps, their forces brought to the owners of ghost atoms, the model deviation (deviation.h)
// reduced over ranks, written to a file in DeePMD-kit's columns (so DP-GEN reads it) and kept for
// compute nnp/deviation. Nothing runs between deviation steps.
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

// The ensemble's keywords of pair_style nnp, with DeePMD-kit's names and defaults.
struct DeviationOptions {
  bigint out_freq = 100;
  std::string out_file = "model_devi.out";
  double relative = -1.0;    // >= 0: force deviation relative to |<F_i>| + relative (LAMMPS force units)
  double relative_v = -1.0;  // >= 0: virial deviation relative to |<Xi_ab>|/N + relative_v (energy units)
  bool atomic = false;       // append eps_i of every atom, in atom-ID order, to each line of out_file
};

// What the last deviation step measured, in LAMMPS units (force; energy per atom for virial and energy),
// or dimensionless where a relative level was given.
struct DeviationValues {
  bigint step = -1;                 // -1: never computed
  double max_v = 0.0, min_v = 0.0, avg_v = 0.0;
  double max_f = 0.0, min_f = 0.0, avg_f = 0.0, devi_e = 0.0;
  std::vector<double> atom;         // eps_i by local atom index (owned atoms; 0 for NULL types)
};

class NNPEnsemble : protected Pointers {
 public:
  NNPEnsemble(LAMMPS *lmp, std::vector<std::string> paths, DeviationOptions options);
  ~NNPEnsemble() override;

  // Loads every member on the driver's device; an incompatible member is an error naming its file.
  void load(const nnp::Evaluator &driver, const std::string &driver_path);
  bool due(bigint step) const { return step % options_.out_freq == 0; }
  bigint out_freq() const { return options_.out_freq; }
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
  DeviationOptions options_;
  FILE *out_ = nullptr;
  bigint written_step_ = -1;
  DeviationValues last_;

  // eps_i of every atom in atom-ID order on rank 0 (empty elsewhere); collective
  std::vector<double> gather_atoms() const;
  void write(const std::vector<double> &atoms);
};

}  // namespace LAMMPS_NS

#endif

// Ensemble model deviation (DeePMD-kit's definitions, so DP-GEN users recognise the numbers), shared by
// the LAMMPS pair style and the Python binding (and so by the ASE calculator):
//   per-atom force deviation  eps_i = sqrt( < |F_i - <F_i>|^2 > )   (<> = mean over ALL members)
//   virial deviation     eps_ab = std over members of Xi_ab / N      (9 components, population std)
//   energy deviation per atom        = std over members of E / N    (population std, ddof 0)
// DeePMD's relative deviations divide by the size of the mean plus a level: eps_i / (|<F_i>| + level),
// eps_ab / (|<Xi_ab>| / N + level). The driving model counts as a member.
#ifndef NNP_DEVIATION_H
#define NNP_DEVIATION_H

#include <string>
#include <vector>

#include <torch/torch.h>

#include "evaluator.h"

namespace nnp {

// forces: (M, N, 3) on any device and float dtype -> (N,) float64 on the same device;
// relative_level >= 0: eps_i / (|<F_i>| + relative_level) (the level in the forces' units).
torch::Tensor force_deviation(const torch::Tensor &forces, double relative_level = -1.0);

// virials: (M, 9) total virial of each member (same N atoms) -> (9,) std over members of virial / N;
// relative_level >= 0: divided by |<virial_ab>| / N + relative_level (energy units per atom).
std::vector<double> virial_deviation(const std::vector<std::vector<double>> &virials, double num_atoms,
                                     double relative_level = -1.0);

// DeePMD's summary of the nine virial deviations: max, min and root mean square.
struct VirialSummary {
  double max = 0.0, min = 0.0, avg = 0.0;
};
VirialSummary summarize_virial(const std::vector<double> &eps_ab);

// energies: total energy of each member (same N atoms) -> std over members of E / num_atoms.
double energy_deviation(const std::vector<double> &energies, double num_atoms);

// Throws Error naming member_path when the member cannot share the driver's graph: different species
// (or species order), cutoff, units, or halo mode, or a larger receptive field than the driver.
void check_ensemble_member(const ModelInfo &driver, const std::string &driver_path, const ModelInfo &member,
                           const std::string &member_path);

}  // namespace nnp

#endif

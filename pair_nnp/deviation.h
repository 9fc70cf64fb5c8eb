// Ensemble model deviation (DeePMD-kit's definitions, so DP-GEN users recognise the numbers), shared by
// the LAMMPS pair style and the Python binding (and so by the ASE calculator):
//   per-atom force deviation  eps_i = sqrt( < |F_i - <F_i>|^2 > )   (<> = mean over ALL members)
//   energy deviation per atom        = std over members of E / N    (population std, ddof 0)
// The driving model counts as a member.
#ifndef NNP_DEVIATION_H
#define NNP_DEVIATION_H

#include <string>
#include <vector>

#include <torch/torch.h>

#include "evaluator.h"

namespace nnp {

// forces: (M, N, 3) on any device and float dtype -> (N,) float64 on the same device.
torch::Tensor force_deviation(const torch::Tensor &forces);

// energies: total energy of each member (same N atoms) -> std over members of E / num_atoms.
double energy_deviation(const std::vector<double> &energies, double num_atoms);

// Throws Error naming member_path when the member cannot share the driver's graph: different species
// (or species order), cutoff, units, or halo mode, or a larger receptive field than the driver.
void check_ensemble_member(const ModelInfo &driver, const std::string &driver_path, const ModelInfo &member,
                           const std::string &member_path);

}  // namespace nnp

#endif

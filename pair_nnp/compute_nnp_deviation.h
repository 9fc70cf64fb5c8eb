// compute ID group nnp/deviation
// The ensemble model deviation that pair_style nnp (keyword ensemble) measured on this step:
//   global vector [1] max_devi_f  [2] min_devi_f  [3] avg_devi_f  (force units)  [4] devi_e (energy/atom)
//                 [5] max_devi_v  [6] min_devi_v  [7] avg_devi_v  (energy/atom; ratios where relative)
//   per-atom vector: eps_i (force units) for atoms of the group, 0 for others.
// The pair style measures only every out_freq steps; invoking the compute on any other step is an
// error (a stale value would let fix halt miss the step it should stop at).
#ifndef LMP_COMPUTE_NNP_DEVIATION_H
#define LMP_COMPUTE_NNP_DEVIATION_H

#include "compute.h"

namespace LAMMPS_NS {

class PairNNP;
struct DeviationValues;

class ComputeNNPDeviation : public Compute {
 public:
  ComputeNNPDeviation(class LAMMPS *, int, char **);
  ~ComputeNNPDeviation() override;
  void init() override;
  void compute_vector() override;
  void compute_peratom() override;
  double memory_usage() override;

 private:
  PairNNP *pair = nullptr;
  int nmax = 0;
  double *values = nullptr;  // per-atom eps_i
  const DeviationValues &current(const char *what);
};

}  // namespace LAMMPS_NS

#endif

// compute ID group bond/deviation El_1 ... El_ntypes [scale s] [reference FILE]
// Global scalar: max over covalent bonds |d - d_ref| (Angstrom), with bonds and d_ref taken from the
// configuration at the first invocation (d < s * (r_cov,i + r_cov,j), s = 1.2 by default), or read from
// FILE (lines "tag_i tag_j d_ref", '#' starts a comment): a run continued from a restart keeps the bonds of
// the structure it started from.
// Meant for `fix halt` so that unstable MD stops at the first broken bond (MDsim protocol).
#ifndef LMP_COMPUTE_BOND_DEVIATION_H
#define LMP_COMPUTE_BOND_DEVIATION_H

#include <string>
#include <vector>

#include "compute.h"

namespace LAMMPS_NS {

class ComputeBondDeviation : public Compute {
 public:
  ComputeBondDeviation(class LAMMPS *, int, char **);
  void init() override;
  double compute_scalar() override;

 private:
  struct Bond {
    tagint i, j;
    double length;
  };
  std::vector<double> type_radius;  // covalent radius per atom type (index 0 unused)
  double scale = 1.2;
  bool have_reference = false;
  std::vector<Bond> bonds;
  std::string reference_file;
  void find_bonds();
  void read_bonds();
};

}  // namespace LAMMPS_NS

#endif

// fix ID group nvt/mdsim T tau
// Nose-Hoover NVT with ONE thermostat variable per molecule ID (atom_style with molecule IDs; with
// atom_style atomic the whole group is one molecule), integrated with MDsim's discretisation
// (Fu et al. 2023, mdsim/md/integrator.py NoseHoover; ttime * timestep = tau):
//   x  += v dt + (a - zeta v) dt^2/2;  v' = v + (a - zeta v) dt/2
//   zeta += dt/(2Q) (KE(v) - KE0) + dt/(2Q) (KE(v') - KE0)          (before the new forces)
//   v   = (v' + a_new dt/2) / (1 + zeta dt/2)                          (after them)
// with, per molecule of N atoms, KE0 = 3/2 N kT and Q = 3 N kT tau^2 (3N degrees of freedom).
// Replicas of a molecule in one box are thus thermostatted independently, each exactly as a single run.
// write_restart stores every zeta; a fix with the same ID defined after read_restart continues with them.
#ifndef LMP_FIX_NVT_MDSIM_H
#define LMP_FIX_NVT_MDSIM_H

#include <vector>

#include "fix.h"

namespace LAMMPS_NS {

class FixNVTMDsim : public Fix {
 public:
  FixNVTMDsim(class LAMMPS *, int, char **);
  int setmask() override;
  void init() override;
  void setup(int) override;
  void initial_integrate(int) override;
  void final_integrate() override;
  void reset_dt() override;
  double compute_vector(int) override;  // zeta of molecule i+1 (1/time)
  void write_restart(FILE *) override;
  void restart(char *) override;

 private:
  double t_target, tau, dtv;
  std::vector<double> zeta;   // per molecule ID (index 0 unused)
  std::vector<double> natoms; // atoms of the group per molecule ID
  void count_molecules();
  void kinetic_energies(std::vector<double> &ke);
  tagint molecule_of(int i) const;
};

}  // namespace LAMMPS_NS

#endif

#include "fix_nvt_mdsim.h"

#include <algorithm>
#include <string>

#include <mpi.h>

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "update.h"
#include "utils.h"

using namespace LAMMPS_NS;
using namespace FixConst;

FixNVTMDsim::FixNVTMDsim(LAMMPS *lmp, int narg, char **arg) : Fix(lmp, narg, arg) {
  if (narg != 5) error->all(FLERR, "Illegal fix nvt/mdsim command: fix ID group nvt/mdsim T tau");
  t_target = utils::numeric(FLERR, arg[3], false, lmp);
  tau = utils::numeric(FLERR, arg[4], false, lmp);
  if (t_target <= 0.0 || tau <= 0.0) error->all(FLERR, "fix nvt/mdsim: T and tau must be positive");
  time_integrate = 1;
  vector_flag = 1;
  size_vector = 0;
  global_freq = 1;
  extvector = 0;
  restart_global = 1;
}

int FixNVTMDsim::setmask() { return INITIAL_INTEGRATE | FINAL_INTEGRATE; }

tagint FixNVTMDsim::molecule_of(int i) const { return atom->molecule_flag ? atom->molecule[i] : 1; }

void FixNVTMDsim::init() {
  dtv = update->dt;
  count_molecules();
}

void FixNVTMDsim::setup(int) { count_molecules(); }

void FixNVTMDsim::reset_dt() { dtv = update->dt; }

// Molecule IDs may have gaps (replicas deleted): the arrays are indexed by ID up to the largest one.
void FixNVTMDsim::count_molecules() {
  tagint mine = 0, largest = 0;
  for (int i = 0; i < atom->nlocal; i++)
    if (atom->mask[i] & groupbit) {
      if (molecule_of(i) <= 0) error->one(FLERR, "fix nvt/mdsim: atom in group without a molecule ID (> 0)");
      mine = std::max(mine, molecule_of(i));
    }
  MPI_Allreduce(&mine, &largest, 1, MPI_LMP_TAGINT, MPI_MAX, world);
  std::vector<double> count(largest + 1, 0.0);
  natoms.assign(largest + 1, 0.0);
  for (int i = 0; i < atom->nlocal; i++)
    if (atom->mask[i] & groupbit) count[molecule_of(i)] += 1.0;
  MPI_Allreduce(count.data(), natoms.data(), static_cast<int>(largest + 1), MPI_DOUBLE, MPI_SUM, world);
  if (zeta.size() < natoms.size()) zeta.resize(natoms.size(), 0.0);
  size_vector = static_cast<int>(largest);
}

void FixNVTMDsim::kinetic_energies(std::vector<double> &ke) {
  std::vector<double> mine(natoms.size(), 0.0);
  double **v = atom->v;
  for (int i = 0; i < atom->nlocal; i++) {
    if (!(atom->mask[i] & groupbit)) continue;
    const double m = atom->rmass_flag ? atom->rmass[i] : atom->mass[atom->type[i]];
    mine[molecule_of(i)] += 0.5 * force->mvv2e * m * (v[i][0] * v[i][0] + v[i][1] * v[i][1] + v[i][2] * v[i][2]);
  }
  ke.assign(natoms.size(), 0.0);
  MPI_Allreduce(mine.data(), ke.data(), static_cast<int>(mine.size()), MPI_DOUBLE, MPI_SUM, world);
}

void FixNVTMDsim::initial_integrate(int) {
  if (natoms.empty()) count_molecules();
  double **x = atom->x, **v = atom->v, **f = atom->f;
  std::vector<double> ke_before, ke_half;
  kinetic_energies(ke_before);
  for (int i = 0; i < atom->nlocal; i++) {
    if (!(atom->mask[i] & groupbit)) continue;
    const double m = atom->rmass_flag ? atom->rmass[i] : atom->mass[atom->type[i]];
    const double z = zeta[molecule_of(i)];
    for (int d = 0; d < 3; d++) {
      const double a = force->ftm2v * f[i][d] / m - z * v[i][d];
      x[i][d] += v[i][d] * dtv + a * (0.5 * dtv * dtv);
      v[i][d] += 0.5 * dtv * a;
    }
  }
  kinetic_energies(ke_half);
  const double kt = force->boltz * t_target;
  for (size_t mol = 1; mol < natoms.size(); mol++) {
    if (natoms[mol] == 0.0) continue;
    const double target = 1.5 * natoms[mol] * kt, q = 3.0 * natoms[mol] * kt * tau * tau;
    zeta[mol] += 0.5 * dtv / q * (ke_before[mol] - target);
    zeta[mol] += 0.5 * dtv / q * (ke_half[mol] - target);
  }
}

void FixNVTMDsim::final_integrate() {
  double **v = atom->v, **f = atom->f;
  for (int i = 0; i < atom->nlocal; i++) {
    if (!(atom->mask[i] & groupbit)) continue;
    const double m = atom->rmass_flag ? atom->rmass[i] : atom->mass[atom->type[i]];
    const double scale = 1.0 / (1.0 + 0.5 * dtv * zeta[molecule_of(i)]);
    for (int d = 0; d < 3; d++) v[i][d] = (v[i][d] + 0.5 * dtv * force->ftm2v * f[i][d] / m) * scale;
  }
}

double FixNVTMDsim::compute_vector(int n) {
  return (n + 1 < static_cast<int>(zeta.size())) ? zeta[n + 1] : 0.0;
}

// Restart record: [n, zeta_1 .. zeta_n] as doubles (zeta_0 is unused), preceded by its size in bytes.
void FixNVTMDsim::write_restart(FILE *fp) {
  if (comm->me != 0) return;
  std::vector<double> list(1, zeta.empty() ? 0.0 : static_cast<double>(zeta.size() - 1));
  if (!zeta.empty()) list.insert(list.end(), zeta.begin() + 1, zeta.end());
  const int size = static_cast<int>(list.size() * sizeof(double));
  fwrite(&size, sizeof(int), 1, fp);
  fwrite(list.data(), sizeof(double), list.size(), fp);
}

void FixNVTMDsim::restart(char *buf) {
  const auto *list = reinterpret_cast<double *>(buf);
  const auto n = static_cast<size_t>(list[0]);
  zeta.assign(1, 0.0);
  zeta.insert(zeta.end(), list + 1, list + 1 + n);
}

#include "compute_bond_deviation.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <map>

#include <mpi.h>

#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "error.h"
#include "lammps_compat.h"
#include "update.h"
#include "utils.h"

using namespace LAMMPS_NS;

namespace {
// covalent radii (Angstrom) of python/nnp/chemistry.py (ASE, Cordero et al. 2008); tests/test_contract.py
// checks this copy and the default scale against it
const std::map<std::string, double> COVALENT_RADIUS = {
    {"H", 0.31},  {"He", 0.28}, {"Li", 1.28}, {"Be", 0.96}, {"B", 0.84},  {"C", 0.76},  {"N", 0.71},
    {"O", 0.66},  {"F", 0.57},  {"Ne", 0.58}, {"Na", 1.66}, {"Mg", 1.41}, {"Al", 1.21}, {"Si", 1.11},
    {"P", 1.07},  {"S", 1.05},  {"Cl", 1.02}, {"Ar", 1.06}, {"K", 2.03},  {"Ca", 1.76}, {"Br", 1.20},
    {"I", 1.39}};
}  // namespace

ComputeBondDeviation::ComputeBondDeviation(LAMMPS *lmp, int narg, char **arg) : Compute(lmp, narg, arg) {
  const int ntypes = atom->ntypes;
  if (narg < 3 + ntypes)
    error->all(FLERR, "compute bond/deviation needs one element per atom type (" + std::to_string(ntypes) +
                          "), optionally followed by 'scale s' and 'reference FILE'");
  type_radius.assign(ntypes + 1, 0.0);
  for (int t = 1; t <= ntypes; t++) {
    auto it = COVALENT_RADIUS.find(arg[2 + t]);
    if (it == COVALENT_RADIUS.end())
      error->all(FLERR, std::string("compute bond/deviation: no covalent radius for element ") + arg[2 + t]);
    type_radius[t] = it->second;
  }
  for (int iarg = 3 + ntypes; iarg < narg; iarg += 2) {
    const std::string keyword = arg[iarg];
    if (keyword != "scale" && keyword != "reference")
      error->all(FLERR, "compute bond/deviation: '" + keyword + "' is neither a keyword (scale, reference) nor " +
                            "an element: give one element per atom type (" + std::to_string(ntypes) + ")");
    if (iarg + 1 >= narg) error->all(FLERR, "compute bond/deviation: '" + keyword + "' needs a value");
    if (keyword == "scale") scale = utils::numeric(FLERR, arg[iarg + 1], false, lmp);
    else reference_file = arg[iarg + 1];
  }
  scalar_flag = 1;
  extscalar = 0;
}

void ComputeBondDeviation::init() {
  if (atom->map_style == Atom::MAP_NONE)
    error->all(FLERR, "compute bond/deviation requires an atom map: add 'atom_modify map yes' before the box is created");
  if (!have_reference && !reference_file.empty()) read_bonds();
}

// The reference file: rank 0 reads and checks it, every rank gets the bonds.
void ComputeBondDeviation::read_bonds() {
  std::vector<double> values;  // tag_i, tag_j, d_ref per bond
  std::string problem;
  if (comm->me == 0) {
    std::ifstream in(reference_file);
    if (!in) problem = "cannot open " + reference_file;
    std::string line;
    for (int number = 1; problem.empty() && std::getline(in, line); number++) {
      line = line.substr(0, line.find('#'));
      std::istringstream fields(line);
      double i, j, d;
      std::string extra;
      if (!(fields >> i)) continue;  // blank or comment
      if (!(fields >> j >> d) || (fields >> extra) || i != std::floor(i) || j != std::floor(j) || i < 1 ||
          j < 1 || i > atom->natoms || j > atom->natoms || i == j || !(d > 0.0))
        problem = reference_file + " line " + std::to_string(number) + ": expected 'tag_i tag_j d_ref' with two " +
                  "different atom IDs of this box (1.." + std::to_string(atom->natoms) + ") and a length > 0";
      else values.insert(values.end(), {i, j, d});
    }
  }
  int count = problem.empty() ? static_cast<int>(values.size()) : -1;
  MPI_Bcast(&count, 1, MPI_INT, 0, world);
  if (count < 0) error->all(FLERR, "compute bond/deviation reference: " + problem);  // rank 0 prints it
  values.resize(count);
  MPI_Bcast(values.data(), count, MPI_DOUBLE, 0, world);
  bonds.clear();
  for (int b = 0; b < count; b += 3)
    bonds.push_back({static_cast<tagint>(values[b]), static_cast<tagint>(values[b + 1]), values[b + 2]});
  have_reference = true;
  if (comm->me == 0)
    utils::logmesg(lmp, "compute bond/deviation: " + std::to_string(bonds.size()) + " reference bonds from " +
                            reference_file + "\n");
}

// All atoms of the group are gathered once; bonds are found by an O(N^2) scan (molecules, small boxes).
void ComputeBondDeviation::find_bonds() {
  const int nlocal = atom->nlocal;
  std::vector<double> mine;
  for (int i = 0; i < nlocal; i++) {
    if (!(atom->mask[i] & groupbit)) continue;
    mine.insert(mine.end(), {static_cast<double>(atom->tag[i]), static_cast<double>(atom->type[i]), atom->x[i][0],
                             atom->x[i][1], atom->x[i][2]});
  }
  int count = static_cast<int>(mine.size()), nprocs = comm->nprocs;
  std::vector<int> counts(nprocs), offsets(nprocs, 0);
  MPI_Allgather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, world);
  for (int p = 1; p < nprocs; p++) offsets[p] = offsets[p - 1] + counts[p - 1];
  std::vector<double> all(offsets[nprocs - 1] + counts[nprocs - 1]);
  MPI_Allgatherv(mine.data(), count, MPI_DOUBLE, all.data(), counts.data(), offsets.data(), MPI_DOUBLE, world);
  const size_t n = all.size() / 5;
  bonds.clear();
  for (size_t a = 0; a < n; a++)
    for (size_t b = a + 1; b < n; b++) {
      const double *p = &all[5 * a], *q = &all[5 * b];
      double dx = q[2] - p[2], dy = q[3] - p[3], dz = q[4] - p[4];
      nnp::minimum_image(domain, dx, dy, dz);
      const double d = std::sqrt(dx * dx + dy * dy + dz * dz);
      if (d < scale * (type_radius[static_cast<int>(p[1])] + type_radius[static_cast<int>(q[1])]))
        bonds.push_back({static_cast<tagint>(p[0]), static_cast<tagint>(q[0]), d});
    }
  have_reference = true;
  if (comm->me == 0)
    utils::logmesg(lmp, "compute bond/deviation: " + std::to_string(bonds.size()) + " reference bonds\n");
}

double ComputeBondDeviation::compute_scalar() {
  invoked_scalar = update->ntimestep;
  if (!have_reference) find_bonds();
  double worst = 0.0;
  for (const Bond &bond : bonds) {
    const int i = atom->map(bond.i);
    if (i < 0 || i >= atom->nlocal) continue;  // counted by the rank that owns atom i
    const int j = atom->map(bond.j);
    if (j < 0) {  // the partner is beyond the ghost shell: the molecule has flown apart
      worst = HUGE_VAL;
      continue;
    }
    double dx = atom->x[j][0] - atom->x[i][0], dy = atom->x[j][1] - atom->x[i][1], dz = atom->x[j][2] - atom->x[i][2];
    nnp::minimum_image(domain, dx, dy, dz);
    worst = std::max(worst, std::fabs(std::sqrt(dx * dx + dy * dy + dz * dz) - bond.length));
  }
  MPI_Allreduce(&worst, &scalar, 1, MPI_DOUBLE, MPI_MAX, world);
  return scalar;
}

#include "pair_nnp.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include <mpi.h>
#include <torch/cuda.h>

#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "error.h"
#include "evaluator.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"

using namespace LAMMPS_NS;

namespace {
constexpr double EV_TO_KCAL_PER_MOL = 23.060548012069496;
}

PairNNP::PairNNP(LAMMPS *lmp) : Pair(lmp) {
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  no_virial_fdotr_compute = 1;  // the virial comes from the model
  centroidstressflag = CENTROID_NOTAVAIL;
}

PairNNP::~PairNNP() {
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
    memory->destroy(cutghost);
  }
}

void PairNNP::allocate() {
  allocated = 1;
  const int n = atom->ntypes;
  memory->create(setflag, n + 1, n + 1, "pair:setflag");
  memory->create(cutsq, n + 1, n + 1, "pair:cutsq");
  memory->create(cutghost, n + 1, n + 1, "pair:cutghost");
  for (int i = 1; i <= n; i++)
    for (int j = i; j <= n; j++) setflag[i][j] = 0;
}

// pair_style nnp [device cpu|cuda]
void PairNNP::settings(int narg, char **arg) {
  device_request.clear();
  int iarg = 0;
  while (iarg < narg) {
    if (strcmp(arg[iarg], "device") == 0 && iarg + 1 < narg) {
      device_request = arg[iarg + 1];
      if (device_request != "cpu" && device_request != "cuda")
        error->all(FLERR, "pair_style nnp: device must be cpu or cuda, not '" + device_request + "'");
      iarg += 2;
    } else {
      error->all(FLERR, std::string("pair_style nnp: unknown argument '") + arg[iarg] +
                            "'; usage: pair_style nnp [device cpu|cuda]");
    }
  }
}

std::string PairNNP::choose_device() const {
  const bool want_cuda = device_request == "cuda" || (device_request.empty() && torch::cuda::is_available());
  if (!want_cuda) return "cpu";
  const int gpus = static_cast<int>(torch::cuda::device_count());
  if (gpus == 0) return "cuda";  // the evaluator turns this into a clear error
  MPI_Comm node;
  int local_rank = 0;
  MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, comm->me, MPI_INFO_NULL, &node);
  MPI_Comm_rank(node, &local_rank);
  MPI_Comm_free(&node);
  return "cuda:" + std::to_string(local_rank % gpus);
}

// pair_coeff * * model.nnp.pt El_1 ... El_ntypes
void PairNNP::coeff(int narg, char **arg) {
  if (!allocated) allocate();
  const int ntypes = atom->ntypes;
  if (narg != 3 + ntypes)
    error->all(FLERR, "pair_coeff for pair_style nnp needs '* * model_file' and one element per atom type (" +
                          std::to_string(ntypes) + " types), got " + std::to_string(narg) + " arguments");
  if (strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_coeff for pair_style nnp must start with '* *'");
  model_path = arg[2];
  try {
    model = std::make_unique<nnp::Evaluator>(model_path, choose_device());
  } catch (const nnp::Error &err) {
    error->all(FLERR, std::string("pair_style nnp: ") + err.what());
  }
  const auto &info = model->info();
  type_species.assign(ntypes + 1, -1);
  for (int t = 1; t <= ntypes; t++) {
    const std::string element = arg[2 + t];
    for (size_t s = 0; s < info.species.size(); s++)
      if (info.species[s] == element) type_species[t] = static_cast<int64_t>(s);
    if (type_species[t] < 0) {
      std::string known;
      for (const auto &s : info.species) known += " " + s;
      error->all(FLERR, "pair_style nnp: element " + element + " (atom type " + std::to_string(t) +
                            ") is not known to model " + model_path + ", which knows" + known);
    }
  }
  cutoff = info.cutoff;
  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) setflag[i][j] = 1;
  if (comm->me == 0) {
    std::ostringstream msg;
    msg << "pair_style nnp: " << info.model_kind << " model " << model_path << " (" << info.dtype << ", cutoff "
        << info.cutoff << " A, " << info.num_interactions << " interactions) on " << model->device() << "\n";
    utils::logmesg(lmp, msg.str());
  }
}

void PairNNP::init_style() {
  if (!model) error->all(FLERR, "pair_style nnp: pair_coeff * * model_file elements... must come first");
  if (force->newton_pair == 0) error->all(FLERR, "pair_style nnp requires newton pair on");
  if (atom->tag_enable == 0) error->all(FLERR, "pair_style nnp requires atom IDs");
  if (strcmp(update->unit_style, "metal") == 0) energy_factor = 1.0;
  else if (strcmp(update->unit_style, "real") == 0) energy_factor = EV_TO_KCAL_PER_MOL;
  else
    error->all(FLERR, std::string("pair_style nnp supports units metal and real, not ") + update->unit_style +
                          " (the model works in eV and Angstrom)");
  if (model->info().direct_forces && !warned_direct && comm->me == 0) {
    error->warning(FLERR, "pair_style nnp: model " + model_path +
                              " predicts forces directly (not as -dE/dx): energy is not conserved in NVE and "
                              "the virial is zero");
    warned_direct = true;
  }
  // One rank: every periodic image maps back to its owner, so no work is repeated. Several ranks:
  // ghosts become graph nodes, the ghost shell must cover every message-passing layer.
  ghost_mode = comm->nprocs > 1;
  ghostneigh = ghost_mode ? 1 : 0;
  if (ghost_mode) {
    const double needed = model->info().num_interactions * cutoff + neighbor->skin;
    if (comm->mode != 0)  // Comm::SINGLE
      error->all(FLERR, "pair_style nnp with several MPI ranks requires comm_modify mode single");
    if (comm->cutghostuser < needed) {
      if (comm->me == 0 && comm->cutghostuser > 0.0)
        error->warning(FLERR, "pair_style nnp: raising comm_modify cutoff to {:.4g} (num_interactions * cutoff + skin)",
                       needed);
      comm->cutghostuser = needed;
    }
    neighbor->add_request(this, NeighConst::REQ_FULL | NeighConst::REQ_GHOST);
  } else {
    neighbor->add_request(this, NeighConst::REQ_FULL);
  }
}

double PairNNP::init_one(int i, int j) {
  if (setflag[i][j] == 0) error->all(FLERR, "pair_style nnp: all pair coefficients must be set");
  cutghost[i][j] = cutghost[j][i] = cutoff;
  return cutoff;
}

void PairNNP::map_ghosts_to_owners() {
  const int nlocal = atom->nlocal, nall = atom->nlocal + atom->nghost;
  tag_to_local.clear();
  tag_to_local.reserve(nlocal);
  for (int i = 0; i < nlocal; i++) tag_to_local[atom->tag[i]] = i;
  owner.resize(nall);
  for (int i = 0; i < nall; i++) {
    auto it = tag_to_local.find(atom->tag[i]);
    if (it == tag_to_local.end())
      error->one(FLERR, "pair_style nnp: ghost atom " + std::to_string(atom->tag[i]) +
                            " has no owner on this rank (lost atoms?)");
    owner[i] = it->second;
  }
}

void PairNNP::compute(int eflag, int vflag) {
  ev_init(eflag, vflag);
  double **x = atom->x;
  double **f = atom->f;
  int *type = atom->type;
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  const int num_nodes = ghost_mode ? nall : nlocal;
  if (nlocal == 0) return;  // a rank without atoms contributes nothing

  // ghosts are re-created at every neighbour list build: rebuild the ghost -> owner map then
  if (!ghost_mode && (neighbor->ncalls != owners_built_at || static_cast<int>(owner.size()) != nall)) {
    map_ghosts_to_owners();
    owners_built_at = neighbor->ncalls;
  }

  species.resize(num_nodes);
  for (int i = 0; i < num_nodes; i++) species[i] = type_species[type[i]];

  // edges within the cutoff from the full neighbour list (the list is built with a skin). Hot loop:
  // the buffers keep their capacity between steps and are written by index, not push_back; sources go
  // to edge_index[0, max_edges), destinations to [max_edges, 2 max_edges) and are moved down after.
  const double cutsq_model = cutoff * cutoff;
  const int ncentres = ghost_mode ? list->inum + list->gnum : list->inum;
  int64_t max_edges = 0;
  for (int ii = 0; ii < ncentres; ii++) max_edges += list->numneigh[list->ilist[ii]];
  edge_index.resize(2 * max_edges);
  edge_vectors.resize(3 * max_edges);
  int64_t *src = edge_index.data(), *dst = edge_index.data() + max_edges;
  double *vec = edge_vectors.data();
  int64_t num_edges = 0;
  for (int ii = 0; ii < ncentres; ii++) {
    const int i = list->ilist[ii];
    const int *jlist = list->firstneigh[i];
    const int jnum = list->numneigh[i];
    const double xi = x[i][0], yi = x[i][1], zi = x[i][2];
    for (int jj = 0; jj < jnum; jj++) {
      const int j = jlist[jj] & NEIGHMASK;
      const double dx = x[j][0] - xi, dy = x[j][1] - yi, dz = x[j][2] - zi;
      if (dx * dx + dy * dy + dz * dz >= cutsq_model) continue;
      src[num_edges] = i;
      dst[num_edges] = ghost_mode ? j : owner[j];
      vec[3 * num_edges] = dx;
      vec[3 * num_edges + 1] = dy;
      vec[3 * num_edges + 2] = dz;
      ++num_edges;
    }
  }
  std::memmove(src + num_edges, dst, num_edges * sizeof(int64_t));  // -> [2, num_edges] layout (may overlap)
  nnp::Result out;
  try {
    out = model->evaluate(species.data(), num_nodes, edge_index.data(), edge_vectors.data(), num_edges, nlocal);
  } catch (const nnp::Error &err) {
    error->one(FLERR, std::string("pair_style nnp: ") + err.what());
  }
  const int64_t bad = nnp::Evaluator::first_non_finite(out, nlocal);
  if (bad >= 0) {
    const std::string where =
        bad >= num_nodes ? std::string("in the total energy or virial")
                         : "for atom ID " + std::to_string(atom->tag[bad]) + (bad >= nlocal ? " (a ghost image)" : "");
    error->one(FLERR, "pair_style nnp: model returned NaN or infinite energy/force at step " +
                          std::to_string(update->ntimestep) + " " + where +
                          " (the structure may have left the model's training domain)");
  }

  const double *fo = out.forces.data_ptr<double>();
  for (int i = 0; i < num_nodes; i++)
    for (int k = 0; k < 3; k++) f[i][k] += energy_factor * fo[3 * i + k];

  if (eflag_global) eng_vdwl += energy_factor * out.energy;
  if (eflag_atom) {
    const double *e = out.atom_energy.data_ptr<double>();
    for (int i = 0; i < nlocal; i++) eatom[i] += energy_factor * e[i];
  }
  if (vflag_global) {
    const double *w = out.virial.data_ptr<double>();
    virial[0] += energy_factor * w[0];
    virial[1] += energy_factor * w[4];
    virial[2] += energy_factor * w[8];
    virial[3] += energy_factor * 0.5 * (w[1] + w[3]);
    virial[4] += energy_factor * 0.5 * (w[2] + w[6]);
    virial[5] += energy_factor * 0.5 * (w[5] + w[7]);
  }
  if (vflag_atom) {
    const double *w = out.atom_virial.data_ptr<double>();
    for (int i = 0; i < num_nodes; i++) {
      const double *wi = w + 9 * i;
      vatom[i][0] += energy_factor * wi[0];
      vatom[i][1] += energy_factor * wi[4];
      vatom[i][2] += energy_factor * wi[8];
      vatom[i][3] += energy_factor * 0.5 * (wi[1] + wi[3]);
      vatom[i][4] += energy_factor * 0.5 * (wi[2] + wi[6]);
      vatom[i][5] += energy_factor * 0.5 * (wi[5] + wi[7]);
    }
  }
}

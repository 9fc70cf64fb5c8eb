#include "pair_nnp.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <sstream>
#include <thread>

#include <mpi.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "elements.h"
#include "ensemble.h"
#include "error.h"
#include "contract.h"
#include "evaluator.h"
#include "force.h"
#include "memory.h"
#include "model_path.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"

using namespace LAMMPS_NS;

namespace {

constexpr int HALO_CHUNK = 64;              // columns per forward/reverse communication (comm_forward)
constexpr double MASS_TOLERANCE = 0.10;     // relative mass mismatch that triggers a warning

// Add factor x a 3x3 virial (row-major) to LAMMPS's six components xx yy zz xy xz yz.
void add_voigt(double *out, const double *w, double factor) {
  out[0] += factor * w[0];
  out[1] += factor * w[4];
  out[2] += factor * w[8];
  out[3] += factor * 0.5 * (w[1] + w[3]);
  out[4] += factor * 0.5 * (w[2] + w[6]);
  out[5] += factor * 0.5 * (w[5] + w[7]);
}

// Add factor x a 3x3 virial (row-major, w[3a+b] = r_a F_b) to LAMMPS's nine centroid components
// xx yy zz xy xz yz yx zx zy (compute centroid/stress/atom).
void add_nine(double *out, const double *w, double factor) {
  constexpr int order[9] = {0, 4, 8, 1, 2, 5, 3, 6, 7};
  for (int k = 0; k < 9; k++) out[k] += factor * w[order[k]];
}

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Adds the time between construction and destruction to a timer.
class Stopwatch {
 public:
  explicit Stopwatch(double &total) : total_(total), start_(now()) {}
  ~Stopwatch() { total_ += now() - start_; }

 private:
  double &total_;
  double start_;
};

}  // namespace

PairNNP::PairNNP(LAMMPS *lmp) : Pair(lmp) {
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  no_virial_fdotr_compute = 1;  // the virial comes from the model
  centroidstressflag = CENTROID_AVAIL;  // the model's asymmetric per-atom virial (compute centroid/stress/atom)
  // the halo exchange sends node features in chunks of HALO_CHUNK values per atom; set here, before
  // pair_style hybrid collects its sub-styles' communication sizes
  comm_forward = HALO_CHUNK;
  comm_reverse = HALO_CHUNK;
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

// pair_style nnp [device cpu|cuda] [threads N] [ensemble m2.nnp.pt m3.nnp.pt ...] [out_freq N] [out_file F]
//                [relative L] [relative_v L] [atomic]
void PairNNP::settings(int narg, char **arg) {
  const std::string usage = "; usage: pair_style nnp [device cpu|cuda] [threads N] [ensemble model2 model3 ... "
                            "[out_freq N] [out_file F] [relative L] [relative_v L] [atomic]]";
  device_request.clear();
  ensemble_.reset();
  std::vector<std::string> members;
  DeviationOptions deviation;
  bool ensemble_options = false;
  auto is_keyword = [](const std::string &w) {
    for (const char *k : {"device", "threads", "ensemble", "out_freq", "out_file", "relative", "relative_v", "atomic"})
      if (w == k) return true;
    return false;
  };
  auto level = [&](int i, const std::string &word) {
    const double value = utils::numeric(FLERR, arg[i], false, lmp);
    if (!(value >= 0.0)) error->all(FLERR, "pair_style nnp: " + word + " needs a level >= 0" + usage);
    return value;
  };
  int iarg = 0;
  while (iarg < narg) {
    const std::string word = arg[iarg];
    if (word == "device" && iarg + 1 < narg) {
      device_request = arg[iarg + 1];
      if (device_request != "cpu" && device_request != "cuda")
        error->all(FLERR, "pair_style nnp: device must be cpu or cuda, not '" + device_request + "'" + usage);
      iarg += 2;
    } else if (strcmp(arg[iarg], "threads") == 0 && iarg + 1 < narg) {
      const int threads = utils::inumeric(FLERR, arg[iarg + 1], false, lmp);
      if (threads < 1) error->all(FLERR, "pair_style nnp: threads must be >= 1" + usage);
      // torch's intra-op pool of this process (all ranks on a node share the cores: use cores / ranks)
      at::set_num_threads(threads);
      iarg += 2;
    } else if (word == "ensemble") {
      for (++iarg; iarg < narg && !is_keyword(arg[iarg]); ++iarg) members.push_back(arg[iarg]);
    } else if (word == "out_freq" && iarg + 1 < narg) {
      deviation.out_freq = utils::bnumeric(FLERR, arg[iarg + 1], false, lmp);
      if (deviation.out_freq < 1) error->all(FLERR, "pair_style nnp: out_freq must be a positive number of steps");
      ensemble_options = true;
      iarg += 2;
    } else if (word == "out_file" && iarg + 1 < narg) {
      deviation.out_file = arg[iarg + 1];
      ensemble_options = true;
      iarg += 2;
    } else if ((word == "relative" || word == "relative_v") && iarg + 1 < narg) {
      (word == "relative" ? deviation.relative : deviation.relative_v) = level(iarg + 1, word);
      ensemble_options = true;
      iarg += 2;
    } else if (word == "atomic") {
      deviation.atomic = true;
      ensemble_options = true;
      iarg += 1;
    } else {
      error->all(FLERR, "pair_style nnp: unknown argument '" + word + "'" + usage);
    }
  }
  if (ensemble_options && members.empty())
    error->all(FLERR, "pair_style nnp: out_freq, out_file, relative, relative_v and atomic need ensemble member "
                      "files" + usage);
  if (!members.empty()) ensemble_ = std::make_unique<NNPEnsemble>(lmp, members, deviation);
}

// device cpu|cuda as requested; without a request the .pt2 package's own device, else CUDA when a GPU is
// visible. Several GPUs on a node: rank k of the node takes GPU k % GPUs.
std::string PairNNP::choose_device(const std::string &path) const {
  std::string compiled;  // "" for TorchScript (any device)
  try {
    compiled = nnp::compiled_device_type(path);
  } catch (const nnp::Error &err) {
    error->all(FLERR, std::string("pair_style nnp: ") + err.what());
  }
  const std::string fix = "export it again for the device you want (nnp export --format pt2 --device cpu|cuda)";
  if (!compiled.empty() && !device_request.empty() && compiled != device_request)
    error->all(FLERR, "pair_style nnp: " + path + " was compiled for " + compiled + " but pair_style nnp asks for device " +
                          device_request + ": " + fix + ", or use pair_style nnp device " + compiled);
  if (compiled == "cuda" && !torch::cuda::is_available())
    error->all(FLERR, "pair_style nnp: " + path + " was compiled for cuda but no CUDA GPU is usable here: " + fix +
                          " (--device cpu), or run on a GPU machine");
  if (!compiled.empty() && compiled != "cpu" && compiled != "cuda")
    error->all(FLERR, "pair_style nnp: " + path + " was compiled for device '" + compiled +
                          "', which pair_style nnp does not run: " + fix);
  const bool want_cuda = compiled.empty() ? device_request == "cuda" || (device_request.empty() && torch::cuda::is_available())
                                          : compiled == "cuda";
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

// pair_coeff * * model.nnp.pt El_1 ... El_ntypes   (NULL: the type is left to another hybrid sub-style)
// (a bundled model's name, e.g. organic-xtb, in place of the file)
void PairNNP::coeff(int narg, char **arg) {
  if (!allocated) allocate();
  const int ntypes = atom->ntypes;
  if (narg != 3 + ntypes)
    error->all(FLERR, "pair_coeff for pair_style nnp needs '* * model_file' and one element per atom type (" +
                          std::to_string(ntypes) + " types; NULL for a type left to another hybrid style), got " + std::to_string(narg) + " arguments");
  if (strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_coeff for pair_style nnp must start with '* *'");
  try {
    const std::string path = nnp::resolve_model_path(arg[2]);  // a file, or a bundled model's name
    model = std::make_unique<nnp::Evaluator>(path, choose_device(path));
  } catch (const nnp::Error &err) {
    error->all(FLERR, std::string("pair_style nnp: ") + err.what());
  }
  model_path = model->path();
  if (ensemble_) ensemble_->load(*model, model_path);
  const auto &info = model->info();
  type_species.assign(ntypes + 1, -1);
  type_element.assign(ntypes + 1, "");
  for (int t = 1; t <= ntypes; t++) {
    const std::string element = arg[2 + t];
    type_element[t] = element;
    if (element == "NULL") continue;
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
  int mapped = 0;
  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) {
      setflag[i][j] = type_species[i] >= 0 && type_species[j] >= 0 ? 1 : 0;
      mapped += setflag[i][j];
    }
  if (mapped == 0) error->all(FLERR, "pair_coeff for pair_style nnp maps every atom type to NULL");
  if (comm->me == 0) {
    std::ostringstream msg;
    msg << "pair_style nnp: " << info.model_kind << " model " << model_path << " (" << info.dtype << ", cutoff "
        << info.cutoff << " A, " << info.num_interactions << " interactions, halo "
        << nnp::contract::HALO_MODES[info.halo_per_layer ? nnp::contract::HALO_PER_LAYER : nnp::contract::HALO_NONE]
        << ") on " << model->device();
    if (model->torch_device().is_cpu()) msg << ", " << at::get_num_threads() << " torch thread(s) per rank";
    msg << "\n";
    utils::logmesg(lmp, msg.str());
  }
}

// A type whose mass is far from its element's (e.g. `O H` given for types 1 = H, 2 = O) runs silently
// otherwise: warn, naming the type, its mass and the element.
void PairNNP::warn_on_mass_mismatch() {
  if (comm->me != 0 || atom->mass == nullptr || atom->mass_setflag == nullptr) return;
  for (int t = 1; t <= atom->ntypes; t++) {
    if (type_species[t] < 0 || !atom->mass_setflag[t]) continue;
    const double standard = nnp::standard_atomic_weight(type_element[t]);
    if (standard <= 0.0 || std::fabs(atom->mass[t] - standard) <= MASS_TOLERANCE * standard) continue;
    double mass = atom->mass[t];
    error->warning(FLERR, "pair_style nnp: atom type {} has mass {:.4g} but is mapped to element {} "
                          "(standard atomic weight {:.4g}): check the element order in pair_coeff "
                          "(an isotope is fine)", t, mass, type_element[t], standard);
  }
}

void PairNNP::choose_graph_mode() {
  const auto &info = model->info();
  if (comm->nprocs == 1) mode = GraphMode::OWNERS;
  else mode = info.halo_per_layer ? GraphMode::HALO : GraphMode::DEEP_SHELL;
  if (mode == GraphMode::HALO && nnp::exchanges_served(model->torch_device()) && comm->me == 0)
    utils::logmesg(lmp, "pair_style nnp: the model runs on a helper thread, its halo exchanges (MPI) on this one\n");
  if (mode != GraphMode::DEEP_SHELL) return;
  // every atom within receptive_hops cutoffs of a local atom must be a node, with all its edges
  const double needed = info.receptive_hops * cutoff + neighbor->skin;
  if (comm->mode != 0)  // Comm::SINGLE
    error->all(FLERR, "pair_style nnp with several MPI ranks requires comm_modify mode single");
  if (comm->cutghostuser < needed) {
    if (comm->me == 0 && comm->cutghostuser > 0.0)
      error->warning(FLERR, "pair_style nnp: raising comm_modify cutoff to {:.4g} (receptive_hops * cutoff + skin)",
                     needed);
    comm->cutghostuser = needed;
  }
}

void PairNNP::init_style() {
  if (!model) error->all(FLERR, "pair_style nnp: pair_coeff * * model_file elements... must come first");
  if (force->newton_pair == 0) error->all(FLERR, "pair_style nnp requires newton pair on");
  if (ensemble_ && !ensemble_->loaded())
    error->all(FLERR, "pair_style nnp: the ensemble members load at pair_coeff: issue pair_coeff * * model_file "
                      "elements... again after pair_style nnp ensemble ...");
  if (atom->tag_enable == 0) error->all(FLERR, "pair_style nnp requires atom IDs");
  if (strcmp(update->unit_style, "metal") == 0) energy_factor = 1.0;
  else if (strcmp(update->unit_style, "real") == 0) energy_factor = nnp::contract::KCAL_PER_MOL_PER_EV;
  else
    error->all(FLERR, std::string("pair_style nnp supports units metal and real, not ") + update->unit_style +
                          " (the model works in eV and Angstrom)");
  if (model->info().direct_forces && !warned_direct && comm->me == 0) {
    error->warning(FLERR, "pair_style nnp: model " + model_path +
                              " predicts forces directly (not as -dE/dx): energy is not conserved in NVE and "
                              "the virial is zero");
    warned_direct = true;
  }
  if ((neighbor->nex_type || neighbor->nex_group || neighbor->nex_mol) && !warned_exclusions && comm->me == 0) {
    error->warning(FLERR, "pair_style nnp: neigh_modify exclude takes pairs out of the model's graph, which "
                          "changes the energies and forces of every atom within the model's reach of them, not "
                          "only of the excluded pairs");
    warned_exclusions = true;
  }
  warn_on_mass_mismatch();
  choose_graph_mode();
  ghostneigh = mode == GraphMode::DEEP_SHELL ? 1 : 0;
  nnp::request_full_neighbors(neighbor, this, instance_me, ghostneigh);
  graph_built_at = -1;
}

double PairNNP::init_one(int i, int j) {
  if (setflag[i][j] == 0) error->all(FLERR, "pair_style nnp: all pair coefficients must be set");
  cutghost[i][j] = cutghost[j][i] = cutoff;
  return cutoff;
}

// ---------------------------------------------------------------------------------------------------
// The graph: nodes, candidate pairs (neighbour list with skin) -- rebuilt with the neighbour list.

// Stale after any build of the neighbour list, and when atom types changed without one. Neighbor::ago is 0 on
// the force calls after a build; ncalls alone does not show one: every run's setup and each rerun snapshot set it
// back to 0 after building (rerun reused a graph of atoms since wrapped or replaced). Types: fix atom/swap swaps
// them and asks for the energy without rebuilding the list (with the old species every swap cost nothing).
bool PairNNP::graph_is_stale() const {
  const size_t nall = atom->nlocal + atom->nghost;
  return neighbor->ago == 0 || neighbor->ncalls != graph_built_at || nall != graph_types.size() ||
         !std::equal(graph_types.begin(), graph_types.end(), atom->type);
}

void PairNNP::map_ghosts_to_owners(int nall) {
  const int nlocal = atom->nlocal;
  std::unordered_map<tagint, int> tag_to_local;
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

// Pairs (i, j) of the neighbour list as atom indices [2P]; their graph nodes go to pair_nodes [2P].
std::vector<int64_t> PairNNP::candidate_pairs(std::vector<int64_t> &pair_nodes) const {
  const int ncentres = mode == GraphMode::DEEP_SHELL ? list->inum + list->gnum : list->inum;
  int64_t max_pairs = 0;
  for (int ii = 0; ii < ncentres; ii++) max_pairs += list->numneigh[list->ilist[ii]];
  std::vector<int64_t> pairs(2 * max_pairs);
  pair_nodes.resize(2 * max_pairs);
  int64_t p = 0;
  for (int ii = 0; ii < ncentres; ii++) {
    const int i = list->ilist[ii];
    if (atom_node[i] < 0) continue;
    const int *jlist = list->firstneigh[i];
    for (int jj = 0; jj < list->numneigh[i]; jj++) {
      const int j = jlist[jj] & NEIGHMASK;
      const int jnode = atom_node[mode == GraphMode::OWNERS ? owner[j] : j];
      if (jnode < 0) continue;
      pairs[p] = i;
      pairs[max_pairs + p] = j;
      pair_nodes[p] = atom_node[i];
      pair_nodes[max_pairs + p] = jnode;
      ++p;
    }
  }
  // [2, max_pairs] -> [2, p] (the second row moves down; may overlap)
  std::memmove(pairs.data() + p, pairs.data() + max_pairs, p * sizeof(int64_t));
  std::memmove(pair_nodes.data() + p, pair_nodes.data() + max_pairs, p * sizeof(int64_t));
  pairs.resize(2 * p);
  pair_nodes.resize(2 * p);
  return pairs;
}

// special_bonds weight 0 (LAMMPS's default for bonded systems: lj/coul 0 0 0) takes bonded pairs out of the
// neighbour list, so the model would not see an atom's bonded neighbours: an error, not a silently wrong energy.
static std::string excluded_pairs_message(int order) {
  return "pair_style nnp: special_bonds leaves 1-" + std::to_string(order) +
         " bonded pairs out of the neighbour list (weight 0), so the model would not see them; add 'special_bonds "
         "lj/coul 1.0 1.0 1.0' (under pair_style hybrid: a non-zero weight such as 'special_bonds lj/coul 1e-10 "
         "1e-10 1e-10' keeps the pairs, and 'pair_modify pair <style> special lj/coul 0.0 0.0 0.0' gives another "
         "style its exclusions)";
}

// The order (2: 1-2, 3: 1-3, 4: 1-4) of the first bonded pair of this rank's atoms that special_bonds excludes
// while both atoms are in the model (a partner the atom map does not know counts: it may be), or 0.
int PairNNP::excluded_pair_order() const {
  if (!atom->molecular || !atom->nspecial) return 0;  // per-atom special lists (molecule templates keep none)
  for (int i = 0; i < atom->nlocal; i++) {
    if (type_species[atom->type[i]] < 0) continue;
    const int *count = atom->nspecial[i];  // cumulative: 1-2, 1-2 + 1-3, 1-2 + 1-3 + 1-4
    for (int k = 0; k < count[2]; k++) {
      const int order = k < count[0] ? 1 : (k < count[1] ? 2 : 3);
      if (neighbor->special_flag[order] != 0) continue;
      const int j = atom->map(atom->special[i][k]);
      if (j >= 0 && type_species[atom->type[j]] < 0) continue;  // a partner outside the model (NULL type)
      return order + 1;
    }
  }
  return 0;
}

// Before a run's first force call (Verlet::setup: neighbour lists and ghosts exist), on every rank: the
// special_bonds check made collectively, so rank 0 prints the message and every rank stops cleanly (error->one on
// two ranks at once could lose the message when one rank's abort ends the other before its output is written).
void PairNNP::setup() {
  int local = excluded_pair_order(), order = 0;
  MPI_Allreduce(&local, &order, 1, MPI_INT, MPI_MAX, world);
  if (order) error->all(FLERR, excluded_pairs_message(order));
}

void PairNNP::build_graph() {
  const int nlocal = atom->nlocal, nall = nlocal + atom->nghost;
  // atoms created during a run, and runs without Verlet::setup (rerun), found here; build_graph may run on some
  // ranks only (a rank without atoms returns early), so the error stops the run from this rank (error->one)
  if (const int order = excluded_pair_order()) error->one(FLERR, excluded_pairs_message(order));
  // one rank: nodes are local atoms (images map to owners); several: local atoms, then ghosts
  const int natoms_graph = mode == GraphMode::OWNERS ? nlocal : nall;
  if (mode == GraphMode::OWNERS) map_ghosts_to_owners(nall);
  atom_node.assign(nall, -1);
  node_atom.clear();
  std::vector<int64_t> species;
  for (int a = 0; a < natoms_graph; a++) {
    const int64_t s = type_species[atom->type[a]];
    if (s < 0) continue;  // NULL type: not in the graph
    atom_node[a] = static_cast<int>(node_atom.size());
    node_atom.push_back(a);
    species.push_back(s);
  }
  num_nodes = static_cast<int>(node_atom.size());
  num_local_nodes = 0;
  for (int a = 0; a < nlocal; a++) num_local_nodes += atom_node[a] >= 0;
  std::vector<int64_t> pair_nodes;
  std::vector<int64_t> pairs = candidate_pairs(pair_nodes);
  const int64_t num_pairs = static_cast<int64_t>(pairs.size()) / 2;
  position_rows = nall;

  Stopwatch clock(timers[T_H2D]);
  const auto device = model->torch_device();
  auto upload = [&](std::vector<int64_t> &values, std::vector<int64_t> shape) {
    auto as_long = torch::TensorOptions().dtype(torch::kInt64);
    if (values.empty()) return torch::empty(shape, as_long.device(device));
    return torch::from_blob(values.data(), shape, as_long).to(device, /*non_blocking=*/false, /*copy=*/true);
  };
  species_dev = upload(species, {num_nodes});
  pair_atoms_dev = upload(pairs, {2, num_pairs});
  pair_nodes_dev = upload(pair_nodes, {2, num_pairs});
  graph_built_at = neighbor->ncalls;
  graph_types.assign(atom->type, atom->type + nall);
}

// Copy a device tensor to the host as float64, through a reused (pinned, for CUDA) staging buffer.
torch::Tensor PairNNP::to_host(const torch::Tensor &t, torch::Tensor &staging) {
  if (t.device().is_cpu()) return t.to(torch::kFloat64).contiguous();
  const int64_t n = t.numel();
  if (!staging.defined() || staging.numel() < n)
    staging = torch::empty({std::max<int64_t>(n + n / 4, 1024)},
                           torch::TensorOptions().dtype(torch::kFloat64).pinned_memory(true));
  torch::Tensor view = staging.narrow(0, 0, n).view(t.sizes());
  view.copy_(t);
  return view;
}

// Several device tensors to the host as float64 in one copy (they are packed on the device first), as
// views of the staging buffer in their own shapes. On the CPU each is converted on its own (no copy for
// float64), as to_host does.
std::vector<torch::Tensor> PairNNP::to_host(const std::vector<torch::Tensor> &ts, torch::Tensor &staging) {
  std::vector<torch::Tensor> out;
  if (ts.front().device().is_cpu()) {
    for (const auto &t : ts) out.push_back(t.to(torch::kFloat64).contiguous());
    return out;
  }
  std::vector<torch::Tensor> flat;
  for (const auto &t : ts) flat.push_back(t.reshape({-1}).to(torch::kFloat64));
  torch::Tensor packed = to_host(torch::cat(flat), staging);
  int64_t offset = 0;
  for (const auto &t : ts) {
    out.push_back(packed.narrow(0, offset, t.numel()).view(t.sizes()));
    offset += t.numel();
  }
  return out;
}

// Edge vectors x_j - x_i of the candidate pairs, on the device, cut at the model's cutoff.
void PairNNP::edges_from_positions(torch::Tensor &edge_index, torch::Tensor &edge_vectors) {
  const auto device = model->torch_device();
  torch::Tensor x;
  {
    Stopwatch clock(timers[T_H2D]);
    auto as_double = torch::TensorOptions().dtype(torch::kFloat64);
    torch::Tensor x_lammps = torch::from_blob(atom->x[0], {position_rows, 3}, as_double);
    if (device.is_cpu()) {
      x = x_lammps;  // no copy
    } else {
      if (!positions_host.defined() || positions_host.size(0) < position_rows)
        positions_host = torch::empty({position_rows + position_rows / 4 + 16, 3}, as_double.pinned_memory(true));
      torch::Tensor staged = positions_host.narrow(0, 0, position_rows);
      staged.copy_(x_lammps);
      x = staged.to(device, /*non_blocking=*/true);
    }
  }
  Stopwatch clock(timers[T_EDGES]);
  torch::Tensor vectors = x.index_select(0, pair_atoms_dev[1]) - x.index_select(0, pair_atoms_dev[0]);
  torch::Tensor inside = (vectors * vectors).sum(1) < cutoff * cutoff;
  // nonzero() waits for the device (the edge count sets the model's shapes): with the copy of the outputs,
  // the only host syncs of a step
  torch::Tensor keep = inside.nonzero().squeeze(1);
  edge_index = pair_nodes_dev.index_select(1, keep);
  edge_vectors = vectors.index_select(0, keep).to(model->dtype());
}

// ---------------------------------------------------------------------------------------------------

void PairNNP::compute(int eflag, int vflag) {
  ev_init(eflag, vflag);
  const int nlocal = atom->nlocal;
  // a rank without atoms contributes nothing -- but with per-layer halo exchange it must still take part
  // in every exchange, so it evaluates its (ghost-only) graph like every other rank
  // (and so must a rank without atoms on an ensemble step: the deviation is reduced over all ranks)
  const bool deviation_step = ensemble_ && ensemble_->due(update->ntimestep);
  if (nlocal == 0 && mode != GraphMode::HALO && !deviation_step) return;
  const torch::Device device = model->torch_device();
  nnp::DeviceScope device_scope(device);  // every CUDA call below on this rank's GPU
  lammps_thread = std::this_thread::get_id();

  if (graph_is_stale()) {
    Stopwatch clock(timers[T_GRAPH]);
    build_graph();
  }
  torch::Tensor edge_index, edge_vectors;
  edges_from_positions(edge_index, edge_vectors);

  nnp::Outputs out;
  {
    Stopwatch clock(timers[T_MODEL]);
    std::string failure;
    // the halo's MPI calls stay on this thread, also those of autograd's CUDA worker thread (halo.h)
    nnp::run_with_exchanger(mode == GraphMode::HALO ? &halo : nullptr, device, [&] {
      try {
        out = model->forward(species_dev, edge_index, edge_vectors, num_local_nodes);
      } catch (const nnp::Error &err) {
        failure = err.what();
      }
    });
    if (!failure.empty()) error->one(FLERR, "pair_style nnp: " + failure);
    nnp::synchronize_stream(device);  // this rank's stream only; keeps the model and d2h timers apart
  }
  sum_nodes += num_nodes;
  sum_local += num_local_nodes;
  sum_edges += static_cast<double>(edge_index.size(1));
  ++evaluations;

  // only what LAMMPS asked for comes back to the host, in one copy (one wait for the device)
  torch::Tensor forces, atom_energy, atom_virial, global_virial;
  double energy;
  {
    Stopwatch clock(timers[T_D2H]);
    std::vector<torch::Tensor> parts{out.forces, out.energy};
    if (vflag_global) parts.push_back(out.virial);
    if (eflag_atom) parts.push_back(out.atom_energy);
    if (vflag_atom || cvflag_atom) parts.push_back(out.atom_virial);  // only when a compute asks
    std::vector<torch::Tensor> host = to_host(parts, outputs_host);
    forces = host[0];
    energy = host[1].item<double>();
    size_t next = 2;
    if (vflag_global) global_virial = host[next++];
    if (eflag_atom) atom_energy = host[next++];
    if (vflag_atom || cvflag_atom) atom_virial = host[next++];
    if (!eflag_atom && !std::isfinite(energy))  // to find the atom for the error message
      atom_energy = out.atom_energy.to(torch::kCPU, torch::kFloat64).contiguous();
  }
  check_finite(forces, energy, atom_energy);
  if (deviation_step) evaluate_ensemble(out, edge_index, edge_vectors);

  Stopwatch clock(timers[T_TALLY]);
  double **f = atom->f;
  const double *fo = forces.data_ptr<double>();
  for (int n = 0; n < num_nodes; n++)
    for (int k = 0; k < 3; k++) f[node_atom[n]][k] += energy_factor * fo[3 * n + k];
  if (eflag_global) eng_vdwl += energy_factor * energy;
  if (eflag_atom) {
    const double *e = atom_energy.data_ptr<double>();
    for (int n = 0; n < num_local_nodes; n++) eatom[node_atom[n]] += energy_factor * e[n];
  }
  if (vflag_global) add_voigt(virial, global_virial.data_ptr<double>(), energy_factor);
  if (vflag_atom || cvflag_atom) {  // compute stress/atom (six components), centroid/stress/atom (nine)
    const double *w = atom_virial.data_ptr<double>();
    for (int n = 0; n < num_nodes; n++) {
      if (vflag_atom) add_voigt(vatom[node_atom[n]], w + 9 * n, energy_factor);
      if (cvflag_atom) add_nine(cvatom[node_atom[n]], w + 9 * n, energy_factor);
    }
  }
}

// The ensemble members on this step's graph; ghost forces of members reach their owners through the
// same reverse communication as halo gradients (one rank: every node is already an owner).
void PairNNP::evaluate_ensemble(const nnp::Outputs &out, const torch::Tensor &edge_index,
                                const torch::Tensor &edge_vectors) {
  Stopwatch clock(timers[T_ENSEMBLE]);
  std::function<void(torch::Tensor)> reverse;
  if (mode != GraphMode::OWNERS) reverse = [this](torch::Tensor rows) { exchange_rows(rows, true); };
  ensemble_->evaluate(out, species_dev, edge_index, edge_vectors, num_local_nodes,
                      mode == GraphMode::HALO ? &halo : nullptr, reverse, node_atom, energy_factor);
  nnp::synchronize_stream(model->torch_device());  // for the timer (the deviation is on the host already)
}

void PairNNP::check_finite(const torch::Tensor &forces, double energy, const torch::Tensor &atom_energy) {
  const double *fo = forces.data_ptr<double>();
  int64_t bad = -1;
  for (int n = 0; n < num_nodes && bad < 0; n++)
    if (!std::isfinite(fo[3 * n]) || !std::isfinite(fo[3 * n + 1]) || !std::isfinite(fo[3 * n + 2])) bad = n;
  if (bad < 0 && !std::isfinite(energy)) {
    const double *e = atom_energy.data_ptr<double>();
    for (int n = 0; n < num_local_nodes && bad < 0; n++)
      if (!std::isfinite(e[n])) bad = n;
    if (bad < 0) bad = num_nodes;
  }
  if (bad < 0) return;
  const std::string where =
      bad >= num_nodes ? std::string("in the total energy or virial")
                       : "for atom ID " + std::to_string(atom->tag[node_atom[bad]]) +
                             (bad >= num_local_nodes ? " (a ghost image)" : "");
  error->one(FLERR, "pair_style nnp: model returned NaN or infinite energy/force at step " +
                        std::to_string(update->ntimestep) + " " + where +
                        " (the structure may have left the model's training domain)");
}

// ---------------------------------------------------------------------------------------------------
// Halo exchange (model contract v2): rows of the node tensor travel with LAMMPS's own communication
// pattern, HALO_CHUNK columns at a time. Ghost rows filled by an earlier swap are forwarded by later
// ones, so subdomains thinner than the cutoff (several swaps per direction) work as they do for x.

void PairNNP::exchange_rows(torch::Tensor all_rows, bool reverse) {
  // a .pt2 model may see padding rows after the graph's nodes (backend_aoti.cpp): they stay as they are
  if (all_rows.dim() != 2 || all_rows.size(0) < num_nodes)
    error->one(FLERR, "pair_style nnp: the model called nnp::halo on a tensor that is not (num_nodes, F)");
  // MPI was initialised without thread support: never communicate from autograd's worker threads
  if (std::this_thread::get_id() != lammps_thread)
    throw nnp::Error("halo exchange called from a thread other than the one LAMMPS called pair_style nnp on "
                     "(a bug in nnp: see run_with_exchanger in pair_nnp/halo.h)");
  torch::Tensor rows = all_rows.narrow(0, 0, num_nodes);
  Stopwatch clock(timers[T_HALO]);
  const bool in_place = rows.device().is_cpu() && rows.scalar_type() == torch::kFloat64;
  torch::Tensor host = in_place ? rows : to_host(rows, halo_host);
  halo_rows = host.data_ptr<double>();
  halo_width = static_cast<int>(rows.size(1));
  for (halo_col0 = 0; halo_col0 < halo_width; halo_col0 += HALO_CHUNK) {
    halo_ncols = std::min(HALO_CHUNK, halo_width - halo_col0);
    nnp::pair_comm(comm, this, reverse);
  }
  halo_rows = nullptr;
  if (in_place) return;
  if (reverse) {
    rows.copy_(host);  // owners gained the ghosts' gradients, ghosts were zeroed
  } else if (num_nodes > num_local_nodes) {  // only ghost rows changed
    rows.narrow(0, num_local_nodes, num_nodes - num_local_nodes)
        .copy_(host.narrow(0, num_local_nodes, num_nodes - num_local_nodes));
  }
}

int PairNNP::pack_forward_comm(int n, int *list, double *buf, int, int *) {
  int m = 0;
  for (int k = 0; k < n; k++) {
    const int node = atom_node[list[k]];
    if (node < 0) {  // an atom outside the graph (NULL type): keep the stride
      for (int c = 0; c < halo_ncols; c++) buf[m++] = 0.0;
      continue;
    }
    const double *row = halo_rows + static_cast<int64_t>(node) * halo_width + halo_col0;
    for (int c = 0; c < halo_ncols; c++) buf[m++] = row[c];
  }
  return m;
}

void PairNNP::unpack_forward_comm(int n, int first, double *buf) {
  int m = 0;
  for (int i = first; i < first + n; i++) {
    const int node = atom_node[i];
    if (node < 0) {
      m += halo_ncols;
      continue;
    }
    double *row = halo_rows + static_cast<int64_t>(node) * halo_width + halo_col0;
    for (int c = 0; c < halo_ncols; c++) row[c] = buf[m++];
  }
}

int PairNNP::pack_reverse_comm(int n, int first, double *buf) {
  int m = 0;
  for (int i = first; i < first + n; i++) {
    const int node = atom_node[i];
    if (node < 0) {
      for (int c = 0; c < halo_ncols; c++) buf[m++] = 0.0;
      continue;
    }
    double *row = halo_rows + static_cast<int64_t>(node) * halo_width + halo_col0;
    for (int c = 0; c < halo_ncols; c++) {
      buf[m++] = row[c];
      row[c] = 0.0;  // a ghost's gradient now belongs to its owner
    }
  }
  return m;
}

void PairNNP::unpack_reverse_comm(int n, int *list, double *buf) {
  int m = 0;
  for (int k = 0; k < n; k++) {
    const int node = atom_node[list[k]];
    if (node < 0) {
      m += halo_ncols;
      continue;
    }
    double *row = halo_rows + static_cast<int64_t>(node) * halo_width + halo_col0;
    for (int c = 0; c < halo_ncols; c++) row[c] += buf[m++];
  }
}

// ---------------------------------------------------------------------------------------------------

// Called at the end of every run: graph sizes and where the time went, then the counters restart.
void PairNNP::finish() {
  report_run();  // collective: every rank calls it, also one that evaluated nothing
  timers.fill(0.0);
  sum_nodes = sum_local = sum_edges = 0.0;
  evaluations = 0;
}

void PairNNP::report_run() {
  const char *names[NUM_TIMERS] = {"graph", "h2d", "edges", "model", "halo", "d2h", "tally", "ensemble"};
  const char *modes[] = {"one rank, images mapped to owners", "per-layer halo exchange", "deep ghost shell"};
  const double per = evaluations > 0 ? 1.0 / evaluations : 0.0;
  double local[4] = {sum_nodes * per, sum_local * per, sum_edges * per, static_cast<double>(evaluations)};
  double total[4], maximum[4];
  MPI_Allreduce(local, total, 4, MPI_DOUBLE, MPI_SUM, world);
  MPI_Allreduce(local, maximum, 4, MPI_DOUBLE, MPI_MAX, world);
  if (comm->me != 0 || total[3] == 0.0) return;
  std::ostringstream msg;
  msg.setf(std::ios::fixed);
  msg.precision(1);
  const int nprocs = comm->nprocs;
  msg << "pair_style nnp: " << modes[static_cast<int>(mode)] << "; per rank and evaluation: nodes "
      << total[0] / nprocs << " (max " << maximum[0] << "), local " << total[1] / nprocs << ", ghost nodes "
      << (total[0] - total[1]) / nprocs << ", edges " << total[2] / nprocs << "\n";
  msg.precision(3);
  msg << "pair_style nnp: rank 0 seconds over " << evaluations << " evaluations:";
  for (int t = 0; t < NUM_TIMERS; t++) msg << " " << names[t] << " " << timers[t];
  msg << " (model includes halo)\n";
  utils::logmesg(lmp, msg.str());
}

#include "ensemble.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <mpi.h>

#include "atom.h"
#include "comm.h"
#include "deviation.h"
#include "error.h"
#include "evaluator.h"
#include "halo.h"
#include "update.h"

using namespace LAMMPS_NS;

NNPEnsemble::NNPEnsemble(LAMMPS *lmp, std::vector<std::string> paths, bigint out_freq, std::string out_file)
    : Pointers(lmp), paths_(std::move(paths)), out_freq_(out_freq), out_file_(std::move(out_file)) {}

NNPEnsemble::~NNPEnsemble() {
  if (out_) fclose(out_);
}

void NNPEnsemble::load(const nnp::Evaluator &driver, const std::string &driver_path) {
  models_.clear();
  for (const std::string &path : paths_) {
    try {
      auto model = std::make_unique<nnp::Evaluator>(path, driver.device());
      nnp::check_ensemble_member(driver.info(), driver_path, model->info(), path);
      models_.push_back(std::move(model));
    } catch (const nnp::Error &err) {
      error->all(FLERR, std::string("pair_style nnp: ") + err.what());
    }
  }
  if (comm->me == 0)
    utils::logmesg(lmp, "pair_style nnp: ensemble of " + std::to_string(members()) +
                            " models (the driver and " + std::to_string(models_.size()) +
                            " more), deviation every " + std::to_string(out_freq_) + " steps to " + out_file_ +
                            "\n");
}

void NNPEnsemble::evaluate(const nnp::Outputs &driver, const torch::Tensor &species, const torch::Tensor &edge_index,
                           const torch::Tensor &edge_vectors, int64_t num_local, nnp::HaloExchanger *halo,
                           const std::function<void(torch::Tensor)> &reverse, const std::vector<int> &node_atom,
                           double energy_factor) {
  const int64_t num_nodes = species.size(0);
  nnp::DeviceScope device_scope(species.device());  // the members share the driver's device
  std::vector<torch::Tensor> forces{driver.forces.to(torch::kFloat64)};
  std::vector<double> energies{driver.energy.item<double>()};
  for (auto &model : models_) {
    nnp::Outputs out;
    std::string failure;
    // as for the driver: halo exchanges (MPI) only from this thread (halo.h)
    nnp::run_with_exchanger(halo, model->torch_device(), [&] {
      try {
        out = model->forward(species, edge_index, edge_vectors.to(model->dtype()), num_local);
      } catch (const nnp::Error &err) {
        failure = err.what();
      }
    });
    if (!failure.empty()) error->one(FLERR, "pair_style nnp: ensemble member: " + failure);
    forces.push_back(out.forces.to(torch::kFloat64));
    energies.push_back(out.energy.item<double>());
  }
  const int64_t m = static_cast<int64_t>(forces.size());
  torch::Tensor stacked = torch::stack(forces, 0);  // (M, N, 3)
  if (reverse) {  // ghost forces of every member onto their owners, in one exchange
    torch::Tensor rows = stacked.permute({1, 0, 2}).reshape({num_nodes, 3 * m}).contiguous();
    reverse(rows);
    stacked = rows.view({num_nodes, m, 3}).permute({1, 0, 2});
  }
  torch::Tensor eps;
  double devi_e = 0.0;
  try {
    eps = nnp::force_deviation(stacked.narrow(1, 0, num_local)).mul(energy_factor).cpu().contiguous();
  } catch (const nnp::Error &err) {
    error->one(FLERR, std::string("pair_style nnp: ") + err.what());
  }
  const double *e = eps.data_ptr<double>();

  // per-atom values on owners; a member that returned NaN/inf gives an infinite deviation (fix halt stops)
  last_.atom.assign(atom->nlocal, 0.0);
  double mine[3] = {0.0, std::numeric_limits<double>::infinity(), 0.0};  // max, min, sum
  for (int64_t n = 0; n < num_local; n++) {
    const double v = std::isfinite(e[n]) ? e[n] : std::numeric_limits<double>::infinity();
    last_.atom[node_atom[n]] = v;
    mine[0] = std::max(mine[0], v);
    mine[1] = std::min(mine[1], v);
    mine[2] += v;
  }
  double count_mine = static_cast<double>(num_local), count = 0.0, max_f = 0.0, min_f = 0.0, sum_f = 0.0;
  MPI_Allreduce(&mine[0], &max_f, 1, MPI_DOUBLE, MPI_MAX, world);
  MPI_Allreduce(&mine[1], &min_f, 1, MPI_DOUBLE, MPI_MIN, world);
  MPI_Allreduce(&mine[2], &sum_f, 1, MPI_DOUBLE, MPI_SUM, world);
  MPI_Allreduce(&count_mine, &count, 1, MPI_DOUBLE, MPI_SUM, world);
  std::vector<double> total(m);
  MPI_Allreduce(energies.data(), total.data(), static_cast<int>(m), MPI_DOUBLE, MPI_SUM, world);
  last_.step = update->ntimestep;
  last_.max_f = max_f;
  last_.min_f = count > 0.0 ? min_f : 0.0;
  last_.avg_f = count > 0.0 ? sum_f / count : 0.0;
  try {
    devi_e = nnp::energy_deviation(total, count);
  } catch (const nnp::Error &err) {
    error->all(FLERR, std::string("pair_style nnp: ") + err.what());
  }
  last_.devi_e = energy_factor * devi_e;
  if (!std::isfinite(last_.devi_e)) last_.devi_e = std::numeric_limits<double>::infinity();
  write();
}

void NNPEnsemble::write() {
  if (comm->me != 0 || last_.step == written_step_) return;  // a step evaluated twice (run 0; run N) once
  if (!out_) {
    out_ = fopen(out_file_.c_str(), "w");
    if (!out_) error->one(FLERR, "pair_style nnp: cannot open out_file " + out_file_ + " for writing");
    fprintf(out_, "#%11s %20s %20s %20s %20s\n", "step", "max_devi_f", "min_devi_f", "avg_devi_f", "devi_e");
  }
  fprintf(out_, "%12lld %20.12e %20.12e %20.12e %20.12e\n", static_cast<long long>(last_.step), last_.max_f,
          last_.min_f, last_.avg_f, last_.devi_e);
  fflush(out_);
  written_step_ = last_.step;
}

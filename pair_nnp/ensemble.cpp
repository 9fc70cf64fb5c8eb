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

NNPEnsemble::NNPEnsemble(LAMMPS *lmp, std::vector<std::string> paths, DeviationOptions options)
    : Pointers(lmp), paths_(std::move(paths)), options_(std::move(options)) {}

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
                            " more), deviation every " + std::to_string(options_.out_freq) + " steps to " +
                            options_.out_file + "\n");
}

void NNPEnsemble::evaluate(const nnp::Outputs &driver, const torch::Tensor &species, const torch::Tensor &edge_index,
                           const torch::Tensor &edge_vectors, int64_t num_local, nnp::HaloExchanger *halo,
                           const std::function<void(torch::Tensor)> &reverse, const std::vector<int> &node_atom,
                           double energy_factor) {
  const int64_t num_nodes = species.size(0);
  nnp::DeviceScope device_scope(species.device());  // the members share the driver's device
  auto virial_of = [](const torch::Tensor &v) {
    torch::Tensor host = v.to(torch::kCPU, torch::kFloat64).contiguous();
    return std::vector<double>(host.data_ptr<double>(), host.data_ptr<double>() + 9);
  };
  std::vector<torch::Tensor> forces{driver.forces.to(torch::kFloat64)};
  std::vector<double> energies{driver.energy.item<double>()};
  std::vector<double> virials = virial_of(driver.virial);  // (M, 9) row-major, this rank's part
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
    const std::vector<double> v = virial_of(out.virial);
    virials.insert(virials.end(), v.begin(), v.end());
  }
  const int64_t m = static_cast<int64_t>(forces.size());
  torch::Tensor stacked = torch::stack(forces, 0);  // (M, N, 3)
  if (reverse) {  // ghost forces of every member onto their owners, in one exchange
    torch::Tensor rows = stacked.permute({1, 0, 2}).reshape({num_nodes, 3 * m}).contiguous();
    reverse(rows);
    stacked = rows.view({num_nodes, m, 3}).permute({1, 0, 2});
  }
  // relative deviations are ratios; absolute ones are converted from the model's units to LAMMPS's
  const bool relative_f = options_.relative >= 0.0, relative_v = options_.relative_v >= 0.0;
  torch::Tensor eps;
  try {
    eps = nnp::force_deviation(stacked.narrow(1, 0, num_local), relative_f ? options_.relative / energy_factor : -1.0)
              .mul(relative_f ? 1.0 : energy_factor)
              .cpu()
              .contiguous();
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
  std::vector<double> total(m), total_virial(9 * m);
  MPI_Allreduce(energies.data(), total.data(), static_cast<int>(m), MPI_DOUBLE, MPI_SUM, world);
  MPI_Allreduce(virials.data(), total_virial.data(), static_cast<int>(9 * m), MPI_DOUBLE, MPI_SUM, world);
  std::vector<std::vector<double>> member_virials;
  for (int64_t k = 0; k < m; k++)
    member_virials.emplace_back(total_virial.begin() + 9 * k, total_virial.begin() + 9 * (k + 1));
  last_.step = update->ntimestep;
  last_.max_f = max_f;
  last_.min_f = count > 0.0 ? min_f : 0.0;
  last_.avg_f = count > 0.0 ? sum_f / count : 0.0;
  try {
    const double devi_e = nnp::energy_deviation(total, count);
    const nnp::VirialSummary v = nnp::summarize_virial(
        nnp::virial_deviation(member_virials, count, relative_v ? options_.relative_v / energy_factor : -1.0));
    const double v_factor = relative_v ? 1.0 : energy_factor;
    last_.devi_e = energy_factor * devi_e;
    last_.max_v = v_factor * v.max;
    last_.min_v = v_factor * v.min;
    last_.avg_v = v_factor * v.avg;
  } catch (const nnp::Error &err) {
    error->all(FLERR, std::string("pair_style nnp: ") + err.what());
  }
  for (double *value : {&last_.devi_e, &last_.max_v, &last_.min_v, &last_.avg_v})
    if (!std::isfinite(*value)) *value = std::numeric_limits<double>::infinity();
  write(options_.atomic ? gather_atoms() : std::vector<double>());
}

std::vector<double> NNPEnsemble::gather_atoms() const {
  const int nlocal = atom->nlocal, nprocs = comm->nprocs;
  std::vector<double> values(last_.atom.begin(), last_.atom.begin() + nlocal);
  std::vector<tagint> tags(atom->tag, atom->tag + nlocal);
  std::vector<int> counts(nprocs), offsets(nprocs, 0);
  MPI_Gather(&nlocal, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, world);
  int total = 0;
  if (comm->me == 0)
    for (int r = 0; r < nprocs; r++) offsets[r] = total, total += counts[r];
  std::vector<double> all_values(comm->me == 0 ? total : 0);
  std::vector<tagint> all_tags(comm->me == 0 ? total : 0);
  MPI_Gatherv(values.data(), nlocal, MPI_DOUBLE, all_values.data(), counts.data(), offsets.data(), MPI_DOUBLE, 0,
              world);
  MPI_Gatherv(tags.data(), nlocal, MPI_LMP_TAGINT, all_tags.data(), counts.data(), offsets.data(), MPI_LMP_TAGINT,
              0, world);
  if (comm->me != 0) return {};
  std::vector<int> order(total);
  for (int i = 0; i < total; i++) order[i] = i;
  std::sort(order.begin(), order.end(), [&](int a, int b) { return all_tags[a] < all_tags[b]; });
  std::vector<double> by_id(total);
  for (int i = 0; i < total; i++) by_id[i] = all_values[order[i]];
  return by_id;
}

// DeePMD-kit's model_devi.out: step, virial (max min avg), force (max min avg), then devi_e where
// `dp model-devi` writes it, then with `atomic` one eps_i per atom in atom-ID order (DeePMD's atm_devi_f).
void NNPEnsemble::write(const std::vector<double> &atoms) {
  if (comm->me != 0 || last_.step == written_step_) return;  // a step evaluated twice (run 0; run N) once
  if (!out_) {
    out_ = fopen(options_.out_file.c_str(), "w");
    if (!out_) error->one(FLERR, "pair_style nnp: cannot open out_file " + options_.out_file + " for writing");
    fprintf(out_, "#%11s", "step");
    for (const char *name : {"max_devi_v", "min_devi_v", "avg_devi_v", "max_devi_f", "min_devi_f", "avg_devi_f",
                             "devi_e"})
      fprintf(out_, " %19s", name);
    if (options_.atomic) fprintf(out_, " %19s", "atm_devi_f(N)");
    fprintf(out_, "\n");
  }
  fprintf(out_, "%12lld", static_cast<long long>(last_.step));
  for (double value : {last_.max_v, last_.min_v, last_.avg_v, last_.max_f, last_.min_f, last_.avg_f, last_.devi_e})
    fprintf(out_, " %19.12e", value);
  for (double value : atoms) fprintf(out_, " %19.12e", value);
  fprintf(out_, "\n");
  fflush(out_);
  written_step_ = last_.step;
}

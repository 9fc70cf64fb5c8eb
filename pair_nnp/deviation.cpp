#include "deviation.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "contract.h"

namespace nnp {

namespace {

void check_members(size_t members) {
  if (members < 2) throw Error("an ensemble needs at least two members (the driving model and one more)");
}

}  // namespace

torch::Tensor force_deviation(const torch::Tensor &forces, double relative_level) {
  if (forces.dim() != 3 || forces.size(2) != 3) throw Error("force_deviation expects (members, atoms, 3) forces");
  check_members(static_cast<size_t>(forces.size(0)));
  // relative to the first member (the variance does not change): identical members give exactly 0
  torch::Tensor f = forces.to(torch::kFloat64);
  f = f - f.narrow(0, 0, 1);
  torch::Tensor spread = f - f.mean(0, /*keepdim=*/true);
  torch::Tensor eps = (spread * spread).sum(2).mean(0).sqrt();
  if (relative_level < 0.0) return eps;
  torch::Tensor mean_force = forces.to(torch::kFloat64).mean(0);  // (N, 3)
  return eps / (mean_force.norm(2, /*dim=*/1) + relative_level);
}

std::vector<double> virial_deviation(const std::vector<std::vector<double>> &virials, double num_atoms,
                                     double relative_level) {
  check_members(virials.size());
  std::vector<double> eps(9, 0.0);
  if (!(num_atoms > 0.0)) return eps;
  const double m = static_cast<double>(virials.size());
  for (const auto &v : virials)
    if (v.size() != 9) throw Error("virial_deviation expects nine components (row-major 3x3) per member");
  for (int ab = 0; ab < 9; ab++) {
    // relative to the first member, as for forces
    double mean = 0.0, mean_abs = 0.0, var = 0.0;
    for (const auto &v : virials) {
      mean += (v[ab] - virials[0][ab]) / num_atoms;
      mean_abs += v[ab] / num_atoms;
    }
    mean /= m;
    mean_abs /= m;
    for (const auto &v : virials) {
      const double d = (v[ab] - virials[0][ab]) / num_atoms - mean;
      var += d * d;
    }
    eps[ab] = std::sqrt(var / m);
    if (relative_level >= 0.0) eps[ab] /= std::fabs(mean_abs) + relative_level;
  }
  return eps;
}

VirialSummary summarize_virial(const std::vector<double> &eps_ab) {
  VirialSummary s;
  if (eps_ab.empty()) return s;
  s.max = *std::max_element(eps_ab.begin(), eps_ab.end());
  s.min = *std::min_element(eps_ab.begin(), eps_ab.end());
  double squares = 0.0;
  for (double v : eps_ab) squares += v * v;
  s.avg = std::sqrt(squares / static_cast<double>(eps_ab.size()));
  return s;
}

double energy_deviation(const std::vector<double> &energies, double num_atoms) {
  check_members(energies.size());
  if (!(num_atoms > 0.0)) return 0.0;
  // relative to the first member, as for forces
  std::vector<double> d;
  for (double e : energies) d.push_back((e - energies[0]) / num_atoms);
  double mean = 0.0;
  for (double v : d) mean += v;
  mean /= static_cast<double>(d.size());
  double var = 0.0;
  for (double v : d) var += (v - mean) * (v - mean);
  return std::sqrt(var / static_cast<double>(energies.size()));
}

namespace {

std::string joined(const std::vector<std::string> &words) {
  std::string out;
  for (const auto &w : words) out += (out.empty() ? "" : " ") + w;
  return out;
}

}  // namespace

void check_ensemble_member(const ModelInfo &driver, const std::string &driver_path, const ModelInfo &member,
                           const std::string &member_path) {
  using namespace contract;
  const std::string prefix = "ensemble member " + member_path + " ";
  const std::string fix = "; every member must be trained on the same species, cutoff and units as " + driver_path;
  if (member.species != driver.species)
    throw Error(prefix + "has species '" + joined(member.species) + "' but the driving model " + driver_path +
                " has '" + joined(driver.species) + "' (same elements in the same order)" + fix);
  if (std::fabs(member.cutoff - driver.cutoff) > 1e-12 * std::max(1.0, driver.cutoff)) {
    std::ostringstream msg;
    msg.precision(17);
    msg << prefix << "has cutoff " << member.cutoff << " A but the driving model " << driver_path << " has "
        << driver.cutoff << " A" << fix;
    throw Error(msg.str());
  }
  const std::string units_key = METADATA_KEYS[META_UNITS];
  const auto mu = member.metadata.find(units_key), du = driver.metadata.find(units_key);
  if (mu != member.metadata.end() && du != driver.metadata.end() && mu->second != du->second)
    throw Error(prefix + "declares units '" + mu->second + "' but the driving model " + driver_path + " declares '" +
                du->second + "'" + fix);
  if (member.halo_per_layer != driver.halo_per_layer)
    throw Error(prefix + "has halo '" + HALO_MODES[member.halo_per_layer ? HALO_PER_LAYER : HALO_NONE] +
                "' but the driving model " + driver_path + " has '" +
                HALO_MODES[driver.halo_per_layer ? HALO_PER_LAYER : HALO_NONE] +
                "': members must be the same kind of model (they share one graph and ghost shell)");
  if (!driver.halo_per_layer && member.receptive_hops > driver.receptive_hops)
    throw Error(prefix + "reaches " + std::to_string(member.receptive_hops) + " cutoffs through the graph, more than " +
                "the driving model " + driver_path + " (" + std::to_string(driver.receptive_hops) +
                "): its ghost shell would be too thin on several MPI ranks; make the deepest model the driver");
}

}  // namespace nnp

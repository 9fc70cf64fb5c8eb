#include "deviation.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "contract.h"

namespace nnp {

torch::Tensor force_deviation(const torch::Tensor &forces) {
  if (forces.dim() != 3 || forces.size(2) != 3) throw Error("force_deviation expects (members, atoms, 3) forces");
  if (forces.size(0) < 2) throw Error("an ensemble needs at least two members (the driving model and one more)");
  // relative to the first member (the variance does not change): identical members give exactly 0
  torch::Tensor f = forces.to(torch::kFloat64);
  f = f - f.narrow(0, 0, 1);
  torch::Tensor spread = f - f.mean(0, /*keepdim=*/true);
  return (spread * spread).sum(2).mean(0).sqrt();
}

double energy_deviation(const std::vector<double> &energies, double num_atoms) {
  if (energies.size() < 2) throw Error("an ensemble needs at least two members (the driving model and one more)");
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

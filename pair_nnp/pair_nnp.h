// pair_style nnp: LAMMPS bookkeeping (settings, coeff, neighbour lists, ghosts, tallies) over nnp::Evaluator.
#ifndef LMP_PAIR_NNP_H
#define LMP_PAIR_NNP_H

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "pair.h"

namespace nnp {
class Evaluator;
}

namespace LAMMPS_NS {

class PairNNP : public Pair {
 public:
  PairNNP(class LAMMPS *);
  ~PairNNP() override;
  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;

 private:
  std::unique_ptr<nnp::Evaluator> model;
  std::string model_path;
  std::string device_request;    // "", "cpu", "cuda"
  std::vector<int64_t> type_species;  // LAMMPS type -> model species index (index 0 unused)
  double cutoff = 0.0;
  double energy_factor = 1.0;    // model eV -> LAMMPS energy units
  bool ghost_mode = false;       // several ranks: ghosts are nodes, neighbours of ghosts are needed
  bool warned_direct = false;
  bigint owners_built_at = -1;  // neighbor->ncalls when the ghost->owner map was built

  // reused buffers
  std::vector<int64_t> species, edge_index, owner;
  std::vector<double> edge_vectors;
  std::unordered_map<tagint, int> tag_to_local;

  void allocate();
  std::string choose_device() const;
  void map_ghosts_to_owners();
};

}  // namespace LAMMPS_NS

#endif

// pair_style nnp: LAMMPS bookkeeping (settings, coeff, neighbour lists, ghosts, halo exchange, tallies)
// over nnp::Evaluator. The graph lives on the model's device (docs/pair_style.md).
#ifndef LMP_PAIR_NNP_H
#define LMP_PAIR_NNP_H

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <torch/torch.h>

#include "halo.h"
#include "lammps_compat.h"
#include "pair.h"

namespace nnp {
class Evaluator;
struct Outputs;
}

namespace LAMMPS_NS {

class NNPEnsemble;

class PairNNP : public Pair {
 public:
  PairNNP(class LAMMPS *);
  ~PairNNP() override;
  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  void setup() override;
  double init_one(int, int) override;
  void finish() NNP_OVERRIDE_SINCE_2022;

  // halo exchange of node rows through LAMMPS forward/reverse communication
  int pack_forward_comm(int, int *, double *, int, int *) override;
  void unpack_forward_comm(int, int, double *) override;
  int pack_reverse_comm(int, int, double *) override;
  void unpack_reverse_comm(int, int *, double *) override;

  // How ranks see the graph: one rank maps periodic images to owners; several ranks either exchange
  // node features after every layer (ghosts one cutoff deep) or evaluate a deep ghost shell.
  enum class GraphMode { OWNERS, HALO, DEEP_SHELL };

  // the ensemble (keyword ensemble), nullptr without one; read by compute nnp/deviation
  const NNPEnsemble *ensemble() const { return ensemble_.get(); }

 private:
  std::unique_ptr<nnp::Evaluator> model;
  std::string model_path;
  std::string device_request;          // "", "cpu", "cuda"
  std::unique_ptr<NNPEnsemble> ensemble_;
  std::vector<int64_t> type_species;   // LAMMPS type -> model species index, -1 for NULL (index 0 unused)
  std::vector<std::string> type_element;
  double cutoff = 0.0;
  double energy_factor = 1.0;          // model eV -> LAMMPS energy units
  GraphMode mode = GraphMode::OWNERS;
  bool warned_direct = false;
  bool warned_exclusions = false;

  // The graph, rebuilt whenever LAMMPS has rebuilt its neighbour list (graph_is_stale).
  bigint graph_built_at = -1;
  std::vector<int> graph_types;       // atom->type of every atom (ghosts too) when it was built
  int num_nodes = 0, num_local_nodes = 0;
  std::vector<int> node_atom;          // node -> LAMMPS atom index
  std::vector<int> atom_node;          // LAMMPS atom index -> node, -1 when not in the graph (NULL type)
  std::vector<int> owner;              // one rank: atom index -> local index of its owner
  torch::Tensor species_dev;           // (N,) int64 on the device
  torch::Tensor pair_atoms_dev;        // (2, P) candidate pairs (list + skin) as LAMMPS atom indices
  torch::Tensor pair_nodes_dev;        // (2, P) the same pairs as graph nodes
  int position_rows = 0;               // atoms whose positions the edge vectors read

  // pinned (CUDA) or plain host staging buffers, reused between steps
  torch::Tensor positions_host, halo_host, outputs_host;

  std::thread::id lammps_thread;       // the thread of the current compute(): the only one that may call MPI

  // halo exchange state for pack/unpack
  double *halo_rows = nullptr;
  int halo_width = 0, halo_col0 = 0, halo_ncols = 0;

  // timers (seconds) and graph sizes, summed over compute() calls
  enum Timer { T_GRAPH, T_H2D, T_EDGES, T_MODEL, T_HALO, T_D2H, T_TALLY, T_ENSEMBLE, NUM_TIMERS };
  std::array<double, NUM_TIMERS> timers{};
  double sum_nodes = 0.0, sum_local = 0.0, sum_edges = 0.0;
  bigint evaluations = 0;

  // the nnp::halo ops call this while the model runs on a multi-rank per-layer graph
  class Halo : public nnp::HaloExchanger {
   public:
    explicit Halo(PairNNP &pair) : pair_(pair) {}
    void halo_forward(torch::Tensor rows, int64_t) override { pair_.exchange_rows(rows, false); }
    void halo_reverse(torch::Tensor grad, int64_t) override { pair_.exchange_rows(grad, true); }

   private:
    PairNNP &pair_;
  } halo{*this};

  void report_run();
  void allocate();
  std::string choose_device(const std::string &path) const;
  void warn_on_mass_mismatch();
  void choose_graph_mode();
  bool graph_is_stale() const;
  int excluded_pair_order() const;
  void build_graph();
  void map_ghosts_to_owners(int nall);
  std::vector<int64_t> candidate_pairs(std::vector<int64_t> &pair_nodes) const;
  void edges_from_positions(torch::Tensor &edge_index, torch::Tensor &edge_vectors);
  torch::Tensor to_host(const torch::Tensor &t, torch::Tensor &staging);
  std::vector<torch::Tensor> to_host(const std::vector<torch::Tensor> &ts, torch::Tensor &staging);
  void exchange_rows(torch::Tensor rows, bool reverse);
  void evaluate_ensemble(const nnp::Outputs &out, const torch::Tensor &edge_index,
                         const torch::Tensor &edge_vectors);
  void check_finite(const torch::Tensor &forces, double energy, const torch::Tensor &atom_energy);
};

}  // namespace LAMMPS_NS

#endif

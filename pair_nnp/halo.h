// The halo operation of model contract version 2 (docs/model_contract.md, "Halo exchange").
//
//   nnp::halo(Tensor x, int layer) -> Tensor          ghost rows of x <- their owners' rows
//   nnp::halo_reverse(Tensor grad, int layer) -> Tensor  owners += ghost rows, ghost rows <- 0
//
// Each is the other's adjoint (autograd: d halo = halo_reverse, d halo_reverse = halo). With no
// exchanger active both are the identity: training, ASE, one LAMMPS rank. The LAMMPS pair style
// activates itself as the exchanger around a model evaluation (HaloScope), so inside LAMMPS the rows
// travel with comm->forward_comm / comm->reverse_comm. The ops are defined here, once, in the shared
// library libnnp_core.so that the LAMMPS plugin, the Python binding and nnp.nn.halo all load.
#ifndef NNP_HALO_H
#define NNP_HALO_H

#include <cstdint>

#include <torch/torch.h>

namespace nnp {

class HaloExchanger {
 public:
  virtual ~HaloExchanger() = default;
  // rows: (num_nodes, F), contiguous, any float dtype and device; ghost rows <- owners' rows, in place
  virtual void halo_forward(torch::Tensor rows, int64_t layer) = 0;
  // grad: (num_nodes, F); every ghost row is added to its owner's row (on its owner's rank), then zeroed
  virtual void halo_reverse(torch::Tensor grad, int64_t layer) = 0;
};

// Makes `exchanger` the active one (process-wide: autograd may run backward on another thread) for
// the lifetime of the scope; restores the previous one after.
class HaloScope {
 public:
  explicit HaloScope(HaloExchanger *exchanger);
  ~HaloScope();
  HaloScope(const HaloScope &) = delete;
  HaloScope &operator=(const HaloScope &) = delete;

 private:
  HaloExchanger *previous_;
};

HaloExchanger *active_halo_exchanger();

// The ops through the dispatcher (with autograd).
torch::Tensor halo(const torch::Tensor &x, int64_t layer);
torch::Tensor halo_reverse(const torch::Tensor &grad, int64_t layer);

}  // namespace nnp

#endif

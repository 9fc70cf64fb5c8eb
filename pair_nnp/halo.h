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
#include <functional>

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

// Runs `work` (a model evaluation on `device`) with `exchanger` active (nullptr: none).
//
// Exchanges are served from the calling thread: on a GPU, `work` runs on a helper thread while the
// calling thread carries out every exchange requested by the helper or by autograd's device threads, so
// the exchanger (MPI, in LAMMPS) is only ever called from the thread that called this. LAMMPS initialises
// MPI without thread support, and autograd runs the backward of CUDA tensors (nnp::halo's backward,
// nnp::halo_reverse, inside a TorchScript model's force computation) on its per-device worker thread.
// The helper inherits the caller's thread-local torch state (grad mode, dispatch keys), intra-op thread
// count, and current device and stream. An exception thrown by an exchange (a LAMMPS error) is rethrown
// here as it was thrown; one from `work` after the helper has finished.
//
// On the CPU autograd runs the whole backward on the calling thread: `work` runs right here, unless the
// environment sets NNP_HALO_SERVE=1 (tests use it to check the served path on machines without a GPU).
void run_with_exchanger(HaloExchanger *exchanger, const torch::Device &device, const std::function<void()> &work);

// Whether run_with_exchanger serves the exchanges of a model on `device` from a helper thread.
bool exchanges_served(const torch::Device &device);

// The ops through the dispatcher (with autograd).
torch::Tensor halo(const torch::Tensor &x, int64_t layer);
torch::Tensor halo_reverse(const torch::Tensor &grad, int64_t layer);

}  // namespace nnp

#endif

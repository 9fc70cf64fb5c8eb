#include "halo.h"

#include <atomic>

#include <torch/library.h>

namespace nnp {

namespace {

std::atomic<HaloExchanger *> active{nullptr};

using Op = torch::Tensor(const torch::Tensor &, int64_t);

// Forward kernels (any backend): a fresh tensor (ops must not alias their input), exchanged in place.
torch::Tensor halo_kernel(const torch::Tensor &x, int64_t layer) {
  torch::Tensor rows = x.contiguous().clone();
  if (HaloExchanger *exchanger = active.load()) exchanger->halo_forward(rows, layer);
  return rows;
}

torch::Tensor halo_reverse_kernel(const torch::Tensor &grad, int64_t layer) {
  torch::Tensor rows = grad.contiguous().clone();
  if (HaloExchanger *exchanger = active.load()) exchanger->halo_reverse(rows, layer);
  return rows;
}

// Shape-only kernel for tracing (torch.export, fake tensors): both ops keep the shape and dtype.
torch::Tensor same_shape_meta(const torch::Tensor &x, int64_t) { return torch::empty_like(x); }

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// One class per direction; the backward of each calls the other through the dispatcher, so double
// backward (training with forces in the loss) works too.
template <bool Reverse>
class HaloFunction : public torch::autograd::Function<HaloFunction<Reverse>> {
 public:
  static torch::Tensor forward(AutogradContext *ctx, const torch::Tensor &x, int64_t layer) {
    ctx->saved_data["layer"] = layer;
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return Reverse ? nnp::halo_reverse(x, layer) : nnp::halo(x, layer);
  }
  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    const int64_t layer = ctx->saved_data["layer"].toInt();
    return {Reverse ? nnp::halo(grads[0], layer) : nnp::halo_reverse(grads[0], layer), torch::Tensor()};
  }
};

torch::Tensor halo_autograd(const torch::Tensor &x, int64_t layer) { return HaloFunction<false>::apply(x, layer); }
torch::Tensor halo_reverse_autograd(const torch::Tensor &g, int64_t layer) {
  return HaloFunction<true>::apply(g, layer);
}

c10::TypedOperatorHandle<Op> find_op(const char *name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Op>();
}

}  // namespace

HaloScope::HaloScope(HaloExchanger *exchanger) : previous_(active.exchange(exchanger)) {}
HaloScope::~HaloScope() { active.store(previous_); }

HaloExchanger *active_halo_exchanger() { return active.load(); }

torch::Tensor halo(const torch::Tensor &x, int64_t layer) {
  static const auto op = find_op("nnp::halo");
  return op.call(x, layer);
}

torch::Tensor halo_reverse(const torch::Tensor &grad, int64_t layer) {
  static const auto op = find_op("nnp::halo_reverse");
  return op.call(grad, layer);
}

}  // namespace nnp

// The names are those of contract.h HALO_OPS (tests/test_contract.py checks the schema strings).
TORCH_LIBRARY(nnp, m) {
  m.def("halo(Tensor x, int layer) -> Tensor");
  m.def("halo_reverse(Tensor grad, int layer) -> Tensor");
}

TORCH_LIBRARY_IMPL(nnp, CompositeExplicitAutograd, m) {
  m.impl("halo", nnp::halo_kernel);
  m.impl("halo_reverse", nnp::halo_reverse_kernel);
}

TORCH_LIBRARY_IMPL(nnp, Autograd, m) {
  m.impl("halo", nnp::halo_autograd);
  m.impl("halo_reverse", nnp::halo_reverse_autograd);
}

TORCH_LIBRARY_IMPL(nnp, Meta, m) {
  m.impl("halo", nnp::same_shape_meta);
  m.impl("halo_reverse", nnp::same_shape_meta);
}

#include "halo.h"

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>

#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>
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

// The current stream of this thread on `device` (none for the CPU).
std::optional<c10::Stream> current_stream(const c10::Device &device) {
  if (device.is_cpu()) return std::nullopt;
  return c10::impl::VirtualGuardImpl(device.type()).getStream(device);
}

// Forwards exchanges to `target` on the thread that constructed it: directly when called there, otherwise
// queued for serve() and waited for. Each request runs on the requester's stream, so that the exchange's
// copies are ordered after the kernels that produced the rows, on whichever thread those were launched.
class ServedExchanger : public HaloExchanger {
 public:
  explicit ServedExchanger(HaloExchanger *target) : target_(target), server_(std::this_thread::get_id()) {}

  void halo_forward(torch::Tensor rows, int64_t layer) override { request(std::move(rows), layer, false); }
  void halo_reverse(torch::Tensor grad, int64_t layer) override { request(std::move(grad), layer, true); }

  // On the constructing thread: run `work` on a helper thread and serve its requests until it returns.
  void serve(const torch::Device &device, const std::function<void()> &work) {
    const at::ThreadLocalState state;  // grad mode, dispatch keys, ... of this thread
    const int threads = at::get_num_threads();
    const std::optional<c10::Stream> stream = current_stream(device);
    std::exception_ptr work_error;
    std::thread helper([&] {
      at::ThreadLocalStateGuard state_guard(state);
      c10::OptionalStreamGuard stream_guard(stream);  // the caller's device and stream
      if (at::get_num_threads() != threads) at::set_num_threads(threads);
      try {
        work();
      } catch (...) {
        work_error = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(mutex_);
      finished_ = true;
      changed_.notify_all();
    });
    std::exception_ptr exchange_error;
    for (;;) {
      Request *next = nullptr;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [&] { return finished_ || !queue_.empty(); });
        if (queue_.empty()) break;
        next = queue_.front();
        queue_.pop_front();
      }
      try {
        c10::OptionalStreamGuard stream_guard(next->stream);
        call(next->rows, next->layer, next->reverse);
      } catch (...) {
        next->error = std::current_exception();
        if (!exchange_error) exchange_error = next->error;
      }
      std::lock_guard<std::mutex> lock(mutex_);
      next->done = true;
      changed_.notify_all();
    }
    helper.join();
    if (exchange_error) std::rethrow_exception(exchange_error);  // the original error, not torch's wrapping
    if (work_error) std::rethrow_exception(work_error);
  }

 private:
  struct Request {
    torch::Tensor rows;
    int64_t layer;
    bool reverse;
    std::optional<c10::Stream> stream;
    bool done = false;
    std::exception_ptr error;
  };

  void call(torch::Tensor &rows, int64_t layer, bool reverse) {
    if (reverse) target_->halo_reverse(rows, layer);
    else target_->halo_forward(rows, layer);
  }

  void request(torch::Tensor rows, int64_t layer, bool reverse) {
    if (std::this_thread::get_id() == server_) return call(rows, layer, reverse);
    Request r{rows, layer, reverse, current_stream(rows.device())};
    std::unique_lock<std::mutex> lock(mutex_);
    queue_.push_back(&r);
    changed_.notify_all();
    changed_.wait(lock, [&] { return r.done; });
    if (r.error) std::rethrow_exception(r.error);
  }

  HaloExchanger *target_;
  std::thread::id server_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Request *> queue_;
  bool finished_ = false;
};

}  // namespace

bool exchanges_served(const torch::Device &device) {
  if (!device.is_cpu()) return true;
  const char *forced = std::getenv("NNP_HALO_SERVE");
  return forced != nullptr && std::strcmp(forced, "1") == 0;
}

void run_with_exchanger(HaloExchanger *exchanger, const torch::Device &device, const std::function<void()> &work) {
  if (exchanger == nullptr || !exchanges_served(device)) {
    HaloScope scope(exchanger);
    work();
    return;
  }
  ServedExchanger served(exchanger);
  HaloScope scope(&served);
  served.serve(device, work);
}

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

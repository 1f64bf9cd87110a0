// ProfilingBackend: the decorator backend_for() hands out while the profiler is on
// (core/profiler.h). Every Backend method forwards to the real backend inside a
// profiler::detail::OpCall that times it. The forwarders are generated from the op list,
// core/backend_ops.def, whose reads and writes columns give the tensors an op moves; this
// file adds, per op where it differs from the default, what a call is called, its FLOPs and
// its bytes (the OpCost rules below).
//
// Bytes: each tensor once, counting a stride-0 (broadcast) dimension once; an in-place
// output (index_add, scatter_add, adamw) is read and written. Gather-like ops (index_select,
// gather) read as many elements as they write, not the whole source. FLOPs: matmul 2MNK;
// attention 2 (D + Dv) per visible query-key pair (QK^T and PV), its backward 2 (3D + 2Dv)
// (recomputed QK^T, dP = dO V^T, dV = P^T dO, dQ = dS K, dK = dS^T Q): 2.5x the forward when
// Dv = D. Memory-bound ops get no FLOP count: GB/s is their measure.
#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <mutex>

#include "core/backend.h"
#include "core/profiler.h"

namespace mnemo::profiler {

namespace {

// Bytes of the distinct elements a view reaches (broadcast dimensions counted once).
int64_t view_bytes(const Tensor& t) {
  if (!t.defined() || t.numel() == 0) return 0;
  int64_t elements = 1;
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (t.stride(d) != 0) elements *= t.size(d);
  }
  return elements * int64_t(t.element_size());
}

// Query-key pairs one (batch, head) computes: all of them, or under the bottom-right causal
// alignment of core/backend_ops.def (query i sees keys j <= i + Tk - Tq) those visible.
int64_t attention_pairs(int64_t Tq, int64_t Tk, bool causal) {
  if (!causal) return Tq * Tk;
  int64_t pairs = 0;
  for (int64_t i = 0; i < Tq; ++i) pairs += std::clamp<int64_t>(i + Tk - Tq + 1, 0, Tk);
  return pairs;
}

// q (B, H, Tq, D), k (B, Hkv, Tk, D), v (B, Hkv, Tk, Dv): flops per (pair, unit of D/Dv).
int64_t attention_flops(const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                        int64_t d_factor, int64_t dv_factor) {
  const int64_t BH = q.size(0) * q.size(1);
  const int64_t pairs = attention_pairs(q.size(2), k.size(2), causal);
  return 2 * BH * pairs * (d_factor * q.size(3) + dv_factor * v.size(3));
}

// What the profiler records of one call beyond its tensors: the label (CallName, or the
// direction of a copy), the FLOPs (-1: none counted) and the bytes moved (-1: every tensor
// the op reads and writes once, as core/backend_ops.def lists them). The ops with a rule of
// their own specialise OpCost below; OpCost<op>::flops(arguments...) and so on.
template <BackendOp op>
struct DefaultCost {
  static std::string_view label(const auto&... args) { return CallName<op>::of(args...); }
  static int64_t flops(const auto&...) { return -1; }
  static int64_t bytes(const auto&...) { return -1; }
};
template <BackendOp op>
struct OpCost : DefaultCost<op> {};

template <>
struct OpCost<BackendOp::copy> : DefaultCost<BackendOp::copy> {
  static std::string_view label(const Tensor& src, const Tensor& dst) {
    if (src.device().is_cpu() && !dst.device().is_cpu()) return "copy_h2d";
    if (!src.device().is_cpu() && dst.device().is_cpu()) return "copy_d2h";
    return "copy";
  }
};

// a (..., M, K), b (..., K, N), out (..., M, N): 2 M N K per batch.
template <>
struct OpCost<BackendOp::matmul> : DefaultCost<BackendOp::matmul> {
  static int64_t flops(const Tensor& a, const Tensor&, const Tensor& out) {
    return 2 * out.numel() * a.size(-1);
  }
};
// a (M, K), b (K, N), out (M, N): 2 M N K.
template <>
struct OpCost<BackendOp::matmul_segment_sum> : DefaultCost<BackendOp::matmul_segment_sum> {
  static int64_t flops(const Tensor& a, const Tensor&, int64_t, const Tensor& out) {
    return 2 * out.numel() * a.size(1);
  }
};

// Gather-like: read as many elements of x as are written (and the indices), not all of x.
template <BackendOp op>
struct GatherCost : DefaultCost<op> {
  static int64_t bytes(const Tensor&, int64_t, const Tensor& index, const Tensor& out) {
    return view_bytes(index) + 2 * view_bytes(out);
  }
};
template <>
struct OpCost<BackendOp::index_select> : GatherCost<BackendOp::index_select> {};
template <>
struct OpCost<BackendOp::gather> : GatherCost<BackendOp::gather> {};

// Scatter-like, in place: read src, and read and write as many elements of out.
template <BackendOp op>
struct ScatterCost : DefaultCost<op> {
  static int64_t bytes(const Tensor&, int64_t, const Tensor& index, const Tensor& src) {
    return view_bytes(index) + 3 * view_bytes(src);
  }
};
template <>
struct OpCost<BackendOp::index_add> : ScatterCost<BackendOp::index_add> {};
template <>
struct OpCost<BackendOp::scatter_add> : ScatterCost<BackendOp::scatter_add> {};

template <>
struct OpCost<BackendOp::attention> : DefaultCost<BackendOp::attention> {
  static int64_t flops(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor&,
                       bool causal, double, const Tensor&, const Tensor&) {
    return attention_flops(q, k, v, causal, 1, 1);
  }
};
template <>
struct OpCost<BackendOp::attention_backward> : DefaultCost<BackendOp::attention_backward> {
  static int64_t flops(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor&,
                       bool causal, double, const Tensor&, const Tensor&, const Tensor&,
                       const Tensor&, const Tensor&, const Tensor&) {
    return attention_flops(q, k, v, causal, 3, 2);
  }
};

#define MNEMO_UNPAREN(...) __VA_ARGS__

class ProfilingBackend final : public Backend {
 public:
  explicit ProfilingBackend(Backend& inner) : inner_(inner) {}

  std::string_view name() const override { return inner_.name(); }
  Allocator* allocator(Device device) override { return inner_.allocator(device); }
  void synchronize(Device device) override { inner_.synchronize(device); }

  // One forwarder per op of core/backend_ops.def: record, then call the real backend.
  static_assert(size_t(BackendOp::count) == 31, "a new op needs a cost rule here if it has FLOPs");
#define MNEMO_BACKEND_OP(NAME, CATEGORY, PARAMETERS, ARGUMENTS, READS, WRITES)          \
  void NAME PARAMETERS override {                                                       \
    using Cost = OpCost<BackendOp::NAME>;                                               \
    run(Cost::label ARGUMENTS, CATEGORY, {MNEMO_UNPAREN READS}, {MNEMO_UNPAREN WRITES}, \
        Cost::flops ARGUMENTS, Cost::bytes ARGUMENTS, [&] { inner_.NAME ARGUMENTS; });  \
  }
#include "core/backend_ops.def"

 private:
  // Runs f as one recorded op: reads then writes (undefined tensors skipped) give the
  // shapes, dtype, device and, unless bytes >= 0 is given, the bytes moved.
  template <class F>
  void run(std::string_view name, std::string_view category,
           std::initializer_list<std::reference_wrapper<const Tensor>> reads,
           std::initializer_list<std::reference_wrapper<const Tensor>> writes, int64_t flops,
           int64_t bytes, F&& f) {
    if (detail::inside_op()) {
      f();
      return;
    }
    OpRecord record;
    record.name = name;
    record.category = category;
    record.flops = flops;
    bool first = true;
    int64_t moved = 0;
    for (auto list : {reads, writes}) {
      for (const Tensor& t : list) {
        if (!t.defined()) continue;
        if (first) {
          record.dtype = t.dtype();
          first = false;
        }
        if (!t.device().is_cpu()) record.device = t.device();
        record.shapes.push_back(t.shape());
        moved += view_bytes(t);
      }
    }
    record.bytes = bytes >= 0 ? bytes : moved;
    detail::OpCall call(std::move(record));
    f();
  }

  Backend& inner_;
};

}  // namespace

// One decorator per real backend, created on first use and never destroyed (references to
// it may be held anywhere). A one-entry cache per thread keeps the lock off the usual path.
Backend& wrap(Backend& real) {
  thread_local Backend* cached_real = nullptr;
  thread_local Backend* cached_wrapper = nullptr;
  if (&real == cached_real) return *cached_wrapper;
  if (dynamic_cast<ProfilingBackend*>(&real) != nullptr) return real;
  static std::mutex mutex;
  static auto* wrappers = new std::map<Backend*, std::unique_ptr<ProfilingBackend>>();
  std::lock_guard lock(mutex);
  auto& slot = (*wrappers)[&real];
  if (!slot) slot = std::make_unique<ProfilingBackend>(real);
  cached_real = &real;
  cached_wrapper = slot.get();
  return *slot;
}

}  // namespace mnemo::profiler

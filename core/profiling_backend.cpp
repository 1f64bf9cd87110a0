// ProfilingBackend: the decorator backend_for() hands out while the profiler is on
// (core/profiler.h). Every Backend method forwards to the real backend inside a
// profiler::detail::OpCall that times it; this file only says, per method, what the op is
// called, which tensors it reads and writes (for the bytes moved) and its FLOPs where a
// formula is known.
//
// Bytes: each tensor once, counting a stride-0 (broadcast) dimension once; an in-place
// output (index_add, scatter_add, adamw) is read and written. Gather-like ops (index_select,
// gather) read as many elements as they write, not the whole source. FLOPs: matmul 2MNK;
// attention 2 (D + Dv) per visible query-key pair (QK^T and PV), its backward 2 (3D + 2Dv)
// (recomputed QK^T, dP = dO V^T, dV = P^T dO, dQ = dS K, dK = dS^T Q): 2.5x the forward when
// Dv = D. Memory-bound ops get no FLOP count: GB/s is their measure.
#include <algorithm>
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
// alignment of core/backend.h (query i sees keys j <= i + Tk - Tq) those visible.
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

class ProfilingBackend final : public Backend {
 public:
  explicit ProfilingBackend(Backend& inner) : inner_(inner) {}

  std::string_view name() const override { return inner_.name(); }
  Allocator* allocator(Device device) override { return inner_.allocator(device); }
  void synchronize(Device device) override { inner_.synchronize(device); }

  void copy(const Tensor& src, const Tensor& dst) override {
    std::string_view name = "copy";
    if (src.device().is_cpu() && !dst.device().is_cpu()) name = "copy_h2d";
    if (!src.device().is_cpu() && dst.device().is_cpu()) name = "copy_d2h";
    run(name, "memory", {&src}, {&dst}, -1, [&] { inner_.copy(src, dst); });
  }
  void fill(const Tensor& dst, double value) override {
    run("fill", "memory", {}, {&dst}, -1, [&] { inner_.fill(dst, value); });
  }
  void arange(const Tensor& out, double start, double step) override {
    run("arange", "memory", {}, {&out}, -1, [&] { inner_.arange(out, start, step); });
  }

  void unary(UnaryOp op, const UnaryParams& params, const Tensor& x, const Tensor& out) override {
    run(op_name(op), "unary", {&x}, {&out}, -1, [&] { inner_.unary(op, params, x, out); });
  }
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override {
    run(op_name(op), "binary", {&a, &b}, {&out}, -1, [&] { inner_.binary(op, a, b, out); });
  }
  void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) override {
    run("where", "elementwise", {&cond, &a, &b}, {&out}, -1,
        [&] { inner_.where(cond, a, b, out); });
  }

  void reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims,
              const Tensor& out) override {
    run(op_name(op), "reduce", {&x}, {&out}, -1, [&] { inner_.reduce(op, x, dims, out); });
  }
  void arg_reduce(ArgReduceOp op, const Tensor& x, int64_t dim, const Tensor& out) override {
    run(op_name(op), "reduce", {&x}, {&out}, -1, [&] { inner_.arg_reduce(op, x, dim, out); });
  }
  void cumsum(const Tensor& x, int64_t dim, bool reverse, const Tensor& out) override {
    run("cumsum", "reduce", {&x}, {&out}, -1, [&] { inner_.cumsum(x, dim, reverse, out); });
  }
  void topk(const Tensor& x, int64_t k, int64_t dim, bool largest, const Tensor& values,
            const Tensor& indices) override {
    run("topk", "reduce", {&x}, {&values, &indices}, -1,
        [&] { inner_.topk(x, k, dim, largest, values, indices); });
  }

  // a (..., M, K), b (..., K, N), out (..., M, N): 2 M N K per batch.
  void matmul(const Tensor& a, const Tensor& b, const Tensor& out) override {
    run("matmul", "matmul", {&a, &b}, {&out}, 2 * out.numel() * a.size(-1),
        [&] { inner_.matmul(a, b, out); });
  }
  void matmul_segment_sum(const Tensor& a, const Tensor& b, int64_t segment,
                          const Tensor& out) override {
    run("matmul_segment_sum", "matmul", {&a, &b}, {&out}, 2 * out.numel() * a.size(1),
        [&] { inner_.matmul_segment_sum(a, b, segment, out); });
  }

  void index_select(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) override {
    run(
        "index_select", "index", {&x, &index}, {&out}, -1,
        [&] { inner_.index_select(x, dim, index, out); }, view_bytes(index) + 2 * view_bytes(out));
  }
  void index_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) override {
    run(
        "index_add", "index", {&out, &index, &src}, {&out}, -1,
        [&] { inner_.index_add(out, dim, index, src); }, view_bytes(index) + 3 * view_bytes(src));
  }
  void gather(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) override {
    run(
        "gather", "index", {&x, &index}, {&out}, -1, [&] { inner_.gather(x, dim, index, out); },
        view_bytes(index) + 2 * view_bytes(out));
  }
  void scatter_add(const Tensor& out, int64_t dim, const Tensor& index,
                   const Tensor& src) override {
    run(
        "scatter_add", "index", {&out, &index, &src}, {&out}, -1,
        [&] { inner_.scatter_add(out, dim, index, src); }, view_bytes(index) + 3 * view_bytes(src));
  }

  void softmax(const Tensor& x, int64_t dim, bool log, const Tensor& out) override {
    run(log ? "log_softmax" : "softmax", "nn", {&x}, {&out}, -1,
        [&] { inner_.softmax(x, dim, log, out); });
  }
  void softmax_backward(const Tensor& y, const Tensor& dy, int64_t dim, bool log,
                        const Tensor& dx) override {
    run(log ? "log_softmax_backward" : "softmax_backward", "nn", {&y, &dy}, {&dx}, -1,
        [&] { inner_.softmax_backward(y, dy, dim, log, dx); });
  }
  void cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                     double label_smoothing, const Tensor& loss, const Tensor& lse) override {
    run("cross_entropy", "nn", {&logits, &target}, {&loss, &lse}, -1,
        [&] { inner_.cross_entropy(logits, target, ignore_index, label_smoothing, loss, lse); });
  }
  void cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse,
                              const Tensor& dloss, int64_t ignore_index, double label_smoothing,
                              const Tensor& dlogits) override {
    run("cross_entropy_backward", "nn", {&logits, &target, &lse, &dloss}, {&dlogits}, -1, [&] {
      inner_.cross_entropy_backward(logits, target, lse, dloss, ignore_index, label_smoothing,
                                    dlogits);
    });
  }
  void rms_norm(const Tensor& x, const Tensor& weight, double eps, const Tensor& y,
                const Tensor& rstd) override {
    run("rms_norm", "nn", {&x, &weight}, {&y, &rstd}, -1,
        [&] { inner_.rms_norm(x, weight, eps, y, rstd); });
  }
  void rms_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& rstd,
                         const Tensor& dy, const Tensor& dx, const Tensor& dweight) override {
    run("rms_norm_backward", "nn", {&x, &weight, &rstd, &dy}, {&dx, &dweight}, -1,
        [&] { inner_.rms_norm_backward(x, weight, rstd, dy, dx, dweight); });
  }
  void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                  const Tensor& y, const Tensor& mean, const Tensor& rstd) override {
    run("layer_norm", "nn", {&x, &weight, &bias}, {&y, &mean, &rstd}, -1,
        [&] { inner_.layer_norm(x, weight, bias, eps, y, mean, rstd); });
  }
  void layer_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& mean,
                           const Tensor& rstd, const Tensor& dy, const Tensor& dx,
                           const Tensor& dweight, const Tensor& dbias) override {
    run("layer_norm_backward", "nn", {&x, &weight, &mean, &rstd, &dy}, {&dx, &dweight, &dbias}, -1,
        [&] { inner_.layer_norm_backward(x, weight, mean, rstd, dy, dx, dweight, dbias); });
  }
  void attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, bool causal,
                 double scale, const Tensor& out, const Tensor& lse) override {
    run("attention", "attention", {&q, &k, &v, &mask}, {&out, &lse},
        attention_flops(q, k, v, causal, 1, 1),
        [&] { inner_.attention(q, k, v, mask, causal, scale, out, lse); });
  }
  void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                          bool causal, double scale, const Tensor& out, const Tensor& lse,
                          const Tensor& dout, const Tensor& dq, const Tensor& dk,
                          const Tensor& dv) override {
    run("attention_backward", "attention", {&q, &k, &v, &mask, &out, &lse, &dout}, {&dq, &dk, &dv},
        attention_flops(q, k, v, causal, 3, 2), [&] {
          inner_.attention_backward(q, k, v, mask, causal, scale, out, lse, dout, dq, dk, dv);
        });
  }
  void scan(const Tensor& a, const Tensor& x, const Tensor& h0, const Tensor& h) override {
    run("scan", "nn", {&a, &x, &h0}, {&h}, -1, [&] { inner_.scan(a, x, h0, h); });
  }
  void scan_backward(const Tensor& a, const Tensor& h, const Tensor& h0, const Tensor& dh,
                     const Tensor& da, const Tensor& dx, const Tensor& dh0) override {
    run("scan_backward", "nn", {&a, &h, &h0, &dh}, {&da, &dx, &dh0}, -1,
        [&] { inner_.scan_backward(a, h, h0, dh, da, dx, dh0); });
  }

  // In place: param, exp_avg, exp_avg_sq are read and written, grad read.
  void adamw(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
             const Tensor& exp_avg_sq, const AdamWParams& params) override {
    run("adamw", "optim", {&param, &grad, &exp_avg, &exp_avg_sq}, {&param, &exp_avg, &exp_avg_sq},
        -1, [&] { inner_.adamw(param, grad, exp_avg, exp_avg_sq, params); });
  }

  void random(RandomOp op, const RandomParams& params, PhiloxState state,
              const Tensor& out) override {
    run(op_name(op), "random", {}, {&out}, -1, [&] { inner_.random(op, params, state, out); });
  }
  void multinomial(const Tensor& probs, int64_t num_samples, bool replacement, PhiloxState state,
                   const Tensor& out) override {
    run("multinomial", "random", {&probs}, {&out}, -1,
        [&] { inner_.multinomial(probs, num_samples, replacement, state, out); });
  }

 private:
  // Runs f as one recorded op: inputs then outputs (undefined tensors skipped) give the
  // shapes, dtype, device and, unless bytes >= 0 is given, the bytes moved.
  template <class F>
  void run(std::string_view name, std::string_view category,
           std::initializer_list<const Tensor*> inputs,
           std::initializer_list<const Tensor*> outputs, int64_t flops, F&& f, int64_t bytes = -1) {
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
    for (auto list : {inputs, outputs}) {
      for (const Tensor* t : list) {
        if (!t->defined()) continue;
        if (first) {
          record.dtype = t->dtype();
          first = false;
        }
        if (!t->device().is_cpu()) record.device = t->device();
        record.shapes.push_back(t->shape());
        moved += view_bytes(*t);
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

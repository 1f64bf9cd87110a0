// Backend: the compute interface every device implements, and the table that maps a device
// to its backend.
//
// Core declares each op once (argument checks, shape/dtype inference, output allocation; see
// core/ops/*.h) and then calls one method here on the backend of the inputs' device. Backends
// only compute: they may assume the checks have passed and that outputs are allocated with
// the documented shape and dtype. A backend that lacks an op inherits the default method,
// which throws mnemo::Error naming the op and the device.
//
// Conventions for every method unless it says otherwise:
//   - all tensors are on this backend's device;
//   - outputs are contiguous and freshly allocated (their contents are undefined on entry);
//   - inputs may be arbitrary strided views (transposed, narrowed, expanded with stride 0);
//   - "stats" tensors (softmax lse, norm rstd/mean) are f32 for bf16/f16 inputs, else the
//     input dtype (see stats_dtype).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "core/tensor.h"

namespace mnemo {

// ---- op families --------------------------------------------------------------------------

enum class UnaryOp : uint8_t {
  neg, exp, log, sqrt, rsqrt, abs, tanh, sigmoid, relu, gelu, gelu_tanh, silu, softplus, erf,
  sign, logical_not,
  affine,      // alpha * x + beta
  pow_scalar,  // x ^ alpha
  clamp,       // min(max(x, alpha), beta); use -inf / +inf for a missing bound
  count
};
struct UnaryParams {
  double alpha = 0;
  double beta = 0;
};

enum class BinaryOp : uint8_t {
  add, sub, mul, div, pow, maximum, minimum,
  eq, ne, lt, le, gt, ge,    // comparisons: bool output
  logical_and, logical_or,   // bool inputs and output
  count
};

enum class ReduceOp : uint8_t { sum, max, min, count };
enum class ArgReduceOp : uint8_t { argmax, argmin, count };

struct AdamWParams {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;
  int64_t step = 1;         // 1 for the first step (bias correction)
  double grad_scale = 1;    // multiplies the gradient first (clipping, accumulation)
};

enum class RandomOp : uint8_t {
  uniform,    // [alpha, beta)
  normal,     // mean alpha, standard deviation beta
  bernoulli,  // 1 with probability alpha, else 0
  randint,    // integers in [alpha, beta)
  count
};
struct RandomParams {
  double alpha = 0;
  double beta = 1;
};

// A position in a Philox-4x32-10 stream: the values of a random op depend only on (seed,
// offset, element index), as core/ops/random.h specifies, so every backend and every thread
// count produces the same numbers.
struct PhiloxState {
  uint64_t seed = 0;
  uint64_t offset = 0;
};

std::string_view op_name(UnaryOp op);
std::string_view op_name(BinaryOp op);
std::string_view op_name(ReduceOp op);
std::string_view op_name(ArgReduceOp op);
std::string_view op_name(RandomOp op);
bool is_comparison(BinaryOp op);  // eq .. ge
bool is_logical(BinaryOp op);     // logical_and, logical_or
DType stats_dtype(DType input);   // f32 for bf16/f16, else input

// ---- the interface ------------------------------------------------------------------------

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;
  virtual Allocator* allocator(Device device) = 0;
  virtual void synchronize(Device /*device*/) {}

  // -- memory --
  // dst = src, same shape; dtypes may differ (converted); dst may be a strided view. Across
  // devices, the non-CPU side's backend is called with one CPU and one device tensor.
  virtual void copy(const Tensor& src, const Tensor& dst);
  virtual void fill(const Tensor& dst, double value);  // dst may be a strided view
  virtual void arange(const Tensor& out, double start, double step);  // out (n,)

  // -- elementwise --
  // x, out: same shape. out dtype = x dtype (bool for logical_not).
  virtual void unary(UnaryOp op, const UnaryParams& params, const Tensor& x, const Tensor& out);
  // a, b: same dtype, broadcast views of out's shape. out dtype = a's (bool for comparisons
  // and logical ops). out may alias a (in-place ops).
  virtual void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out);
  // cond (bool), a, b (out's dtype): broadcast views of out's shape.
  virtual void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out);

  // -- reductions and scans --
  // out has x's shape with size 1 at each of dims (sorted, unique, non-empty); same dtype.
  virtual void reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims,
                      const Tensor& out);
  // out (i64) has x's shape with size 1 at dim; first index wins ties.
  virtual void arg_reduce(ArgReduceOp op, const Tensor& x, int64_t dim, const Tensor& out);
  // out[..., t, ...] = sum over s <= t (s >= t if reverse) of x[..., s, ...] along dim.
  virtual void cumsum(const Tensor& x, int64_t dim, bool reverse, const Tensor& out);
  // values, indices (i64): x's shape with k at dim, sorted (largest first if largest).
  virtual void topk(const Tensor& x, int64_t k, int64_t dim, bool largest, const Tensor& values,
                    const Tensor& indices);

  // -- linear algebra --
  // a (..., M, K), b (..., K, N): batch dims already broadcast (views) to out's batch dims.
  // out (..., M, N). Floating dtypes.
  virtual void matmul(const Tensor& a, const Tensor& b, const Tensor& out);
  // out (M, N) f64 += sum over segments s of a[:, s] @ b[s, :]: K is cut into segments of
  // `segment` (the last may be shorter); each segment's product is computed in the inputs'
  // dtype exactly as matmul computes a (M, seg) @ (seg, N) product, and the products are
  // added to out in f64, in order (split-invariant weight gradients, autograd/exact_grad.h).
  // a (M, K), b (K, N) of one floating dtype (strided views allowed); out contiguous f64.
  // The default composes matmul and add_ per segment; a backend may fuse it.
  virtual void matmul_segment_sum(const Tensor& a, const Tensor& b, int64_t segment,
                                  const Tensor& out);

  // -- indexing -- (index tensors are i64; backends check that indices are in range)
  // out = x with dim replaced by index.numel(): out[.., i, ..] = x[.., index[i], ..]. index (n,)
  virtual void index_select(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out);
  // out[.., index[i], ..] += src[.., i, ..] along dim; out is contiguous and updated in place.
  virtual void index_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src);
  // out[i][j][k] = x[index[i][j][k]][j][k] (for dim 0); out has index's shape.
  virtual void gather(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out);
  // out[index[i][j][k]][j][k] += src[i][j][k] (for dim 0); out contiguous, updated in place.
  virtual void scatter_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src);

  // -- fused neural-network ops (inputs contiguous unless stated) --
  // out = softmax(x) along dim, or log_softmax if log.
  virtual void softmax(const Tensor& x, int64_t dim, bool log, const Tensor& out);
  // y: the forward output. softmax:     dx = y * (dy - sum(dy * y))
  //                        log_softmax: dx = dy - exp(y) * sum(dy)
  virtual void softmax_backward(const Tensor& y, const Tensor& dy, int64_t dim, bool log,
                                const Tensor& dx);
  // logits (N, C), target (N,) i64. loss (N,) per row (0 where target == ignore_index),
  // lse (N,) stats = logsumexp of each row. With smoothing s: the target distribution is
  // (1 - s) one_hot(target) + s / C.
  virtual void cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                             double label_smoothing, const Tensor& loss, const Tensor& lse);
  // dloss (N,): gradient of each row's loss. dlogits (N, C).
  virtual void cross_entropy_backward(const Tensor& logits, const Tensor& target,
                                      const Tensor& lse, const Tensor& dloss,
                                      int64_t ignore_index, double label_smoothing,
                                      const Tensor& dlogits);
  // x (N, C), weight (C,) or undefined. y = x * rstd * weight, rstd (N,) = 1/sqrt(mean(x^2)+eps).
  virtual void rms_norm(const Tensor& x, const Tensor& weight, double eps, const Tensor& y,
                        const Tensor& rstd);
  // dx (N, C); dweight (C,) if weight is defined.
  virtual void rms_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& rstd,
                                 const Tensor& dy, const Tensor& dx, const Tensor& dweight);
  // x (N, C); weight, bias (C,) or undefined. mean, rstd (N,) stats.
  virtual void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                          const Tensor& y, const Tensor& mean, const Tensor& rstd);
  virtual void layer_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& mean,
                                   const Tensor& rstd, const Tensor& dy, const Tensor& dx,
                                   const Tensor& dweight, const Tensor& dbias);
  // Scaled dot-product attention.
  //   q (B, H, Tq, D); k (B, Hkv, Tk, D); v (B, Hkv, Tk, Dv); H % Hkv == 0 (grouped-query:
  //   query head h reads kv head h / (H / Hkv)).
  //   mask: undefined or an additive bias, a broadcast view of (B, H, Tq, Tk) (any strides).
  //   causal: query i sees key j iff j <= i + (Tk - Tq) (aligned bottom-right, so keys
  //   prepended as a cache or memory are fully visible).
  //   out (B, H, Tq, Dv); lse (B, H, Tq) stats: logsumexp of the scaled, masked scores
  //   (-inf for a row that sees no key; its output is 0).
  virtual void attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                         bool causal, double scale, const Tensor& out, const Tensor& lse);
  // dq, dk, dv: shapes of q, k, v.
  virtual void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                                  const Tensor& mask, bool causal, double scale,
                                  const Tensor& out, const Tensor& lse, const Tensor& dout,
                                  const Tensor& dq, const Tensor& dk, const Tensor& dv);
  // Linear scan along T: h_t = a_t * h_{t-1} + x_t, h_{-1} = h0 (zeros if undefined).
  //   a, x, h (B, T, C); h0 (B, C) or undefined.
  virtual void scan(const Tensor& a, const Tensor& x, const Tensor& h0, const Tensor& h);
  // g_t = dh_t + a_{t+1} g_{t+1};  dx_t = g_t;  da_t = g_t h_{t-1};  dh0 = a_0 g_0.
  //   dh0 is undefined when h0 is.
  virtual void scan_backward(const Tensor& a, const Tensor& h, const Tensor& h0, const Tensor& dh,
                             const Tensor& da, const Tensor& dx, const Tensor& dh0);

  // -- optimizer steps (core/ops/optim.h) --
  // One AdamW step in place (decoupled weight decay, bias-corrected moments):
  //   g = grad * grad_scale;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
  //   param -= lr * (m / (1-b1^step) / (sqrt(v / (1-b2^step)) + eps) + weight_decay * param).
  //   param, grad, exp_avg, exp_avg_sq: contiguous, same shape; param and grad share a dtype,
  //   the moments are f32 for bf16/f16 params, else the param dtype.
  virtual void adamw(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
                     const Tensor& exp_avg_sq, const AdamWParams& params);

  // -- random (core/ops/random.h) --
  virtual void random(RandomOp op, const RandomParams& params, PhiloxState state,
                      const Tensor& out);
  // probs (R, C) non-negative rows (need not sum to 1). out (R, n) i64.
  virtual void multinomial(const Tensor& probs, int64_t num_samples, bool replacement,
                           PhiloxState state, const Tensor& out);

 protected:
  // Throws "OP: not implemented on DEVICE (backend NAME)".
  [[noreturn]] void unsupported(std::string_view op, const Tensor& on) const;
};

// The backend of a device. CPU is always there; CUDA registers itself when built in.
Backend& backend_for(Device device);
void register_backend(DeviceType type, Backend* backend);
bool has_backend(DeviceType type);

// The device all inputs share (undefined tensors are skipped); throws naming op if they differ.
Device common_device(std::string_view op, std::initializer_list<const Tensor*> inputs);

}  // namespace mnemo

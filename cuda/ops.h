// The CUDA backend's compute functions, one per Backend method (core/backend.h states each
// one's contract: shapes, dtypes, what may be strided). CudaBackend (cuda/backend.cpp) makes
// the tensors' device current and calls these; each is defined in the file named above it.
// All tensors are on one GPU; work is queued on that GPU's stream (cuda/context.h).
//
// Internal to cuda/.
#pragma once

#include <cstdint>
#include <vector>

#include "core/backend.h"

namespace mnemo::cuda {

// ---- copy.cpp (memory: host <-> device, device <-> device) ----
void copy(const Tensor& src, const Tensor& dst);

// ---- elementwise.cu ----
// dst = src converted to dst's dtype; both on the same GPU, any strides (src may broadcast).
void copy_on_device(const Tensor& src, const Tensor& dst);
void fill(const Tensor& dst, double value);
void arange(const Tensor& out, double start, double step);
void unary(UnaryOp op, const UnaryParams& params, const Tensor& x, const Tensor& out);
void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out);
void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out);

// ---- random.cu ----
void random(RandomOp op, const RandomParams& params, PhiloxState state, const Tensor& out);
void multinomial(const Tensor& probs, int64_t num_samples, bool replacement, PhiloxState state,
                 const Tensor& out);

// ---- reduce.cu ----
void reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims, const Tensor& out);
void arg_reduce(ArgReduceOp op, const Tensor& x, int64_t dim, const Tensor& out);
void cumsum(const Tensor& x, int64_t dim, bool reverse, const Tensor& out);
void topk(const Tensor& x, int64_t k, int64_t dim, bool largest, const Tensor& values,
          const Tensor& indices);

// ---- index.cu ----
void index_select(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out);
void index_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src);
void gather(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out);
void scatter_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src);

// ---- matmul.cpp (cuBLASLt) ----
void matmul(const Tensor& a, const Tensor& b, const Tensor& out);

// ---- softmax.cu ----
void softmax(const Tensor& x, int64_t dim, bool log, const Tensor& out);
void softmax_backward(const Tensor& y, const Tensor& dy, int64_t dim, bool log, const Tensor& dx);
void cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                   double label_smoothing, const Tensor& loss, const Tensor& lse);
void cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse,
                            const Tensor& dloss, int64_t ignore_index, double label_smoothing,
                            const Tensor& dlogits);

// ---- norm.cu ----
void rms_norm(const Tensor& x, const Tensor& weight, double eps, const Tensor& y,
              const Tensor& rstd);
void rms_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& rstd,
                       const Tensor& dy, const Tensor& dx, const Tensor& dweight);
void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                const Tensor& y, const Tensor& mean, const Tensor& rstd);
void layer_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& mean,
                         const Tensor& rstd, const Tensor& dy, const Tensor& dx,
                         const Tensor& dweight, const Tensor& dbias);

// ---- attention.cu ----
void attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, bool causal,
               double scale, const Tensor& out, const Tensor& lse);
void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                        bool causal, double scale, const Tensor& out, const Tensor& lse,
                        const Tensor& dout, const Tensor& dq, const Tensor& dk, const Tensor& dv);

// ---- scan.cu ----
void scan(const Tensor& a, const Tensor& x, const Tensor& h0, const Tensor& h);
void scan_backward(const Tensor& a, const Tensor& h, const Tensor& h0, const Tensor& dh,
                   const Tensor& da, const Tensor& dx, const Tensor& dh0);

// ---- optim.cu ----
void adamw(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
           const Tensor& exp_avg_sq, const AdamWParams& params);

}  // namespace mnemo::cuda

// Fused neural-network ops without autograd, each with its explicit backward so a backend
// can replace both with kernels (autograd/ wires them together).
#pragma once

#include "core/tensor.h"

namespace mnemo {

struct AttentionOptions {
  bool causal = false;  // query i sees key j iff j <= i + (Tk - Tq)
  double scale = 0;     // 0 means 1 / sqrt(D)
  Tensor mask = {};     // optional additive bias broadcastable to (B, H, Tq, Tk)
};

}  // namespace mnemo

namespace mnemo::core {

Tensor softmax(const Tensor& x, int64_t dim = -1);
Tensor log_softmax(const Tensor& x, int64_t dim = -1);
// y: the forward output, dy: its gradient.
Tensor softmax_backward(const Tensor& y, const Tensor& dy, int64_t dim);
Tensor log_softmax_backward(const Tensor& y, const Tensor& dy, int64_t dim);

struct CrossEntropyOutput {
  Tensor loss;  // (N,) per-row losses; 0 where target == ignore_index
  Tensor lse;   // (N,) logsumexp of each row (stats dtype), saved for backward
};
// logits (N, C), target (N,) integer class ids.
CrossEntropyOutput cross_entropy(const Tensor& logits, const Tensor& target,
                                 int64_t ignore_index = -100, double label_smoothing = 0);
Tensor cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse,
                              const Tensor& dloss, int64_t ignore_index = -100,
                              double label_smoothing = 0);

struct NormOutput {
  Tensor y;
  Tensor mean;  // (rows,) layer_norm only
  Tensor rstd;  // (rows,) 1 / sqrt(variance + eps) (or of mean square, for rms_norm)
};
struct NormGrads {
  Tensor dx;
  Tensor dweight;  // undefined if weight is
  Tensor dbias;    // undefined if bias is (layer_norm only)
};
// Normalise over the last dim. x (..., C); weight, bias (C,) or undefined.
NormOutput rms_norm(const Tensor& x, const Tensor& weight, double eps);
NormGrads rms_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& rstd,
                            const Tensor& dy);
NormOutput layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps);
NormGrads layer_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& mean,
                              const Tensor& rstd, const Tensor& dy, bool has_bias);

// AttentionOptions lives in namespace mnemo (above), so that argument-dependent lookup
// of an unqualified attention(q, k, v, options) finds only the differentiable mnemo::attention.
using AttentionOptions = mnemo::AttentionOptions;
struct AttentionOutput {
  Tensor out;  // (B, H, Tq, Dv)
  Tensor lse;  // (B, H, Tq) stats, saved for backward
};
struct AttentionGrads {
  Tensor dq, dk, dv;
};
// q (B, H, Tq, D), k (B, Hkv, Tk, D), v (B, Hkv, Tk, Dv), H % Hkv == 0.
AttentionOutput attention(const Tensor& q, const Tensor& k, const Tensor& v,
                          const AttentionOptions& options = {});
AttentionGrads attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                                  const AttentionOptions& options, const Tensor& out,
                                  const Tensor& lse, const Tensor& dout);

struct ScanGrads {
  Tensor da, dx, dh0;  // dh0 undefined if h0 is
};
// h_t = a_t * h_{t-1} + x_t along dim, h_{-1} = h0 (zeros if undefined). a and x broadcast
// together; h0 has their shape without dim.
Tensor scan(const Tensor& a, const Tensor& x, int64_t dim, const Tensor& h0 = {});
ScanGrads scan_backward(const Tensor& a, const Tensor& h, int64_t dim, const Tensor& h0,
                        const Tensor& dh);

}  // namespace mnemo::core

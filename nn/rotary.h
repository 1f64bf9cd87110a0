// Rotary position embedding (RoPE), exactly as HF transformers' Llama (rotate-half form).
//
// For head dim D (even) and base theta:
//   inv_freq[i] = 1 / theta^(2i / D)                      i = 0 .. D/2 - 1
//   freqs[p, i] = p * inv_freq[i]                          position p
//   emb[p]      = concat(freqs[p], freqs[p])               (D,) — the halves repeat
//   cos[p], sin[p] = cos(emb[p]), sin(emb[p])
//   rope(x)     = x * cos + rotate_half(x) * sin,   rotate_half(x) = concat(-x[D/2:], x[:D/2])
// so element i < D/2 pairs with element i + D/2 (not with its neighbour, as in the original
// paper's interleaved form): that is the layout HF checkpoints are trained in.
//
// The tables are computed once (in f64, stored in the parameter dtype) for positions
// 0 .. max_positions-1 as non-persistent buffers, so they stay out of state_dict and
// forward only slices (or gathers) rows.
//
// Computing it in three passes. With P the swap of the two halves of the last dim and the
// signed table t = [sin, -sin] (first half +sin, second half -sin, from the repeating halves):
//   rotate_half(x) * sin = P(x * t)    so   rope(x) = x * cos + P(x * t)
//   r = x * cos,  a = x * t,  r[:D/2] += a[D/2:],  r[D/2:] += a[:D/2]
// (two multiplies and two in-place half adds: no concat, no negation pass). rope is linear in
// x and its adjoint is the same map with t negated (P t = -t), so backward is
//   dx = dy * cos + P(dy * -t)  = rope with the table -t,
// one recorded node ("rope") whose rule calls itself (it differentiates again).
#pragma once

#include "nn/module.h"

namespace mnemo::nn {

struct RopeTables {
  Tensor cos;         // (T, D) shared by the batch, or (B, 1, T, D) for per-sequence positions
  Tensor sin;         // same shape as cos
  Tensor sin_signed;  // [sin, -sin] halves (see above); undefined: derived from sin
};

class RotaryEmbedding : public Module {
 public:
  RotaryEmbedding(int64_t head_dim, int64_t max_positions, double theta = 10000);

  // The cos/sin rows for T positions. position_ids undefined: offset .. offset+T-1 -> (T, D);
  // position_ids (T,) -> (T, D); position_ids (B, T) -> (B, 1, T, D). Integer ids in
  // [0, max_positions).
  RopeTables tables(const Tensor& position_ids, int64_t offset, int64_t T) const;

  int64_t head_dim, max_positions;
  double theta;
  Tensor cos_cached;  // (max_positions, D)
  Tensor sin_cached;  // (max_positions, D)
};

// rotate_half(x) = concat(-x[..., D/2:], x[..., :D/2])
Tensor rotate_half(const Tensor& x);
// x (B, H, T, D) with rope.cos/sin (T, D) or (B, 1, T, D) -> (B, H, T, D), contiguous
Tensor apply_rotary(const Tensor& x, const RopeTables& rope);
// The same for x in the (B, T, H, D) layout (the rows of a projection viewed as heads, any
// strides) -> (B, T, H, D), contiguous: permuting the result to (B, H, T, D) afterwards
// costs nothing, and the gradient comes back in the projection's own row layout.
Tensor apply_rotary_bthd(const Tensor& x, const RopeTables& rope);
// The recorded op under both: x * cos + P(x * sin_signed), with cos and sin_signed
// broadcastable to x and constant (no gradient flows into the tables).
Tensor rope(const Tensor& x, const Tensor& cos, const Tensor& sin_signed);

}  // namespace mnemo::nn

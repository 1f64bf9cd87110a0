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
#pragma once

#include "nn/module.h"

namespace mnemo::nn {

struct RopeTables {
  Tensor cos;  // (T, D) shared by the batch, or (B, 1, T, D) for per-sequence positions
  Tensor sin;  // same shape as cos
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
// x (B, H, T, D) with rope.cos/sin (T, D) or (B, 1, T, D) -> (B, H, T, D)
Tensor apply_rotary(const Tensor& x, const RopeTables& rope);

}  // namespace mnemo::nn

// Rotary position embedding (rotary.h).
#include "nn/rotary.h"

#include <cmath>
#include <vector>

#include "autograd/ops.h"
#include "core/error.h"

namespace mnemo::nn {

RotaryEmbedding::RotaryEmbedding(int64_t D, int64_t max_pos, double theta_)
    : head_dim(D), max_positions(max_pos), theta(theta_) {
  MNEMO_CHECK(D > 0 && D % 2 == 0, "RotaryEmbedding: head_dim must be even and positive, got {}",
              D);
  MNEMO_CHECK(max_pos > 0, "RotaryEmbedding: max_positions must be positive, got {}", max_pos);
  MNEMO_CHECK(theta > 0, "RotaryEmbedding: theta must be positive, got {}", theta);
  std::vector<double> cos_values(size_t(max_pos * D)), sin_values(size_t(max_pos * D));
  for (int64_t p = 0; p < max_pos; ++p) {
    for (int64_t i = 0; i < D / 2; ++i) {
      const double inv_freq = 1.0 / std::pow(theta, double(2 * i) / double(D));
      const double angle = double(p) * inv_freq;
      for (int64_t half : {int64_t(0), D / 2}) {  // emb = concat(freqs, freqs)
        cos_values[size_t(p * D + half + i)] = std::cos(angle);
        sin_values[size_t(p * D + half + i)] = std::sin(angle);
      }
    }
  }
  cos_cached = register_buffer("cos_cached", from_vector(cos_values, {max_pos, D}), false);
  sin_cached = register_buffer("sin_cached", from_vector(sin_values, {max_pos, D}), false);
}

RopeTables RotaryEmbedding::tables(const Tensor& position_ids, int64_t offset, int64_t T) const {
  if (!position_ids.defined()) {
    MNEMO_CHECK(offset >= 0 && offset + T <= max_positions,
                "RotaryEmbedding: positions {}..{} exceed max_position_embeddings = {}", offset,
                offset + T - 1, max_positions);
    return {narrow(cos_cached, 0, offset, T), narrow(sin_cached, 0, offset, T)};
  }
  MNEMO_CHECK(is_integral(position_ids.dtype()) &&
                  (position_ids.dim() == 1 || position_ids.dim() == 2) &&
                  position_ids.size(-1) == T,
              "RotaryEmbedding: position_ids must be integer (T,) or (B, T) with T = {}, got {} {}",
              T, position_ids.dtype(), shape_str(position_ids.shape()));
  const Tensor flat = reshape(position_ids, {-1});
  Tensor cos = index_select(cos_cached, 0, flat);  // (B*T, D) or (T, D)
  Tensor sin = index_select(sin_cached, 0, flat);
  if (position_ids.dim() == 2) {
    const int64_t B = position_ids.size(0);
    cos = view(cos, {B, 1, T, head_dim});
    sin = view(sin, {B, 1, T, head_dim});
  }
  return {cos, sin};
}

Tensor rotate_half(const Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return concat({-narrow(x, -1, half, half), narrow(x, -1, 0, half)}, -1);
}

Tensor apply_rotary(const Tensor& x, const RopeTables& rope) {
  MNEMO_CHECK(x.dim() == 4 && x.size(-1) == rope.cos.size(-1),
              "apply_rotary: x must be (B, H, T, D) with D = {}, got {}", rope.cos.size(-1),
              shape_str(x.shape()));
  return x * rope.cos + rotate_half(x) * rope.sin;
}

}  // namespace mnemo::nn

// Rotary position embedding (rotary.h).
#include "nn/rotary.h"

#include <cmath>
#include <vector>

#include "autograd/node.h"
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

namespace {

// [sin, -sin]: the second half of the last dim negated. sin (..., D) -> (..., D)
Tensor signed_sin(const Tensor& sin) {
  const int64_t half = sin.size(-1) / 2;
  return core::concat({core::narrow(sin, -1, 0, half), core::neg(core::narrow(sin, -1, half, half))},
                      -1);
}

}  // namespace

RopeTables RotaryEmbedding::tables(const Tensor& position_ids, int64_t offset, int64_t T) const {
  if (!position_ids.defined()) {
    MNEMO_CHECK(offset >= 0 && offset + T <= max_positions,
                "RotaryEmbedding: positions {}..{} exceed max_position_embeddings = {}", offset,
                offset + T - 1, max_positions);
    const Tensor sin = narrow(sin_cached, 0, offset, T);
    return {narrow(cos_cached, 0, offset, T), sin, signed_sin(sin)};
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
  return {cos, sin, signed_sin(sin)};
}

Tensor rotate_half(const Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return concat({-narrow(x, -1, half, half), narrow(x, -1, 0, half)}, -1);
}

// x (..., D), cos and t broadcastable to x  ->  x * cos + P(x * t), P = swap the halves.
// Off the tape (core ops only); three passes over x.
Tensor rope_values(const Tensor& x, const Tensor& cos, const Tensor& t) {
  const int64_t half = x.size(-1) / 2;
  const Tensor r = core::mul(x, cos);  // fresh and contiguous: the halves are added in place
  const Tensor a = core::mul(x, t);
  add_(core::narrow(r, -1, 0, half), core::narrow(a, -1, half, half));
  add_(core::narrow(r, -1, half, half), core::narrow(a, -1, 0, half));
  return r;
}

// y = x * cos + P(x * t)  =>  dx = dy * cos + P(dy * -t)   (the adjoint of P(x * t) is
// t * P(dy) = -P(dy * t), since P t = -t)
Tensor rope(const Tensor& x, const Tensor& cos, const Tensor& sin_signed) {
  MNEMO_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) % 2 == 0 && cos.defined() &&
                  sin_signed.defined() && cos.size(-1) == x.size(-1) &&
                  sin_signed.shape() == cos.shape(),
              "rope: x (..., D) with D even and cos/sin_signed (..., D) of one shape, got x {}, "
              "cos {}, sin_signed {}",
              x.defined() ? shape_str(x.shape()) : std::string("undefined"),
              cos.defined() ? shape_str(cos.shape()) : std::string("undefined"),
              sin_signed.defined() ? shape_str(sin_signed.shape()) : std::string("undefined"));
  Tensor out = rope_values(x, cos, sin_signed);
  MNEMO_CHECK(out.shape() == x.shape(), "rope: tables {} do not broadcast to x {}",
              shape_str(cos.shape()), shape_str(x.shape()));
  if (autograd::should_record({&x})) {
    autograd::record("rope", out, {x},
                     [cos = detach(cos), neg_t = core::neg(sin_signed)](
                         const Tensor& dy, const autograd::Needs&) -> TensorList {
                       return {rope(dy, cos, neg_t)};
                     });
  }
  return out;
}

namespace {

const Tensor& sin_signed_of(const RopeTables& tables, Tensor& scratch) {
  if (tables.sin_signed.defined()) return tables.sin_signed;
  scratch = signed_sin(tables.sin);
  return scratch;
}

}  // namespace

Tensor apply_rotary(const Tensor& x, const RopeTables& tables) {
  MNEMO_CHECK(x.dim() == 4 && x.size(-1) == tables.cos.size(-1),
              "apply_rotary: x must be (B, H, T, D) with D = {}, got {}", tables.cos.size(-1),
              shape_str(x.shape()));
  Tensor scratch;
  return rope(x, tables.cos, sin_signed_of(tables, scratch));
}

Tensor apply_rotary_bthd(const Tensor& x, const RopeTables& tables) {
  MNEMO_CHECK(x.dim() == 4 && x.size(-1) == tables.cos.size(-1),
              "apply_rotary_bthd: x must be (B, T, H, D) with D = {}, got {}",
              tables.cos.size(-1), shape_str(x.shape()));
  Tensor scratch;
  const Tensor& t = sin_signed_of(tables, scratch);
  // (T, D) -> (T, H, D);  (B, 1, T, D) -> (B, T, H, D): the tables repeated over heads (a
  // small copy), so that the elementwise passes run along whole H*D rows, not D-long pieces.
  const int64_t H = x.size(2);
  auto to_bthd = [H](const Tensor& table) {
    Shape shape = table.shape();
    if (table.dim() == 4) {
      shape = {shape[0], shape[2], H, shape[3]};
      return core::contiguous(core::expand(core::permute(table, {0, 2, 1, 3}), shape));
    }
    return core::contiguous(core::expand(core::unsqueeze(table, 1), {shape[0], H, shape[1]}));
  };
  return rope(x, to_bthd(tables.cos), to_bthd(t));
}

}  // namespace mnemo::nn

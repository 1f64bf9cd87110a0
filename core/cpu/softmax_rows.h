// Row helpers shared by the CPU softmax (core/cpu/softmax.cpp) and cross-entropy
// (core/cpu/cross_entropy.cpp) kernels: Eigen maps over a row, the exp that flushes
// denormals to 0, and the f32 copies that bf16/f16 tensors are computed on (the CPU backend
// is their reference, not their fast path).
//
// Include after `#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"` (see softmax.cpp).
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string_view>

#include "core/cpu/cpu_backend.h"

namespace mnemo::cpu {

template <typename C>
using Vec = Eigen::Array<C, Eigen::Dynamic, 1>;
template <typename C>
using VecMap = Eigen::Map<Vec<C>>;
template <typename C>
using ConstVecMap = Eigen::Map<const Vec<C>>;
constexpr int64_t kExpCost = 4;  // parallel cost of one exp, in elementwise units

// p[i] = p[i] * scale[i], with results smaller in magnitude than the smallest normal number
// set to 0, so that exp(-inf) (a masked entry) comes out exactly 0: Eigen's vectorised exp
// clamps its argument and returns a tiny denormal instead. scale_stride 0 uses scale[0] for
// every element. A plain loop the compiler vectorises (multiply, compare, blend).
template <typename C>
void scale_and_flush(C* p, int64_t n, const C* scale, int64_t scale_stride) {
  const C lowest = std::numeric_limits<C>::min();
  for (int64_t i = 0; i < n; ++i) {
    const C v = p[i] * scale[i * scale_stride];
    p[i] = std::abs(v) < lowest ? C(0) : v;
  }
}

// ---- 16-bit inputs: computed on f32 copies -------------------------------------------------

// x itself for f32/f64, else a contiguous f32 copy.
inline Tensor compute_copy(const Tensor& x) {
  if (!x.defined() || (x.dtype() != DType::bf16 && x.dtype() != DType::f16)) return x;
  Tensor copy = Tensor::empty(x.shape(), DType::f32, x.device());
  backend().copy(x, copy);
  return copy;
}

// An output to compute into: out itself for f32/f64, else an f32 scratch copied back by
// finish_output.
inline Tensor compute_output(const Tensor& out) {
  if (out.dtype() != DType::bf16 && out.dtype() != DType::f16) return out;
  return Tensor::empty(out.shape(), DType::f32, out.device());
}
inline void finish_output(const Tensor& computed, const Tensor& out) {
  if (!computed.is_same(out)) backend().copy(computed, out);
}

// Calls fn(TypeTag<C>) with C the type the kernels compute in for dtype (f32 for 16-bit).
template <typename Fn>
void visit_compute(DType dtype, std::string_view op, Fn&& fn) {
  if (dtype == DType::f64) return fn(TypeTag<double>{});
  visit_floating(dtype, op, [&](auto) { fn(TypeTag<float>{}); });
}

}  // namespace mnemo::cpu

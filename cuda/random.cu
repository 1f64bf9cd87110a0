// random on the CUDA backend: uniform, normal, bernoulli and randint into a contiguous output,
// the same numbers as the CPU backend for the same PhiloxState (core/ops/random.h specifies
// the stream; core/random_stream.h has the block function). multinomial is in
// random_multinomial.cu.
//
// Thread mapping: one thread per Philox block, in a grid-stride loop over the blocks. A block
// serves kPerBlock consecutive elements of the row-major output: 4 for ops that use one word
// per element (u24, w32), 2 for ops that use two (u53, w64). Block b writes elements
// [b * kPerBlock, (b + 1) * kPerBlock) that are < n. Per op:
//   uniform   f64: u53 of words 2k, 2k+1; others: u24 of word k.  x = fma(u, hi - lo, lo),
//             rounded to T, then min(x, largest T below hi) (computed on the host, as the CPU).
//   normal    f32/bf16/f16: elements 4b+2j, 4b+2j+1 are the Box-Muller pair of words 2j, 2j+1;
//             f64: block b gives elements 2b (z0) and 2b+1 (z1) from u53(w0,w1), u53(w2,w3).
//   bernoulli word < llround(p * 2^32).
//   randint   n = hi - lo <= 2^16: lo + (w32 * n) >> 32; else lo + high 64 bits of w64 * n.
// uniform, bernoulli and randint are bit-exact with the CPU (exact integer work and a single
// correctly rounded fma); normal uses CUDA's logf/sqrtf/sinf/cosf (a few ulp from libm).
//
// Measured: not measured. These kernels have run on an H100 (the CUDA tests check their
// results against the CPU backend, not their speed).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>

#include "core/error.h"
#include "core/random_stream.h"
#include "cuda/kernel_common.cuh"
#include "cuda/ops.h"

namespace mnemo::cuda {

namespace {

using philox::u24;
using philox::u53;
using philox::w64;

// Runs f(words, first, count) for every Philox block b of an n-element output: first =
// b * per_block, count = min(per_block, n - first).
template <typename F>
__global__ void random_blocks_kernel(int64_t n, int per_block, PhiloxState state, F f) {
  const int64_t blocks = (n + per_block - 1) / per_block;
  for (int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; b < blocks;
       b += int64_t(gridDim.x) * blockDim.x) {
    const philox::Words words = philox::block(uint64_t(b), state);
    const int64_t first = b * per_block;
    const int count = int(n - first < per_block ? n - first : per_block);
    f(words, first, count);
  }
}

template <typename F>
void launch_blocks(const Tensor& out, int per_block, PhiloxState state, F f) {
  const int64_t n = out.numel();
  const int64_t blocks = (n + per_block - 1) / per_block;
  random_blocks_kernel<<<grid_for(blocks, out.device().index), kThreads, 0, stream(out.device())>>>(
      n, per_block, state, f);
  MNEMO_CUDA_CHECK_LAUNCH("random_blocks_kernel");
}

// ---- the largest value of T strictly below hi, on the host (core/random_stream.h) ----

template <typename T>
struct HostTypeOf {
  using type = T;
};
template <>
struct HostTypeOf<__nv_bfloat16> {
  using type = mnemo::bf16;
};
template <>
struct HostTypeOf<__half> {
  using type = mnemo::f16;
};

template <typename T>
Compute<T> largest_below(double hi) {
  return philox::largest_below<typename HostTypeOf<T>::type>(hi);
}

template <typename T>
void draw_uniform(const RandomParams& p, PhiloxState state, const Tensor& out) {
  using C = Compute<T>;
  const C lo = C(p.alpha), scale = C(p.beta - p.alpha), top = largest_below<T>(p.beta);
  T* o = data<T>(out);
  if constexpr (std::is_same_v<T, double>) {
    launch_blocks(out, 2, state, [=] __device__(const philox::Words& w, int64_t first, int count) {
      for (int k = 0; k < count; ++k) {
        const double x = fma(u53(w.w[2 * k], w.w[2 * k + 1]), scale, lo);
        o[first + k] = top < x ? top : x;
      }
    });
  } else {
    launch_blocks(out, 4, state, [=] __device__(const philox::Words& w, int64_t first, int count) {
      for (int k = 0; k < count; ++k) {
        const float x = convert<float>(convert<T>(fmaf(u24(w.w[k]), scale, lo)));
        o[first + k] = convert<T>(top < x ? top : x);
      }
    });
  }
}

template <typename T>
void draw_normal(const RandomParams& p, PhiloxState state, const Tensor& out) {
  using C = Compute<T>;
  const C mean = C(p.alpha), stddev = C(p.beta);
  T* o = data<T>(out);
  if constexpr (std::is_same_v<T, double>) {
    const double two_pi = 2 * std::numbers::pi;
    launch_blocks(out, 2, state, [=] __device__(const philox::Words& w, int64_t first, int count) {
      const double ua = u53(w.w[0], w.w[1]), ub = u53(w.w[2], w.w[3]);
      const double r = sqrt(-2.0 * log(1.0 - ua)), theta = two_pi * ub;
      o[first] = fma(r * cos(theta), stddev, mean);
      if (count > 1) o[first + 1] = fma(r * sin(theta), stddev, mean);
    });
  } else {
    const float two_pi = float(2 * std::numbers::pi);
    launch_blocks(out, 4, state, [=] __device__(const philox::Words& w, int64_t first, int count) {
      for (int e = 0; e < count; e += 2) {  // the pair (e, e + 1) from words e, e + 1
        const float ua = u24(w.w[e]), ub = u24(w.w[e + 1]);
        const float r = sqrtf(-2.0f * logf(1.0f - ua)), theta = two_pi * ub;
        o[first + e] = convert<T>(fmaf(r * cosf(theta), stddev, mean));
        if (e + 1 < count) o[first + e + 1] = convert<T>(fmaf(r * sinf(theta), stddev, mean));
      }
    });
  }
}

template <typename T>
void draw_bernoulli(const RandomParams& p, PhiloxState state, const Tensor& out) {
  const uint64_t threshold = uint64_t(std::llround(std::ldexp(p.alpha, 32)));
  const T one = convert<T>(1.0), zero = convert<T>(0.0);
  T* o = data<T>(out);
  launch_blocks(out, 4, state, [=] __device__(const philox::Words& w, int64_t first, int count) {
    for (int k = 0; k < count; ++k) o[first + k] = uint64_t(w.w[k]) < threshold ? one : zero;
  });
}

template <typename T>
void draw_randint(const RandomParams& p, PhiloxState state, const Tensor& out) {
  const int64_t lo = int64_t(p.alpha);
  const uint64_t range = uint64_t(int64_t(p.beta) - lo);
  T* o = data<T>(out);
  if (range <= (uint64_t(1) << 16)) {
    launch_blocks(out, 4, state, [=] __device__(const philox::Words& w, int64_t first, int count) {
      for (int k = 0; k < count; ++k) {
        o[first + k] = convert<T>(lo + int64_t((uint64_t(w.w[k]) * range) >> 32));
      }
    });
  } else {
    launch_blocks(out, 2, state, [=] __device__(const philox::Words& w, int64_t first, int count) {
      for (int k = 0; k < count; ++k) {
        const uint64_t high = __umul64hi(w64(w.w[2 * k], w.w[2 * k + 1]), range);
        o[first + k] = convert<T>(lo + int64_t(high));
      }
    });
  }
}

}  // namespace

void random(RandomOp op, const RandomParams& params, PhiloxState state, const Tensor& out) {
  MNEMO_ASSERT(out.is_contiguous(), "{}: expected a contiguous output", op_name(op));
  if (out.numel() == 0) return;
  static_assert(size_t(RandomOp::count) == 4, "a new distribution needs a case here");
  switch (op) {
    case RandomOp::uniform:
      return cuda::visit_floating(out.dtype(), "random", [&](auto tag) {
        draw_uniform<typename decltype(tag)::type>(params, state, out);
      });
    case RandomOp::normal:
      return cuda::visit_floating(out.dtype(), "random", [&](auto tag) {
        draw_normal<typename decltype(tag)::type>(params, state, out);
      });
    case RandomOp::bernoulli:
      return cuda::visit_dtype(out.dtype(), "random", [&](auto tag) {
        draw_bernoulli<typename decltype(tag)::type>(params, state, out);
      });
    case RandomOp::randint:
      return cuda::visit_dtype(out.dtype(), "random", [&](auto tag) {
        draw_randint<typename decltype(tag)::type>(params, state, out);
      });
    case RandomOp::count: break;
  }
  fail_internal("random: invalid op {}", int(op));
}

}  // namespace mnemo::cuda

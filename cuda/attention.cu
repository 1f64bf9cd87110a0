// Scaled dot-product attention on the GPU, forward and backward: the entry points, the one
// function that picks the kernel, and the reference kernels (the first rung of the ladder).
//
// ---- Which kernel runs: choose_kernel (below), the only place that decides ----
// Three kernels compute attention, from plain to fast:
//   reference   the warp-per-row kernels of this file: every dtype, head dim, mask, layout;
//   flash_wmma  FlashAttention-2 tiles on wmma tensor cores (cuda/flash_attention_*.cu);
//   flash_mma   FlashAttention-2 with register-resident mma.sync fragments
//               (cuda/flash_mma_*.cu); not yet run on a GPU, so only on request.
// The rule, in order, with the KernelChoice of cuda/runtime.h (MNEMO_CUDA_KERNELS):
//   1. KernelChoice::reference                                            -> reference;
//   2. the flash kernels do not apply (flash_attention_applies: f32/bf16/f16, D == Dv in
//      {32, 64, 128}, contiguous 16-byte-aligned tensors, no mask or a key-padding mask,
//      shared memory within the device's limit)                          -> reference;
//   3. KernelChoice::fast_mma and flash_mma_applies (bf16/f16, shared memory fits)
//                                                                         -> flash_mma;
//   4. otherwise                                                          -> flash_wmma.
// Forward and backward apply the rule separately (with dout for the backward).
//
// Shapes (core/backend_ops.def): q (B, H, Tq, D), k (B, Hkv, Tk, D), v (B, Hkv, Tk, Dv); query head
// h reads kv head h / (H / Hkv). mask: undefined or a (B, H, Tq, Tk) view in q's dtype with any
// strides (stride 0 on broadcast dims). Causal: query i sees key j iff j <= i + (Tk - Tq), so
// query i sees keys [0, visible(i)). out (B, H, Tq, Dv); lse (B, H, Tq) in f32 (f64 for f64).
// Every tensor is read through its strides. D, Dv <= 256.
//
//   S[i, j] = (scale q_i) . k_j + mask[i, j],  P = softmax_j(S),  out_i = sum_j P[i, j] v_j
//
// All kernels map one warp to one row of work and split the head dims across its 32 lanes
// (lane l holds dims l, l + 32, ..., l + 224 in registers). A dot product over D is each
// lane's partial sum folded by a butterfly (__shfl_xor_sync 16, 8, 4, 2, 1), after which every
// lane holds the same bits. Math is in f32 (f64 for f64); bf16/f16 are converted on load and
// rounded once on store. Each output element is written by exactly one warp, in a fixed loop
// order: no atomics, results bitwise repeatable. Four warps per block; blocks grid-stride.
//
// attention_forward_kernel: one warp per query row (b, h, i). Online softmax over keys
// j < visible(i) in order: running max m, running sum l = sum exp(S - m) and accumulator
// acc = sum exp(S - m) v_j, both rescaled by exp(m_old - m_new) when the max grows. Then
// out = acc / l and lse = m + log(l). A row that sees no key, or only keys at -inf, has
// m = -inf and gets out = 0, lse = -inf.
//
// Backward recomputes P = exp(S - lse) from the forward's lse (P = 0 on a row with lse = -inf):
//   dP = dO V^T,  delta_i = sum_e dO[i, e] O[i, e] (= sum_j P[i, j] dP[i, j]),
//   dS = scale * P * (dP - delta),   dQ = dS K,   dK = dS^T Q,   dV = P^T dO.
// attention_dq_kernel: one warp per query row: computes delta_i (saved for the next kernel),
//   then walks the row's visible keys accumulating dq_i = sum_j dS[i, j] k_j.
// attention_dkv_kernel: one warp per key row (b, hk, j): walks every query head h of kv head
//   hk's group and every query row i that sees key j (i >= j - (Tk - Tq) when causal), in
//   that order, accumulating dk_j = sum dS[i, j] q_i and dv_j = sum P[i, j] dO_i. Grouped
//   heads therefore add into dk, dv inside one warp, never across threads.
//
// FLOPs: forward 2 B H Tq Tk (D + Dv), backward 2x the forward's for dq plus 2x for dk/dv
// (S and dP are computed twice); about halved when causal with Tq = Tk. Bytes: each warp
// streams its kv head's keys and values (forward, dq) or its group's queries and output
// gradients (dk/dv) from L2: these kernels are latency bound.
// Measured: not measured. They have run on an H100 (the CUDA tests check their results
// against the CPU backend, not their speed).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "core/error.h"
#include "cuda/flash_attention.cuh"
#include "cuda/flash_mma.cuh"
#include "cuda/kernel_common.cuh"
#include "cuda/ops.h"
#include "cuda/runtime.h"

namespace mnemo::cuda {

namespace {

constexpr int kLanes = 32;
constexpr int kWarpsPerBlock = 4;
constexpr int kMaxPerLane = 8;  // head dims up to kLanes * kMaxPerLane = 256
constexpr int64_t kMaxHeadDim = int64_t(kLanes) * kMaxPerLane;

// A 4-d tensor read (or written) through its strides, in elements.
template <typename T>
struct View4 {
  T* data = nullptr;
  int64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  __device__ T* row(int64_t b, int64_t h, int64_t i) const {
    return data + b * s0 + h * s1 + i * s2;
  }
};

// A 3-d tensor (lse, delta) read through its strides.
template <typename T>
struct View3 {
  T* data = nullptr;
  int64_t s0 = 0, s1 = 0, s2 = 0;
  __device__ T& at(int64_t b, int64_t h, int64_t i) const { return data[b * s0 + h * s1 + i * s2]; }
};

template <typename T>
View4<T> view4(const Tensor& t) {
  if (!t.defined()) return {};
  return {static_cast<T*>(t.data_ptr()), t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
}

template <typename T>
View3<T> view3(const Tensor& t) {
  return {static_cast<T*>(t.data_ptr()), t.stride(0), t.stride(1), t.stride(2)};
}

struct Geometry {
  int64_t B, H, Hkv, Tq, Tk, D, Dv;
  int64_t group;  // H / Hkv query heads per kv head
  bool causal;

  // Query i sees keys [0, visible(i)).
  __device__ int64_t visible(int64_t i) const {
    if (!causal) return Tk;
    return std::clamp<int64_t>(i + 1 + Tk - Tq, 0, Tk);
  }
  // The first query row that sees key j (every later row sees it too).
  __device__ int64_t first_query(int64_t j) const {
    return causal ? std::max<int64_t>(0, j - (Tk - Tq)) : 0;
  }
};

// The sum of x over the warp's 32 lanes; every lane gets the same bits (the butterfly adds
// the same two values on both sides of each exchange).
template <typename F>
__device__ __forceinline__ F warp_sum(F x) {
  for (int offset = kLanes / 2; offset > 0; offset /= 2) {
    x += __shfl_xor_sync(0xffffffffu, x, offset);
  }
  return x;
}

// This lane's slice of a row of n elements at p (stride sd): dims lane + kLanes * t.
template <typename T, typename F = Compute<T>>
__device__ __forceinline__ void load_slice(const T* p, int64_t sd, int64_t n, int lane,
                                           F (&out)[kMaxPerLane]) {
#pragma unroll
  for (int t = 0; t < kMaxPerLane; ++t) {
    const int64_t d = lane + int64_t(kLanes) * t;
    out[t] = d < n ? load(p + d * sd) : F(0);
  }
}

// The lane's slice of scale * q_i (q_i at p, n elements sd apart) into qs, and acc = 0: the
// start of a query row in the forward and dq kernels.
template <typename T, typename F>
__device__ __forceinline__ void load_scaled_query(const T* p, int64_t sd, int64_t n, int lane,
                                                  F scale, F (&qs)[kMaxPerLane],
                                                  F (&acc)[kMaxPerLane]) {
  load_slice(p, sd, n, lane, qs);
#pragma unroll
  for (int t = 0; t < kMaxPerLane; ++t) qs[t] *= scale, acc[t] = 0;
}

template <typename T, typename F>
__device__ __forceinline__ void store_slice(T* p, int64_t sd, int64_t n, int lane,
                                            const F (&values)[kMaxPerLane], F factor) {
#pragma unroll
  for (int t = 0; t < kMaxPerLane; ++t) {
    const int64_t d = lane + int64_t(kLanes) * t;
    if (d < n) p[d * sd] = convert<T>(values[t] * factor);
  }
}

// sum_d x[d] y[d] over the warp's slices (zeros past the row's end add nothing).
template <typename F>
__device__ __forceinline__ F warp_dot(const F (&x)[kMaxPerLane], const F (&y)[kMaxPerLane]) {
  F partial = 0;
#pragma unroll
  for (int t = 0; t < kMaxPerLane; ++t) partial += x[t] * y[t];
  return warp_sum(partial);
}

// The score S[i, j] for this lane's slice qs = scale * q_i and key slice kj (one value, the
// same in every lane).
template <typename T, typename F>
__device__ __forceinline__ F score(const F (&qs)[kMaxPerLane], const F (&kj)[kMaxPerLane],
                                   const View4<const T>& mask, int64_t b, int64_t h, int64_t i,
                                   int64_t j) {
  F s = warp_dot(qs, kj);
  if (mask.data != nullptr) s += load(mask.row(b, h, i) + j * mask.s3);
  return s;
}

// Calls f(b, h, i) for the rows (b, h, i) of a (B, H, T) grid that this warp takes: one warp
// per row, grid-stride over warps.
template <typename F>
__device__ __forceinline__ void for_each_warp_row(int64_t B, int64_t H, int64_t T, F&& f) {
  const int64_t rows = B * H * T;
  for (int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kLanes; row < rows;
       row += int64_t(gridDim.x) * kWarpsPerBlock) {
    f(row / (T * H), (row / T) % H, row % T);
  }
}

// ---- forward: one warp per query row ----
template <typename T>
__global__ void __launch_bounds__(kLanes* kWarpsPerBlock)
    attention_forward_kernel(Geometry g, Compute<T> scale, View4<const T> q, View4<const T> k,
                             View4<const T> v, View4<const T> mask, View4<T> out,
                             View3<Compute<T>> lse) {
  using F = Compute<T>;
  constexpr F kNegInf = -std::numeric_limits<F>::infinity();
  const int lane = int(threadIdx.x % kLanes);
  for_each_warp_row(g.B, g.H, g.Tq, [&](int64_t b, int64_t h, int64_t i) {
    const int64_t hk = h / g.group;
    F qs[kMaxPerLane], kj[kMaxPerLane], vj[kMaxPerLane], acc[kMaxPerLane];
    load_scaled_query(q.row(b, h, i), q.s3, g.D, lane, scale, qs, acc);
    F m = kNegInf, l = 0;
    const int64_t visible = g.visible(i);
    for (int64_t j = 0; j < visible; ++j) {
      load_slice(k.row(b, hk, j), k.s3, g.D, lane, kj);
      const F s = score(qs, kj, mask, b, h, i, j);
      if (s == kNegInf) continue;  // a hidden key (the same s, so the same branch, in all lanes)
      const F m_new = s > m ? s : m;
      const F correction = exp_of(m - m_new);  // exp(-inf) = 0 for the first key
      const F p = exp_of(s - m_new);
      l = l * correction + p;
      load_slice(v.row(b, hk, j), v.s3, g.Dv, lane, vj);
#pragma unroll
      for (int t = 0; t < kMaxPerLane; ++t) acc[t] = acc[t] * correction + p * vj[t];
      m = m_new;
    }
    const bool empty = m == kNegInf;  // no key seen, or all of them at -inf
    store_slice(out.row(b, h, i), out.s3, g.Dv, lane, acc, empty ? F(0) : F(1) / l);
    if (lane == 0) lse.at(b, h, i) = empty ? kNegInf : m + log_of(l);
  });
}

// ---- backward 1: delta and dq, one warp per query row ----
template <typename T>
__global__ void __launch_bounds__(kLanes* kWarpsPerBlock)
    attention_dq_kernel(Geometry g, Compute<T> scale, View4<const T> q, View4<const T> k,
                        View4<const T> v, View4<const T> mask, View4<const T> out,
                        View3<const Compute<T>> lse, View4<const T> dout, View4<T> dq,
                        View3<Compute<T>> delta) {
  using F = Compute<T>;
  constexpr F kNegInf = -std::numeric_limits<F>::infinity();
  const int lane = int(threadIdx.x % kLanes);
  for_each_warp_row(g.B, g.H, g.Tq, [&](int64_t b, int64_t h, int64_t i) {
    const int64_t hk = h / g.group;
    F qs[kMaxPerLane], kj[kMaxPerLane], vj[kMaxPerLane], dO[kMaxPerLane], acc[kMaxPerLane];
    load_slice(dout.row(b, h, i), dout.s3, g.Dv, lane, dO);
    load_slice(out.row(b, h, i), out.s3, g.Dv, lane, vj);  // O_i, for delta
    const F delta_i = warp_dot(dO, vj);
    if (lane == 0) delta.at(b, h, i) = delta_i;
    load_scaled_query(q.row(b, h, i), q.s3, g.D, lane, scale, qs, acc);
    const F lse_i = lse.at(b, h, i);
    // A row with lse = -inf saw no key: P = 0, dq = 0.
    const int64_t visible = lse_i == kNegInf ? 0 : g.visible(i);
    for (int64_t j = 0; j < visible; ++j) {
      load_slice(k.row(b, hk, j), k.s3, g.D, lane, kj);
      load_slice(v.row(b, hk, j), v.s3, g.Dv, lane, vj);
      const F p = exp_of(score(qs, kj, mask, b, h, i, j) - lse_i);
      const F dp = warp_dot(dO, vj);
      const F ds = scale * (p * (dp - delta_i));
#pragma unroll
      for (int t = 0; t < kMaxPerLane; ++t) acc[t] += ds * kj[t];
    }
    store_slice(dq.row(b, h, i), dq.s3, g.D, lane, acc, F(1));
  });
}

// ---- backward 2: dk and dv, one warp per key row ----
template <typename T>
__global__ void __launch_bounds__(kLanes* kWarpsPerBlock)
    attention_dkv_kernel(Geometry g, Compute<T> scale, View4<const T> q, View4<const T> k,
                         View4<const T> v, View4<const T> mask, View3<const Compute<T>> lse,
                         View3<const Compute<T>> delta, View4<const T> dout, View4<T> dk,
                         View4<T> dv) {
  using F = Compute<T>;
  constexpr F kNegInf = -std::numeric_limits<F>::infinity();
  const int lane = int(threadIdx.x % kLanes);
  for_each_warp_row(g.B, g.Hkv, g.Tk, [&](int64_t b, int64_t hk, int64_t j) {
    F kj[kMaxPerLane], vj[kMaxPerLane], qi[kMaxPerLane], qs[kMaxPerLane], dO[kMaxPerLane];
    F dk_acc[kMaxPerLane], dv_acc[kMaxPerLane];
    load_slice(k.row(b, hk, j), k.s3, g.D, lane, kj);
    load_slice(v.row(b, hk, j), v.s3, g.Dv, lane, vj);
#pragma unroll
    for (int t = 0; t < kMaxPerLane; ++t) dk_acc[t] = 0, dv_acc[t] = 0;
    const int64_t i0 = g.first_query(j);
    for (int64_t h = hk * g.group; h < (hk + 1) * g.group; ++h) {
      for (int64_t i = i0; i < g.Tq; ++i) {
        const F lse_i = lse.at(b, h, i);
        if (lse_i == kNegInf) continue;  // a row that saw no key (uniform across the warp)
        load_slice(q.row(b, h, i), q.s3, g.D, lane, qi);
#pragma unroll
        for (int t = 0; t < kMaxPerLane; ++t) qs[t] = qi[t] * scale;
        load_slice(dout.row(b, h, i), dout.s3, g.Dv, lane, dO);
        const F p = exp_of(score(qs, kj, mask, b, h, i, j) - lse_i);
        const F dp = warp_dot(dO, vj);
        const F ds = scale * (p * (dp - delta.at(b, h, i)));
#pragma unroll
        for (int t = 0; t < kMaxPerLane; ++t) {
          dk_acc[t] += ds * qi[t];
          dv_acc[t] += p * dO[t];
        }
      }
    }
    store_slice(dk.row(b, hk, j), dk.s3, g.D, lane, dk_acc, F(1));
    store_slice(dv.row(b, hk, j), dv.s3, g.Dv, lane, dv_acc, F(1));
  });
}

// ---- launchers ----

Geometry geometry(std::string_view op, const Tensor& q, const Tensor& k, const Tensor& v,
                  const Tensor& mask, bool causal) {
  MNEMO_ASSERT(
      q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
      "{}: expected q (B, H, Tq, D), k (B, Hkv, Tk, D), v (B, Hkv, Tk, Dv), got {}, {}, {}", op,
      shape_str(q.shape()), shape_str(k.shape()), shape_str(v.shape()));
  Geometry g{q.size(0), q.size(1), k.size(1), q.size(2), k.size(2),
             q.size(3), v.size(3), 1,         causal};
  MNEMO_ASSERT(g.Hkv > 0 && g.H % g.Hkv == 0, "{}: {} query heads cannot share {} kv heads", op,
               g.H, g.Hkv);
  g.group = g.H / g.Hkv;
  MNEMO_ASSERT(g.D <= kMaxHeadDim && g.Dv <= kMaxHeadDim,
               "{}: head dims D = {}, Dv = {} exceed the cuda backend's limit of {}", op, g.D, g.Dv,
               kMaxHeadDim);
  MNEMO_ASSERT(k.dtype() == q.dtype() && v.dtype() == q.dtype(),
               "{}: q, k, v must share a dtype, got {}, {}, {}", op, q.dtype(), k.dtype(),
               v.dtype());
  if (mask.defined()) {
    MNEMO_ASSERT(mask.dtype() == q.dtype() && mask.dim() == 4 && mask.size(0) == g.B &&
                     mask.size(1) == g.H && mask.size(2) == g.Tq && mask.size(3) == g.Tk,
                 "{}: mask {} {} must be a (B, H, Tq, Tk) = ({}, {}, {}, {}) view in {}", op,
                 shape_str(mask.shape()), mask.dtype(), g.B, g.H, g.Tq, g.Tk, q.dtype());
  }
  return g;
}

// Blocks of kWarpsPerBlock warps for one warp per row (the kernels grid-stride past the cap).
unsigned blocks_for(int64_t rows) {
  const int64_t blocks = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  return unsigned(std::clamp<int64_t>(blocks, 1, int64_t(1) << 30));
}

constexpr unsigned kBlockThreads = kLanes * kWarpsPerBlock;

// ---- the kernel choice (the rule is in the file header) ----

enum class AttentionKernel { reference, flash_wmma, flash_mma };

// dout is undefined for the forward.
AttentionKernel choose_kernel(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                              const Tensor& out, const Tensor& lse, const Tensor& dout,
                              bool backward) {
  const KernelChoice choice = kernel_choice();
  if (choice == KernelChoice::reference) return AttentionKernel::reference;
  if (!flash_attention_applies(q, k, v, mask, out, lse, dout, backward)) {
    return AttentionKernel::reference;
  }
  if (choice == KernelChoice::fast_mma && flash_mma_applies(q, backward)) {
    return AttentionKernel::flash_mma;
  }
  return AttentionKernel::flash_wmma;
}

}  // namespace

void attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, bool causal,
               double scale, const Tensor& out, const Tensor& lse) {
  const Geometry g = geometry("attention", q, k, v, mask, causal);
  const int64_t rows = g.B * g.H * g.Tq;
  if (rows == 0) return;
  switch (choose_kernel(q, k, v, mask, out, lse, Tensor(), false)) {
    case AttentionKernel::flash_mma:
      return flash_mma_forward(q, k, v, mask, causal, scale, out, lse);
    case AttentionKernel::flash_wmma:
      return flash_attention_forward(q, k, v, mask, causal, scale, out, lse);
    case AttentionKernel::reference: break;
  }
  visit_floating(q.dtype(), "attention", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using F = Compute<T>;
    MNEMO_ASSERT(lse.dtype() == (std::is_same_v<F, double> ? DType::f64 : DType::f32),
                 "attention: lse must be in the stats dtype of {}, got {}", q.dtype(), lse.dtype());
    attention_forward_kernel<T><<<blocks_for(rows), kBlockThreads, 0, stream(q.device())>>>(
        g, F(scale), view4<const T>(q), view4<const T>(k), view4<const T>(v), view4<const T>(mask),
        view4<T>(out), view3<F>(lse));
    MNEMO_CUDA_CHECK_LAUNCH("attention_forward_kernel");
  });
}

void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                        bool causal, double scale, const Tensor& out, const Tensor& lse,
                        const Tensor& dout, const Tensor& dq, const Tensor& dk, const Tensor& dv) {
  const Geometry g = geometry("attention_backward", q, k, v, mask, causal);
  switch (choose_kernel(q, k, v, mask, out, lse, dout, true)) {
    case AttentionKernel::flash_mma:
      return flash_mma_backward(q, k, v, mask, causal, scale, out, lse, dout, dq, dk, dv);
    case AttentionKernel::flash_wmma:
      return flash_attention_backward(q, k, v, mask, causal, scale, out, lse, dout, dq, dk, dv);
    case AttentionKernel::reference: break;
  }
  visit_floating(q.dtype(), "attention_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using F = Compute<T>;
    MNEMO_ASSERT(lse.dtype() == (std::is_same_v<F, double> ? DType::f64 : DType::f32),
                 "attention_backward: lse must be in the stats dtype of {}, got {}", q.dtype(),
                 lse.dtype());
    const cudaStream_t s = stream(q.device());
    const int64_t query_rows = g.B * g.H * g.Tq, key_rows = g.B * g.Hkv * g.Tk;
    // delta (B, H, Tq): rowsum(dO * O), written by the dq kernel, read by the dk/dv kernel.
    const Tensor delta = Tensor::empty({g.B, g.H, g.Tq}, lse.dtype(), q.device());
    if (query_rows > 0) {
      attention_dq_kernel<T><<<blocks_for(query_rows), kBlockThreads, 0, s>>>(
          g, F(scale), view4<const T>(q), view4<const T>(k), view4<const T>(v),
          view4<const T>(mask), view4<const T>(out), view3<const F>(lse), view4<const T>(dout),
          view4<T>(dq), view3<F>(delta));
      MNEMO_CUDA_CHECK_LAUNCH("attention_dq_kernel");
    }
    if (key_rows > 0) {
      attention_dkv_kernel<T><<<blocks_for(key_rows), kBlockThreads, 0, s>>>(
          g, F(scale), view4<const T>(q), view4<const T>(k), view4<const T>(v),
          view4<const T>(mask), view3<const F>(lse), view3<const F>(delta), view4<const T>(dout),
          view4<T>(dk), view4<T>(dv));
      MNEMO_CUDA_CHECK_LAUNCH("attention_dkv_kernel");
    }
  });
}

}  // namespace mnemo::cuda

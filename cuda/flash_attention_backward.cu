// Flash attention backward (FlashAttention-2, deterministic variant: no atomics).
//
// Shapes as in cuda/flash_attention_forward.cu; dout, dq (B, H, Tq, D), dk, dv (B, Hkv, Tk, D),
// all contiguous; lse (B, H, Tq) f32 from the forward. P is recomputed from lse, never stored:
//   P[i, j] = exp(scale q_i . k_j + kb[b, j] - lse_i)   (0 for hidden keys, rows with lse -inf)
//   dP = dO V^T,  delta_i = sum_e dO[i, e] O[i, e],  dS = scale P (dP - delta),
//   dQ = dS K,  dK = dS^T Q,  dV = P^T dO   (grouped heads summed into their kv head).
//
// flash_delta_kernel: one warp per query row (grid-stride): delta_i by a butterfly sum.
// flash_dq_kernel: one block of 4 warps per (b, h, query tile of kTile rows); keeps Q, dO,
//   lse, delta and an f32 dQ accumulator in shared memory and walks the key tiles its rows
//   see, in order: load K, V and the key bias; S = Q K^T, dP = dO V^T (tile_mma); dS
//   elementwise (each thread its elements); dQ += dS K.
// flash_dkv_kernel: one block per (b, hk, key tile of kTile keys); keeps K, V, the key bias and
//   f32 dK, dV accumulators; walks the query heads h of kv head hk's group and, per head, the
//   query tiles that see some key of the tile (from the first query that sees key j0 when
//   causal), in order: load Q, dO, lse, delta; S, dP; P and dS elementwise; dV += P^T dO,
//   dK += dS^T Q. Grouped heads add inside one block, in a fixed order.
// Every output element is written by one thread after a fixed-order sum: bitwise repeatable.
// S and dP are computed twice (once per kernel), as in FA2's deterministic backward.
//
// FLOPs: about 2.5x the forward's 4 B H Tq Tk D (here 3.5x: S and dP twice); half when causal
// with Tq = Tk. Shared memory per block, e.g. bf16 D = 64, kTile = 64: 125 KiB (dkv).
//
// Measured (the last H100 run of scripts/gpu-check.sh: bench/kernels.cpp beside PyTorch on the same
// GPU): about 36 TFLOP/s at bf16, D = 128, causal, T = 4096, which is 0.14x the 255 TFLOP/s of
// PyTorch's SDPA flash backend in the same run.
#include <cuda_runtime.h>

#include <cmath>
#include <limits>

#include "core/error.h"
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/flash_attention.cuh"
#include "cuda/flash_mma.cuh"

namespace mnemo::cuda {

namespace {

using flash::FlashTile;
using flash::kThreads;
using flash::kWarps;
using flash::Params;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Byte offsets of the backward kernels' shared buffers (the dq kernel leaves P and dV unused).
template <typename T, int D>
struct BackwardLayout {
  using Tile = FlashTile<T, D, true>;
  static constexpr int kRow = flash::align128(Tile::kRowTile);
  static constexpr int kScore = flash::align128(Tile::kScoreTile);
  static constexpr int kPT = flash::align128(Tile::kPTile);
  static constexpr int kAcc = flash::align128(Tile::kAccTile);
  static constexpr int kVec = flash::align128(Tile::kTile * 4);
  static constexpr int kQ = 0, kDO = kQ + kRow, kK = kDO + kRow, kV = kK + kRow;
  static constexpr int kS = kV + kRow, kDP = kS + kScore;
  static constexpr int kP = kDP + kScore, kDS = kP + kPT;
  static constexpr int kAcc1 = kDS + kPT, kAcc2 = kAcc1 + kAcc;  // dQ or dK; dV
  static constexpr int kLse = kAcc2 + kAcc, kDelta = kLse + kVec, kBias = kDelta + kVec;
  static constexpr int kBytes = kBias + kVec;
};

// Shared buffers of one backward block.
template <typename T>
struct Smem {
  T *q, *dO, *k, *v, *p, *ds;
  float *s, *dp, *acc1, *acc2, *lse, *delta, *bias;
};

template <typename T, int D>
__device__ Smem<T> smem_buffers(unsigned char* base) {
  using L = BackwardLayout<T, D>;
  return {reinterpret_cast<T*>(base + L::kQ),        reinterpret_cast<T*>(base + L::kDO),
          reinterpret_cast<T*>(base + L::kK),        reinterpret_cast<T*>(base + L::kV),
          reinterpret_cast<T*>(base + L::kP),        reinterpret_cast<T*>(base + L::kDS),
          reinterpret_cast<float*>(base + L::kS),    reinterpret_cast<float*>(base + L::kDP),
          reinterpret_cast<float*>(base + L::kAcc1), reinterpret_cast<float*>(base + L::kAcc2),
          reinterpret_cast<float*>(base + L::kLse),  reinterpret_cast<float*>(base + L::kDelta),
          reinterpret_cast<float*>(base + L::kBias)};
}

// Query rows [i0, i0 + kTile) of head (b, h): Q, dO tiles, lse (-inf past Tq) and delta.
template <typename T, int D>
__device__ void load_query_tile(const Params& p, const Smem<T>& sm, const T* q, const T* dout,
                                const float* lse, const float* delta, int64_t bh, int64_t i0) {
  using Tile = FlashTile<T, D, true>;
  flash::load_rows<T, D, Tile::kTile, Tile::kLd>(sm.q, q + bh * p.Tq * D, i0, p.Tq);
  flash::load_rows<T, D, Tile::kTile, Tile::kLd>(sm.dO, dout + bh * p.Tq * D, i0, p.Tq);
  for (int r = int(threadIdx.x); r < Tile::kTile; r += kThreads) {
    const bool in = i0 + r < p.Tq;
    sm.lse[r] = in ? lse[bh * p.Tq + i0 + r] : kNegInf;
    sm.delta[r] = in ? delta[bh * p.Tq + i0 + r] : 0.f;
  }
}

// Keys [j0, j0 + kTile) of kv head (b, hk): K, V tiles and the key bias.
template <typename T, int D>
__device__ void load_key_tile(const Params& p, const Smem<T>& sm, const T* k, const T* v, int64_t b,
                              int64_t hk, int64_t j0) {
  using Tile = FlashTile<T, D, true>;
  const int64_t kv = (b * p.Hkv + hk) * p.Tk * D;
  flash::load_rows<T, D, Tile::kTile, Tile::kLd>(sm.k, k + kv, j0, p.Tk);
  flash::load_rows<T, D, Tile::kTile, Tile::kLd>(sm.v, v + kv, j0, p.Tk);
  for (int c = int(threadIdx.x); c < Tile::kTile; c += kThreads) {
    sm.bias[c] = j0 + c < p.Tk ? flash::key_bias<T>(p, b, j0 + c) : 0.f;
  }
}

// S = Q K^T and dP = dO V^T for the loaded tiles, then (after a barrier) P and dS in T.
template <typename T, int D, bool kWriteP>
__device__ void scores_and_grads(const Params& p, const Smem<T>& sm, int64_t i0, int64_t j0) {
  using Tile = FlashTile<T, D, true>;
  constexpr int kTile = Tile::kTile, kLd = Tile::kLd, kLdS = Tile::kLdS, kLdP = Tile::kLdP;
  flash::tile_mma<T, false, true, kTile, kTile, D>(sm.q, kLd, sm.k, kLd, sm.s, kLdS, false);
  flash::tile_mma<T, false, true, kTile, kTile, D>(sm.dO, kLd, sm.v, kLd, sm.dp, kLdS, false);
  __syncthreads();
  for (int e = int(threadIdx.x); e < kTile * kTile; e += kThreads) {
    const int r = e / kTile, c = e % kTile;
    const int64_t i = i0 + r;
    const float lse_i = sm.lse[r];
    float pr = 0.f;
    if (i < p.Tq && j0 + c < p.visible(i) && lse_i != kNegInf) {
      pr = expf(sm.s[r * kLdS + c] * p.scale + sm.bias[c] - lse_i);
    }
    const float ds = p.scale * (pr * (sm.dp[r * kLdS + c] - sm.delta[r]));
    if constexpr (kWriteP) sm.p[r * kLdP + c] = convert<T>(pr);
    sm.ds[r * kLdP + c] = convert<T>(ds);
  }
}

// Rows [row0, row0 + kTile) of the f32 accumulator acc into dst (a (rows, D) matrix) in T.
template <typename T, int D>
__device__ void store_rows(T* dst, const float* acc, int64_t row0, int64_t rows) {
  using Tile = FlashTile<T, D, true>;
  for (int e = int(threadIdx.x); e < Tile::kTile * D; e += kThreads) {
    const int r = e / D, d = e % D;
    if (row0 + r < rows) dst[(row0 + r) * D + d] = convert<T>(acc[r * Tile::kLdAcc + d]);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    flash_delta_kernel(int64_t rows, int D, const T* __restrict__ out, const T* __restrict__ dout,
                       float* __restrict__ delta) {
  const int lane = int(threadIdx.x) % 32;
  for (int64_t row = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32; row < rows;
       row += int64_t(gridDim.x) * kWarps) {
    float sum = 0.f;
    for (int d = lane; d < D; d += 32)
      sum += float(load(out + row * D + d)) * float(load(dout + row * D + d));
    sum = flash::warp_sum(sum);
    if (lane == 0) delta[row] = sum;
  }
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads)
    flash_dq_kernel(Params p, const T* __restrict__ q, const T* __restrict__ k,
                    const T* __restrict__ v, const T* __restrict__ dout,
                    const float* __restrict__ lse, const float* __restrict__ delta,
                    T* __restrict__ dq) {
  using Tile = FlashTile<T, D, true>;
  constexpr int kTile = Tile::kTile;
  extern __shared__ __align__(128) unsigned char smem[];
  const Smem<T> sm = smem_buffers<T, D>(smem);
  const int64_t q_tiles = (p.Tq + kTile - 1) / kTile;
  const int64_t i0 = int64_t(blockIdx.x) % q_tiles * kTile, bh = int64_t(blockIdx.x) / q_tiles;
  const int64_t b = bh / p.H, hk = bh % p.H / p.group;

  load_query_tile<T, D>(p, sm, q, dout, lse, delta, bh, i0);
  for (int e = int(threadIdx.x); e < kTile * Tile::kLdAcc; e += kThreads) sm.acc1[e] = 0.f;
  const int64_t last_row = (i0 + kTile < p.Tq ? i0 + kTile : p.Tq) - 1;
  const int64_t key_end = p.visible(last_row);
  __syncthreads();
  for (int64_t j0 = 0; j0 < key_end; j0 += kTile) {
    load_key_tile<T, D>(p, sm, k, v, b, hk, j0);
    __syncthreads();
    scores_and_grads<T, D, false>(p, sm, i0, j0);
    __syncthreads();
    // dQ (kTile x D) += dS (kTile x kTile keys) K (keys x D).
    flash::tile_mma<T, false, false, kTile, D, kTile>(sm.ds, Tile::kLdP, sm.k, Tile::kLd, sm.acc1,
                                                      Tile::kLdAcc, true);
    __syncthreads();
  }
  store_rows<T, D>(dq + bh * p.Tq * D, sm.acc1, i0, p.Tq);
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads)
    flash_dkv_kernel(Params p, const T* __restrict__ q, const T* __restrict__ k,
                     const T* __restrict__ v, const T* __restrict__ dout,
                     const float* __restrict__ lse, const float* __restrict__ delta,
                     T* __restrict__ dk, T* __restrict__ dv) {
  using Tile = FlashTile<T, D, true>;
  constexpr int kTile = Tile::kTile;
  extern __shared__ __align__(128) unsigned char smem[];
  const Smem<T> sm = smem_buffers<T, D>(smem);
  const int64_t k_tiles = (p.Tk + kTile - 1) / kTile;
  const int64_t j0 = int64_t(blockIdx.x) % k_tiles * kTile, bhk = int64_t(blockIdx.x) / k_tiles;
  const int64_t b = bhk / p.Hkv, hk = bhk % p.Hkv;

  load_key_tile<T, D>(p, sm, k, v, b, hk, j0);
  for (int e = int(threadIdx.x); e < kTile * Tile::kLdAcc; e += kThreads) {
    sm.acc1[e] = 0.f;
    sm.acc2[e] = 0.f;
  }
  // Query rows before first_query(j0) see no key of this tile.
  const int64_t query_begin = p.first_query(j0) / kTile * kTile;
  __syncthreads();
  for (int64_t h = hk * p.group; h < (hk + 1) * p.group; ++h) {
    const int64_t bh = b * p.H + h;
    for (int64_t i0 = query_begin; i0 < p.Tq; i0 += kTile) {
      load_query_tile<T, D>(p, sm, q, dout, lse, delta, bh, i0);
      __syncthreads();
      scores_and_grads<T, D, true>(p, sm, i0, j0);
      __syncthreads();
      // dV (keys x D) += P^T dO;  dK (keys x D) += dS^T Q  (P, dS are (queries, keys)).
      flash::tile_mma<T, true, false, kTile, D, kTile>(sm.p, Tile::kLdP, sm.dO, Tile::kLd, sm.acc2,
                                                       Tile::kLdAcc, true);
      flash::tile_mma<T, true, false, kTile, D, kTile>(sm.ds, Tile::kLdP, sm.q, Tile::kLd, sm.acc1,
                                                       Tile::kLdAcc, true);
      __syncthreads();
    }
  }
  store_rows<T, D>(dk + bhk * p.Tk * D, sm.acc1, j0, p.Tk);
  store_rows<T, D>(dv + bhk * p.Tk * D, sm.acc2, j0, p.Tk);
}

template <typename T>
int64_t backward_bytes(int64_t D) {
  switch (D) {
    case 32: return BackwardLayout<T, 32>::kBytes;
    case 64: return BackwardLayout<T, 64>::kBytes;
    case 128: return BackwardLayout<T, 128>::kBytes;
    default: return 0;
  }
}

template <typename T, int D>
void launch_backward(const Params& p, const Tensor& q, const Tensor& k, const Tensor& v,
                     const Tensor& out, const Tensor& lse, const Tensor& dout, const Tensor& dq,
                     const Tensor& dk, const Tensor& dv) {
  using Tile = FlashTile<T, D, true>;
  constexpr int kBytes = BackwardLayout<T, D>::kBytes;
  const cudaStream_t s = stream(q.device());
  const auto* qp = static_cast<const T*>(q.data_ptr());
  const auto* kp = static_cast<const T*>(k.data_ptr());
  const auto* vp = static_cast<const T*>(v.data_ptr());
  const auto* dop = static_cast<const T*>(dout.data_ptr());
  const auto* lsep = static_cast<const float*>(lse.data_ptr());
  const int64_t query_rows = p.B * p.H * p.Tq;
  const Tensor delta = Tensor::empty({p.B, p.H, p.Tq}, DType::f32, q.device());
  const auto* deltap = static_cast<const float*>(delta.data_ptr());
  if (query_rows > 0) {
    const int64_t blocks = std::min<int64_t>((query_rows + kWarps - 1) / kWarps, 1 << 20);
    flash_delta_kernel<T>
        <<<unsigned(blocks), kThreads, 0, s>>>(query_rows, D, static_cast<const T*>(out.data_ptr()),
                                               dop, static_cast<float*>(delta.data_ptr()));
    MNEMO_CUDA_CHECK_LAUNCH("flash_delta_kernel");
    const int64_t dq_blocks = p.B * p.H * ((p.Tq + Tile::kTile - 1) / Tile::kTile);
    MNEMO_ASSERT(dq_blocks <= int64_t(INT32_MAX), "attention_backward: grid too large");
    MNEMO_CUDA_CHECK(cudaFuncSetAttribute(flash_dq_kernel<T, D>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize, kBytes));
    flash_dq_kernel<T, D><<<unsigned(dq_blocks), kThreads, kBytes, s>>>(
        p, qp, kp, vp, dop, lsep, deltap, static_cast<T*>(dq.data_ptr()));
    MNEMO_CUDA_CHECK_LAUNCH("flash_dq_kernel");
  }
  const int64_t dkv_blocks = p.B * p.Hkv * ((p.Tk + Tile::kTile - 1) / Tile::kTile);
  if (dkv_blocks > 0) {
    MNEMO_ASSERT(dkv_blocks <= int64_t(INT32_MAX), "attention_backward: grid too large");
    MNEMO_CUDA_CHECK(cudaFuncSetAttribute(flash_dkv_kernel<T, D>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize, kBytes));
    flash_dkv_kernel<T, D><<<unsigned(dkv_blocks), kThreads, kBytes, s>>>(
        p, qp, kp, vp, dop, lsep, deltap, static_cast<T*>(dk.data_ptr()),
        static_cast<T*>(dv.data_ptr()));
    MNEMO_CUDA_CHECK_LAUNCH("flash_dkv_kernel");
  }
}

}  // namespace

int64_t flash_backward_smem_bytes(DType dtype, int64_t D) {
  switch (dtype) {
    case DType::f32: return backward_bytes<float>(D);
    case DType::bf16: return backward_bytes<__nv_bfloat16>(D);
    case DType::f16: return backward_bytes<__half>(D);
    default: return 0;
  }
}

void flash_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                              bool causal, double scale, const Tensor& out, const Tensor& lse,
                              const Tensor& dout, const Tensor& dq, const Tensor& dk,
                              const Tensor& dv) {
  MNEMO_ASSERT(lse.dtype() == DType::f32 && lse.is_contiguous(),
               "attention_backward: flash needs a contiguous f32 lse, got {}", lse.dtype());
  for (const Tensor* t : {&dq, &dk, &dv}) {
    MNEMO_ASSERT(t->dtype() == q.dtype() && t->is_contiguous(),
                 "attention_backward: flash needs contiguous gradients in {}", q.dtype());
  }
  const flash::Params p = flash_params(q, k, mask, causal, scale);
  visit_flash(q.dtype(), q.size(3), "attention_backward", [&](auto tag, auto dim) {
    launch_backward<typename decltype(tag)::type, decltype(dim)::value>(p, q, k, v, out, lse, dout,
                                                                        dq, dk, dv);
  });
}

}  // namespace mnemo::cuda

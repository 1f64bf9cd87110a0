// Flash attention backward for bf16/f16 on tensor cores with register-resident fragments
// (FlashAttention-2, Dao 2023, Algorithm 2, deterministic: no atomics). Same contract as
// cuda/flash_attention_backward.cu (read its header): dout, dq (B, H, Tq, D), dk, dv (B, Hkv,
// Tk, D), lse (B, H, Tq) f32 from the forward, all contiguous and 16-byte aligned. P is
// recomputed from lse:
//   P = exp(S - lse) (0 for hidden keys and for rows with lse -inf),  dP = dO V^T,
//   delta = rowsum(dO * O),  dS = scale P (dP - delta),
//   dQ = dS K,  dK = dS^T Q,  dV = P^T dO   (the query heads of a kv group summed in order).
// All exponentials in log2 units: P = exp2(S log2 e - lse log2 e); a row with lse -inf (or
// past Tq) gets +inf in place of lse log2 e, so its P is exp2(-inf) = 0 without a branch.
//
// flash_mma_delta_kernel: delta = rowsum(dO * O); D / 8 lanes per row, each a 16-byte chunk of
//   both, reduced by shuffles in a fixed tree.
// flash_mma_dq_kernel: one CTA of 8 warps per (b, h, 128 query rows), grid B * H *
//   ceil(Tq / 128); warp w owns query rows [16 w, 16 w + 16). Q and dO stay in shared memory
//   (A fragments by ldmatrix each key tile), the row's lse and delta in registers; K and V tiles
//   of kBlockN = 64 keys double-buffered by cp.async. Per key tile: S = Q K^T and dP = dO V^T
//   in f32 registers (B fragments by ldmatrix from K, V), P and dS elementwise on the
//   fragments, dS (rounded to T) reused in registers as the A operand of dQ += dS K (K's B
//   fragments by ldmatrix.trans). dQ (16 x D f32 per warp) in registers.
// flash_mma_dkv_kernel: one CTA of 8 warps per (b, hk, 128 keys), grid B * Hkv *
//   ceil(Tk / 128); warp w owns keys [16 w, 16 w + 16). K, V stay in shared memory (A fragments
//   by ldmatrix), the keys' bias in registers. The CTA walks the query heads of kv head hk and,
//   per head, the query tiles of kBlockM = 64 rows (32 at D = 128) that see some key of its tile
//   (causal: from the first query that sees key j0), Q, dO, lse and delta double-buffered. Per
//   query tile, in the transposed (key-major) form so everything stays in registers:
//     S^T = K Q^T, dP^T = V dO^T (16 x kBlockM f32 per warp; Q, dO B fragments by ldmatrix),
//     P^T, dS^T elementwise (lse, delta per column from shared memory),
//     dV += P^T dO, dK += dS^T Q (P^T, dS^T as A fragments; dO, Q by ldmatrix.trans).
//   dK and dV (2 x 16 x D f32 per warp) live in registers for the whole CTA.
// dQ is not accumulated across key tiles by atomics: the dq kernel recomputes S and dP (FA2's
// deterministic variant). Every output is a fixed-order sum: bitwise repeatable. Causal warps
// whose rows/keys see nothing of a tile skip it (bitwise the same: P = dS = 0).
//
// Shared memory (swizzled, Swizzle<D>): dq kernel Q, dO 128 x D, K, V 2 x kBlockN x D, bias;
// dkv kernel K, V 128 x D, Q, dO 2 x kBlockM x D, lse, delta 2 x kBlockM f32. At D = 128:
// 128.5 KiB (dq) and 96.5 KiB (dkv).
// FLOPs: 4 matmuls of 2 Tq Tk D in the dkv kernel, 3 in the dq kernel: 14 B H Tq Tk D
// (3.5x the forward's 4, vs 2.5x with atomics; half when causal with Tq = Tk).
// Bytes: q, dO read once per key tile of 128 (L2), k, v once per query tile of 128.
// Registers per thread (ptxas -v, sm_90, CUDA 13.0, bf16 and f16 alike): dq kernel D = 128:
// 255, 64: 227, 32: 190, no spills; dkv kernel D = 128: 255 with 24 bytes of spill stores (48
// of loads; dK + dV alone are 128 registers: hence query tiles of 32 rows at D = 128, 64
// spilled 124 bytes), 64: 222, 32: 205, no spills.
//
// Measured: never. These kernels have not run on a GPU (they run only under
// KernelChoice::fast_mma, and no GPU run has used it yet).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/flash_mma.cuh"

namespace mnemo::cuda {

namespace {

using flash::Params;
using namespace fmma;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kPosInf = std::numeric_limits<float>::infinity();
constexpr int kWarps = 8;
constexpr int kThreads = 32 * kWarps;

// The dq kernel: 128 query rows per CTA, key tiles of kBlockN.
template <int D>
struct DqConfig {
  static constexpr int kBlockM = 16 * kWarps;
  static constexpr int kBlockN = 64;  // 128 at D = 64 spills (S, dP: 2 x 64 registers)
  static constexpr int kQ = 0;        // byte offsets
  static constexpr int kDO = kQ + kBlockM * D * 2;
  static constexpr int kK = kDO + kBlockM * D * 2;
  static constexpr int kV = kK + 2 * kBlockN * D * 2;
  static constexpr int kBias = kV + 2 * kBlockN * D * 2;
  static constexpr int kBytes = kBias + 2 * kBlockN * 4;
};

// The dkv kernel: 128 keys per CTA, query tiles of kBlockM.
template <int D>
struct DkvConfig {
  static constexpr int kBlockN = 16 * kWarps;
  // S^T, dP^T (kBlockM / 2 registers each) next to dK, dV (D / 2 each): 64 at D = 128
  // spills (~124 bytes), 32 does not.
  static constexpr int kBlockM = D == 128 ? 32 : 64;
  static constexpr int kK = 0;  // byte offsets
  static constexpr int kV = kK + kBlockN * D * 2;
  static constexpr int kQ = kV + kBlockN * D * 2;
  static constexpr int kDO = kQ + 2 * kBlockM * D * 2;
  static constexpr int kLse = kDO + 2 * kBlockM * D * 2;
  static constexpr int kDelta = kLse + 2 * kBlockM * 4;
  static constexpr int kBytes = kDelta + 2 * kBlockM * 4;
};

template <typename T, int D>
__global__ void __launch_bounds__(256)
    flash_mma_delta_kernel(int64_t rows, const T* __restrict__ out, const T* __restrict__ dout,
                           float* __restrict__ delta) {
  constexpr int kLanes = D / 8;  // lanes per row, one 16-byte chunk each (divides 32)
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t row = idx / kLanes;
  const int chunk = int(idx % kLanes);
  float sum = 0.f;
  if (row < rows) {
    const uint4 o = *reinterpret_cast<const uint4*>(out + row * D + chunk * 8);
    const uint4 d = *reinterpret_cast<const uint4*>(dout + row * D + chunk * 8);
    const T* oe = reinterpret_cast<const T*>(&o);
    const T* de = reinterpret_cast<const T*>(&d);
#pragma unroll
    for (int e = 0; e < 8; ++e) sum += float(oe[e]) * float(de[e]);
  }
  // Every lane takes part (no early exit); the groups of kLanes lanes are warp-aligned.
#pragma unroll
  for (int offset = kLanes / 2; offset > 0; offset /= 2) {
    sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  }
  if (row < rows && chunk == 0) delta[row] = sum;
}

// lse in log2 units for P = exp2(x - lse2): +inf for rows that see no key (P = 0).
__device__ __forceinline__ float lse_log2(float lse) {
  return lse == kNegInf ? kPosInf : lse * kLog2e;
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads, 1)
    flash_mma_dq_kernel(Params p, const T* __restrict__ q, const T* __restrict__ k,
                        const T* __restrict__ v, const T* __restrict__ dout,
                        const float* __restrict__ lse, const float* __restrict__ delta,
                        T* __restrict__ dq) {
  using C = DqConfig<D>;
  constexpr int kM = C::kBlockM, kN = C::kBlockN;
  extern __shared__ __align__(128) unsigned char smem[];
  T* sQ = reinterpret_cast<T*>(smem + C::kQ);
  T* sDO = reinterpret_cast<T*>(smem + C::kDO);
  T* sK = reinterpret_cast<T*>(smem + C::kK);
  T* sV = reinterpret_cast<T*>(smem + C::kV);
  float* sBias = reinterpret_cast<float*>(smem + C::kBias);

  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int g = lane >> 2, t = lane & 3;
  const QueryTile<T, D, kM, kN, kThreads> tile(p, k, v);
  const int64_t bh = tile.bh, i0 = tile.i0, n_tiles = tile.n_tiles;
  const int64_t off = p.Tk - p.Tq;
  const bool has_bias = p.key_bias != nullptr;
  const float scale2 = p.scale * kLog2e;
  const auto load_kv = [&](int64_t key_tile, int stage) {
    tile.load_kv(p, key_tile, stage, sK, sV, sBias);
  };

  load_tile_async<T, D, kM, kThreads>(sQ, q + bh * p.Tq * D, i0, p.Tq);
  load_tile_async<T, D, kM, kThreads>(sDO, dout + bh * p.Tq * D, i0, p.Tq);
  if (n_tiles > 0) load_kv(0, 0);
  cp_async_commit();

  const int64_t warp_row0 = i0 + 16 * warp;
  const int64_t row_base = warp_row0 + g;  // this thread's rows: row_base, row_base + 8
  float row_lse2[2], row_delta[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t row = row_base + 8 * r;
    row_lse2[r] = row < p.Tq ? lse_log2(lse[bh * p.Tq + row]) : kPosInf;
    row_delta[r] = row < p.Tq ? delta[bh * p.Tq + row] : 0.f;
  }
  float acc_dq[D / 8][4];
  zero_frags(acc_dq);
  const uint32_t q_tile = smem_u32(sQ), do_tile = smem_u32(sDO);

  for (int64_t it = 0; it < n_tiles; ++it) {
    const int stage = int(it & 1);
    if (it + 1 < n_tiles) {
      load_kv(it + 1, stage ^ 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();

    const int64_t j0 = it * kN;
    if (!p.causal || j0 <= warp_row0 + 15 + off) {
      const uint32_t k_tile = smem_u32(sK + stage * kN * D);
      const uint32_t v_tile = smem_u32(sV + stage * kN * D);
      float s[kN / 8][4], dp[kN / 8][4];
      zero_frags(s);
      zero_frags(dp);
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        uint32_t aq[4], ado[4];
        ldmatrix_x4(aq, a_frag_addr<D>(q_tile, 16 * warp, kk, lane));
        ldmatrix_x4(ado, a_frag_addr<D>(do_tile, 16 * warp, kk, lane));
#pragma unroll
        for (int np = 0; np < kN / 16; ++np) {
          mma_x2<T>(s[2 * np], s[2 * np + 1], aq, b_frag_addr<D>(k_tile, 16 * np, kk, lane));
          mma_x2<T>(dp[2 * np], dp[2 * np + 1], ado, b_frag_addr<D>(v_tile, 16 * np, kk, lane));
        }
      }
      // dS = scale P (dP - delta), into s.
      const bool need_mask = j0 + kN > p.Tk || (p.causal && j0 + kN - 1 > warp_row0 + off);
      int last_col[2];  // row r sees the tile's columns <= last_col[r]
#pragma unroll
      for (int r = 0; r < 2; ++r) last_col[r] = visible_last_col(p, row_base + 8 * r, j0, kN);
      const float* bias = sBias + stage * kN;
#pragma unroll
      for (int nb = 0; nb < kN / 8; ++nb) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int col = nb * 8 + 2 * t + (e & 1), r = e >> 1;
          float x = s[nb][e] * scale2;
          if (has_bias) x += bias[col];
          float pr = exp2f(x - row_lse2[r]);
          if (need_mask && col > last_col[r]) pr = 0.f;
          s[nb][e] = p.scale * (pr * (dp[nb][e] - row_delta[r]));
        }
      }
      // dQ += dS K.
#pragma unroll
      for (int kk = 0; kk < kN / 16; ++kk) {
        uint32_t a[4];
        c_to_a<T>(a, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
        for (int nn = 0; nn < D / 16; ++nn) {
          mma_x2<T, true>(acc_dq[2 * nn], acc_dq[2 * nn + 1], a,
                          bt_frag_addr<D>(k_tile, 16 * kk, nn, lane));
        }
      }
    }
    __syncthreads();
  }
  cp_async_wait<0>();  // no tile: the Q, dO group is still pending; let it land before exit
  store_acc<T, D>(dq + bh * p.Tq * D, acc_dq, warp_row0, p.Tq, lane);
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads, 1)
    flash_mma_dkv_kernel(Params p, const T* __restrict__ q, const T* __restrict__ k,
                         const T* __restrict__ v, const T* __restrict__ dout,
                         const float* __restrict__ lse, const float* __restrict__ delta,
                         T* __restrict__ dk, T* __restrict__ dv) {
  using C = DkvConfig<D>;
  constexpr int kM = C::kBlockM, kN = C::kBlockN;
  extern __shared__ __align__(128) unsigned char smem[];
  T* sK = reinterpret_cast<T*>(smem + C::kK);
  T* sV = reinterpret_cast<T*>(smem + C::kV);
  T* sQ = reinterpret_cast<T*>(smem + C::kQ);
  T* sDO = reinterpret_cast<T*>(smem + C::kDO);
  float* sLse = reinterpret_cast<float*>(smem + C::kLse);
  float* sDelta = reinterpret_cast<float*>(smem + C::kDelta);

  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int g = lane >> 2, t = lane & 3;
  const int64_t k_tiles = (p.Tk + kN - 1) / kN;
  const int64_t j0 = int64_t(blockIdx.x) % k_tiles * kN;
  const int64_t bhk = int64_t(blockIdx.x) / k_tiles;
  const int64_t b = bhk / p.Hkv, hk = bhk % p.Hkv;
  const int64_t off = p.Tk - p.Tq;
  const float scale2 = p.scale * kLog2e;

  // Query rows before first_query(j0) see no key of this tile; per head, query tiles
  // [query_begin, Tq) in steps of kM; all heads of the group: `total` iterations.
  const int64_t query_begin = p.first_query(j0) / kM * kM;
  const int64_t per_head = query_begin < p.Tq ? (p.Tq - query_begin + kM - 1) / kM : 0;
  const int64_t total = p.group * per_head;

  // Iteration order: heads h of the group, per head query tiles i0 = query_begin, + kM, ...
  // Steps (h, i0) to the next iteration (no 64-bit division in the loop).
  const auto next = [&](int64_t& h, int64_t& i0) {
    i0 += kM;
    if (i0 >= p.Tq) i0 = query_begin, ++h;
  };
  // Issues the loads of iteration (h, i0) into buffer `stage`.
  auto load_q = [&](int64_t h, int64_t i0, int stage) {
    const int64_t bh = b * p.H + h;
    load_tile_async<T, D, kM, kThreads>(sQ + stage * kM * D, q + bh * p.Tq * D, i0, p.Tq);
    load_tile_async<T, D, kM, kThreads>(sDO + stage * kM * D, dout + bh * p.Tq * D, i0, p.Tq);
    for (int r = tid; r < kM; r += kThreads) {
      const bool in = i0 + r < p.Tq;
      sLse[stage * kM + r] = in ? lse_log2(lse[bh * p.Tq + i0 + r]) : kPosInf;
      sDelta[stage * kM + r] = in ? delta[bh * p.Tq + i0 + r] : 0.f;
    }
  };

  const T* k_bhk = k + bhk * p.Tk * D;
  const T* v_bhk = v + bhk * p.Tk * D;
  load_tile_async<T, D, kN, kThreads>(sK, k_bhk, j0, p.Tk);
  load_tile_async<T, D, kN, kThreads>(sV, v_bhk, j0, p.Tk);
  int64_t load_h = hk * p.group, load_i0 = query_begin;  // the next iteration to load
  if (total > 0) {
    load_q(load_h, load_i0, 0);
    next(load_h, load_i0);
  }
  cp_async_commit();

  const int64_t warp_key0 = j0 + 16 * warp;
  const int64_t key_base = warp_key0 + g;  // this thread's keys: key_base, key_base + 8
  float key_bias2[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t key = key_base + 8 * r;
    key_bias2[r] =
        p.key_bias != nullptr && key < p.Tk ? flash::key_bias<T>(p, b, key) * kLog2e : 0.f;
  }
  float acc_dk[D / 8][4], acc_dv[D / 8][4];
  zero_frags(acc_dk);
  zero_frags(acc_dv);
  const uint32_t k_tile = smem_u32(sK), v_tile = smem_u32(sV);

  int64_t h_now = hk * p.group, i0 = query_begin;  // this iteration's head and query tile
  for (int64_t it = 0; it < total; ++it) {
    const int stage = int(it & 1);
    if (it + 1 < total) {
      load_q(load_h, load_i0, stage ^ 1);
      next(load_h, load_i0);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();

    // Warp-uniform: some key of this warp exists and is seen by some row of the tile.
    if (warp_key0 < p.Tk && (!p.causal || warp_key0 <= i0 + kM - 1 + off)) {
      const uint32_t q_tile = smem_u32(sQ + stage * kM * D);
      const uint32_t do_tile = smem_u32(sDO + stage * kM * D);
      float s[kM / 8][4], dp[kM / 8][4];  // S^T, dP^T: (16 keys, kM queries)
      zero_frags(s);
      zero_frags(dp);
      // Not unrolled: fully unrolled, ptxas hoists the loads of all k-steps and the D = 128
      // kernel spills 56 bytes instead of 24 (dK, dV alone hold 128 registers).
#pragma unroll 1
      for (int kk = 0; kk < D / 16; ++kk) {
        uint32_t ak[4], av[4];
        ldmatrix_x4(ak, a_frag_addr<D>(k_tile, 16 * warp, kk, lane));
        ldmatrix_x4(av, a_frag_addr<D>(v_tile, 16 * warp, kk, lane));
#pragma unroll
        for (int np = 0; np < kM / 16; ++np) {
          mma_x2<T>(s[2 * np], s[2 * np + 1], ak, b_frag_addr<D>(q_tile, 16 * np, kk, lane));
          mma_x2<T>(dp[2 * np], dp[2 * np + 1], av, b_frag_addr<D>(do_tile, 16 * np, kk, lane));
        }
      }
      // P^T into s, dS^T into dp.
      const bool need_mask = warp_key0 + 15 >= p.Tk || (p.causal && warp_key0 + 15 > i0 + off);
      int first_col[2];  // key r is seen by the tile's query columns >= first_col[r]
#pragma unroll
      for (int r = 0; r < 2; ++r) first_col[r] = seen_first_col(p, key_base + 8 * r, i0, kM);
      const float* lse2 = sLse + stage * kM;
      const float* dl = sDelta + stage * kM;
#pragma unroll
      for (int nb = 0; nb < kM / 8; ++nb) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int col = nb * 8 + 2 * t + (e & 1), r = e >> 1;
          float pr = exp2f(s[nb][e] * scale2 + key_bias2[r] - lse2[col]);
          if (need_mask && col < first_col[r]) pr = 0.f;
          s[nb][e] = pr;
          dp[nb][e] = p.scale * (pr * (dp[nb][e] - dl[col]));
        }
      }
      // dV += P^T dO, dK += dS^T Q.
#pragma unroll
      for (int kk = 0; kk < kM / 16; ++kk) {
        uint32_t ap[4], ads[4];
        c_to_a<T>(ap, s[2 * kk], s[2 * kk + 1]);
        c_to_a<T>(ads, dp[2 * kk], dp[2 * kk + 1]);
#pragma unroll
        for (int nn = 0; nn < D / 16; ++nn) {
          mma_x2<T, true>(acc_dv[2 * nn], acc_dv[2 * nn + 1], ap,
                          bt_frag_addr<D>(do_tile, 16 * kk, nn, lane));
          mma_x2<T, true>(acc_dk[2 * nn], acc_dk[2 * nn + 1], ads,
                          bt_frag_addr<D>(q_tile, 16 * kk, nn, lane));
        }
      }
    }
    __syncthreads();
    next(h_now, i0);
  }
  cp_async_wait<0>();  // no iteration: the K, V group is still pending; let it land
  store_acc<T, D>(dk + bhk * p.Tk * D, acc_dk, warp_key0, p.Tk, lane);
  store_acc<T, D>(dv + bhk * p.Tk * D, acc_dv, warp_key0, p.Tk, lane);
}

template <typename T, int D>
void launch_backward(const Params& p, const Tensor& q, const Tensor& k, const Tensor& v,
                     const Tensor& out, const Tensor& lse, const Tensor& dout, const Tensor& dq,
                     const Tensor& dk, const Tensor& dv) {
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
    const int64_t threads = query_rows * (D / 8);
    const int64_t blocks = (threads + 255) / 256;
    MNEMO_ASSERT(blocks <= int64_t(INT32_MAX), "attention_backward: grid too large");
    flash_mma_delta_kernel<T, D>
        <<<unsigned(blocks), 256, 0, s>>>(query_rows, static_cast<const T*>(out.data_ptr()), dop,
                                          static_cast<float*>(delta.data_ptr()));
    MNEMO_CUDA_CHECK_LAUNCH("flash_mma_delta_kernel");

    using C = DqConfig<D>;
    const int64_t dq_blocks = p.B * p.H * ((p.Tq + C::kBlockM - 1) / C::kBlockM);
    MNEMO_ASSERT(dq_blocks <= int64_t(INT32_MAX), "attention_backward: grid too large");
    MNEMO_CUDA_CHECK(cudaFuncSetAttribute(flash_mma_dq_kernel<T, D>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize, C::kBytes));
    flash_mma_dq_kernel<T, D><<<unsigned(dq_blocks), kThreads, C::kBytes, s>>>(
        p, qp, kp, vp, dop, lsep, deltap, static_cast<T*>(dq.data_ptr()));
    MNEMO_CUDA_CHECK_LAUNCH("flash_mma_dq_kernel");
  }
  using C = DkvConfig<D>;
  const int64_t dkv_blocks = p.B * p.Hkv * ((p.Tk + C::kBlockN - 1) / C::kBlockN);
  if (dkv_blocks > 0) {
    MNEMO_ASSERT(dkv_blocks <= int64_t(INT32_MAX), "attention_backward: grid too large");
    MNEMO_CUDA_CHECK(cudaFuncSetAttribute(flash_mma_dkv_kernel<T, D>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize, C::kBytes));
    flash_mma_dkv_kernel<T, D><<<unsigned(dkv_blocks), kThreads, C::kBytes, s>>>(
        p, qp, kp, vp, dop, lsep, deltap, static_cast<T*>(dk.data_ptr()),
        static_cast<T*>(dv.data_ptr()));
    MNEMO_CUDA_CHECK_LAUNCH("flash_mma_dkv_kernel");
  }
  count_flash_mma_backward();
}

template <int D>
constexpr int64_t backward_bytes() {
  return std::max<int64_t>(DqConfig<D>::kBytes, DkvConfig<D>::kBytes);
}

}  // namespace

int64_t flash_mma_backward_smem_bytes(DType dtype, int64_t D) {
  if (dtype != DType::bf16 && dtype != DType::f16) return 0;
  switch (D) {
    case 32: return backward_bytes<32>();
    case 64: return backward_bytes<64>();
    case 128: return backward_bytes<128>();
    default: return 0;
  }
}

void flash_mma_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                        bool causal, double scale, const Tensor& out, const Tensor& lse,
                        const Tensor& dout, const Tensor& dq, const Tensor& dk, const Tensor& dv) {
  for (const Tensor* t : {&dq, &dk, &dv}) {
    MNEMO_ASSERT(t->dtype() == q.dtype() && t->is_contiguous(),
                 "attention_backward: flash needs contiguous gradients in {}", q.dtype());
  }
  const Params p = flash_params(q, k, mask, causal, scale);
  visit_flash<true>(q.dtype(), q.size(3), "attention_backward (mma)", [&](auto tag, auto dim) {
    launch_backward<typename decltype(tag)::type, decltype(dim)::value>(p, q, k, v, out, lse, dout,
                                                                        dq, dk, dv);
  });
}

}  // namespace mnemo::cuda

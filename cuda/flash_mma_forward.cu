// Flash attention forward for bf16/f16 on tensor cores with register-resident fragments
// (FlashAttention-2, Dao 2023, Algorithm 1), and the launch counters of cuda/flash_mma.h.
// Same contract as cuda/flash_attention_forward.cu (read its header): q (B, H, Tq, D), k, v
// (B, Hkv, Tk, D), out (B, H, Tq, D), lse (B, H, Tq) f32, all contiguous and 16-byte aligned;
// query head h reads kv head h / (H / Hkv); causal: query i sees key j iff j <= i + Tk - Tq;
// optional key-padding bias kb (B, Tk);
//   S = scale q k^T + kb,  out = softmax(S) v,  lse = log sum exp S  (-inf and out 0 for a row
//   that sees no key).
//
// flash_mma_forward_kernel<T, D>: one CTA of 8 warps per (b, h, tile of kBlockM = 128 query
// rows); grid B * H * ceil(Tq / 128), the last query tiles first (causal: they see the most
// keys, so the long CTAs start early). Warp w owns rows [16 w, 16 w + 16) of the tile:
//   - its Q rows live in registers as mma A fragments for the whole kernel (D / 16 k-steps,
//     4 registers each), loaded once by ldmatrix from the cp.async-filled Q tile;
//   - K and V tiles of kBlockN keys (64 at D = 128, 128 at D <= 64) are double-buffered in
//     shared memory: tile n + 1 is in flight (cp.async) while tile n is used;
//   - S = Q K^T for 16 x kBlockN: f32 C fragments in registers (mma.sync m16n8k16, B fragments
//     by ldmatrix from the K tile);
//   - online softmax on the fragments in log2 units (x = S log2 e, exp2): each thread holds 2
//     rows (g and g + 8 of the warp's 16), the row max is reduced over the 4 lanes of a quad
//     with 2 shuffles; the row sum stays per thread until the end (the rescale factors are
//     quad-uniform, so the partial sums add up to the row sum);
//   - P (rounded to T) is reused directly as the A operand of P V (C fragments of two n8 blocks
//     = A fragment of one k16 step); V's B fragments by ldmatrix.trans;
//   - O accumulates in f32 registers (16 x D per warp), rescaled per key tile.
// Causal: key tiles past the last row's last visible key are never loaded; a warp whose rows
// see none of a loaded tile skips it (bitwise the same as processing it: P = 0, factor 1); the
// mask is evaluated only on tiles that cross the diagonal or the end of the keys.
// D in {32, 64, 128}. 256 threads, at most 255 registers each (1 CTA per SM at D = 128).
//
// Shared memory (swizzled, Swizzle<D> in cuda/flash_mma.cuh: no padding, conflict-free
// ldmatrix): Q 128 x D, K and V 2 stages x kBlockN x D, key bias 2 x kBlockN f32; at D = 128
// 32 + 2 x 2 x 16 KiB + 0.5 KiB = 96.5 KiB, at D = 64 16 + 64 KiB + 1 KiB.
// FLOPs: 4 B H Tq Tk D (about half when causal with Tq = Tk). Bytes: q, out once, k and v
// once per 128-row query tile (mostly L2 hits), lse 4 B H Tq.
// Registers per thread (ptxas -v, sm_90, CUDA 13.0, bf16 and f16 alike): D = 128: 242,
// D = 64: 240, D = 32: 192; no spills. At D = 128 a warp holds Q (32 registers), O (64) and S
// (32): 8 warps x 16 rows fit, so no need for 64-row tiles of 4 warps.
//
// Measured: never. These kernels have not run on a GPU (they run only under
// KernelChoice::fast_mma, and no GPU run has used it yet).
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
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

template <int D>
struct FwdConfig {
  static constexpr int kWarps = 8;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kBlockM = 16 * kWarps;          // query rows per CTA
  static constexpr int kBlockN = D == 128 ? 64 : 128;  // keys per tile
  static constexpr int kQ = 0;                         // byte offsets
  static constexpr int kK = kQ + kBlockM * D * 2;
  static constexpr int kV = kK + 2 * kBlockN * D * 2;
  static constexpr int kBias = kV + 2 * kBlockN * D * 2;
  static constexpr int kBytes = kBias + 2 * kBlockN * 4;
};

template <typename T, int D>
__global__ void __launch_bounds__(FwdConfig<D>::kThreads, 1)
    flash_mma_forward_kernel(Params p, const T* __restrict__ q, const T* __restrict__ k,
                             const T* __restrict__ v, T* __restrict__ out,
                             float* __restrict__ lse) {
  using C = FwdConfig<D>;
  constexpr int kM = C::kBlockM, kN = C::kBlockN, kThreads = C::kThreads;
  extern __shared__ __align__(128) unsigned char smem[];
  T* sQ = reinterpret_cast<T*>(smem + C::kQ);
  T* sK = reinterpret_cast<T*>(smem + C::kK);
  T* sV = reinterpret_cast<T*>(smem + C::kV);
  float* sBias = reinterpret_cast<float*>(smem + C::kBias);

  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int g = lane >> 2, t = lane & 3;
  const QueryTile<T, D, kM, kN, kThreads> tile(p, k, v);
  const int64_t bh = tile.bh, i0 = tile.i0, n_tiles = tile.n_tiles;
  const T* q_bh = q + bh * p.Tq * D;
  const int64_t off = p.Tk - p.Tq;  // causal: row i sees keys j <= i + off
  const bool has_bias = p.key_bias != nullptr;
  const float scale2 = p.scale * kLog2e;
  const auto load_kv = [&](int64_t key_tile, int stage) {
    tile.load_kv(p, key_tile, stage, sK, sV, sBias);
  };

  load_tile_async<T, D, kM, kThreads>(sQ, q_bh, i0, p.Tq);
  if (n_tiles > 0) load_kv(0, 0);
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();

  uint32_t qf[D / 16][4];
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    ldmatrix_x4(qf[kk], a_frag_addr<D>(smem_u32(sQ), 16 * warp, kk, lane));
  }

  float acc_o[D / 8][4];
  zero_frags(acc_o);
  float row_max[2] = {kNegInf, kNegInf};  // log2 units, quad-uniform
  float row_sum[2] = {0.f, 0.f};          // this thread's columns only
  const int64_t warp_row0 = i0 + 16 * warp;
  const int64_t row_base = warp_row0 + g;  // this thread's rows: row_base, row_base + 8

  for (int64_t it = 0; it < n_tiles; ++it) {
    const int stage = int(it & 1);
    if (it + 1 < n_tiles) {
      load_kv(it + 1, stage ^ 1);  // its buffer was last read before the previous barrier
      cp_async_commit();
      cp_async_wait<1>();  // tile `it` has landed (this thread's copies)
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();  // ... and every thread's copies and bias stores

    const int64_t j0 = it * kN;
    // Warp-uniform: whether any row of this warp sees a key of the tile.
    if (!p.causal || j0 <= warp_row0 + 15 + off) {
      float s[kN / 8][4];
      zero_frags(s);
      const uint32_t k_tile = smem_u32(sK + stage * kN * D);
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
        for (int np = 0; np < kN / 16; ++np) {
          mma_x2<T>(s[2 * np], s[2 * np + 1], qf[kk], b_frag_addr<D>(k_tile, 16 * np, kk, lane));
        }
      }

      // Scores in log2 units, bias, mask; the new row maxima.
      const bool need_mask = j0 + kN > p.Tk || (p.causal && j0 + kN - 1 > warp_row0 + off);
      int last_col[2];  // row r sees the tile's columns <= last_col[r] (32-bit compares)
#pragma unroll
      for (int r = 0; r < 2; ++r) last_col[r] = visible_last_col(p, row_base + 8 * r, j0, kN);
      const float* bias = sBias + stage * kN;
      float new_max[2] = {row_max[0], row_max[1]};
#pragma unroll
      for (int nb = 0; nb < kN / 8; ++nb) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int col = nb * 8 + 2 * t + (e & 1);
          float x = s[nb][e] * scale2;
          if (has_bias) x += bias[col];
          if (need_mask && col > last_col[e >> 1]) x = kNegInf;
          s[nb][e] = x;
          new_max[e >> 1] = fmaxf(new_max[e >> 1], x);
        }
      }
      float factor[2], ref[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        new_max[r] = fmaxf(new_max[r], __shfl_xor_sync(0xffffffffu, new_max[r], 1));
        new_max[r] = fmaxf(new_max[r], __shfl_xor_sync(0xffffffffu, new_max[r], 2));
        // A row that has seen only hidden keys keeps max -inf: subtract 0 instead (its
        // exponentials are exp2(-inf) = 0, no NaN from -inf - -inf).
        ref[r] = new_max[r] == kNegInf ? 0.f : new_max[r];
        factor[r] = exp2f(row_max[r] - ref[r]);  // 0 while row_max was -inf
        row_max[r] = new_max[r];
      }
      float tile_sum[2] = {0.f, 0.f};
#pragma unroll
      for (int nb = 0; nb < kN / 8; ++nb) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float pr = exp2f(s[nb][e] - ref[e >> 1]);
          s[nb][e] = pr;
          tile_sum[e >> 1] += pr;
        }
      }
      row_sum[0] = row_sum[0] * factor[0] + tile_sum[0];
      row_sum[1] = row_sum[1] * factor[1] + tile_sum[1];
#pragma unroll
      for (int nb = 0; nb < D / 8; ++nb) {
        acc_o[nb][0] *= factor[0];
        acc_o[nb][1] *= factor[0];
        acc_o[nb][2] *= factor[1];
        acc_o[nb][3] *= factor[1];
      }

      // O += P V: P straight from the score registers.
      const uint32_t v_tile = smem_u32(sV + stage * kN * D);
#pragma unroll
      for (int kk = 0; kk < kN / 16; ++kk) {
        uint32_t a[4];
        c_to_a<T>(a, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
        for (int nn = 0; nn < D / 16; ++nn) {
          mma_x2<T, true>(acc_o[2 * nn], acc_o[2 * nn + 1], a,
                          bt_frag_addr<D>(v_tile, 16 * kk, nn, lane));
        }
      }
    }
    __syncthreads();  // everyone is done with buffer `stage` before it is refilled
  }

  // out = O / l, lse = max ln 2 + ln l; rows that saw no key: out 0, lse -inf.
  float inv[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 1);
    row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 2);
    inv[r] = row_max[r] == kNegInf ? 0.f : 1.f / row_sum[r];  // row_sum >= 1 otherwise
  }
#pragma unroll
  for (int nb = 0; nb < D / 8; ++nb) {
    acc_o[nb][0] *= inv[0];
    acc_o[nb][1] *= inv[0];
    acc_o[nb][2] *= inv[1];
    acc_o[nb][3] *= inv[1];
  }
  store_acc<T, D>(out + bh * p.Tq * D, acc_o, warp_row0, p.Tq, lane);
  if (t == 0) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int64_t row = row_base + 8 * r;
      if (row < p.Tq) {
        lse[bh * p.Tq + row] =
            row_max[r] == kNegInf ? kNegInf : row_max[r] * kLn2 + logf(row_sum[r]);
      }
    }
  }
}

template <typename T, int D>
void launch_forward(const Params& p, const Tensor& q, const Tensor& k, const Tensor& v,
                    const Tensor& out, const Tensor& lse) {
  using C = FwdConfig<D>;
  const int64_t blocks = p.B * p.H * ((p.Tq + C::kBlockM - 1) / C::kBlockM);
  if (blocks == 0) return;
  MNEMO_ASSERT(blocks <= int64_t(INT32_MAX), "attention: {} query tiles exceed the grid limit",
               blocks);
  MNEMO_CUDA_CHECK(cudaFuncSetAttribute(flash_mma_forward_kernel<T, D>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, C::kBytes));
  flash_mma_forward_kernel<T, D><<<unsigned(blocks), C::kThreads, C::kBytes, stream(q.device())>>>(
      p, static_cast<const T*>(q.data_ptr()), static_cast<const T*>(k.data_ptr()),
      static_cast<const T*>(v.data_ptr()), static_cast<T*>(out.data_ptr()),
      static_cast<float*>(lse.data_ptr()));
  MNEMO_CUDA_CHECK_LAUNCH("flash_mma_forward_kernel");
  count_flash_mma_forward();
}

std::atomic<int64_t> forward_calls{0};
std::atomic<int64_t> backward_calls{0};

}  // namespace

int64_t flash_mma_forward_calls() {
  return forward_calls.load();
}
int64_t flash_mma_backward_calls() {
  return backward_calls.load();
}
void count_flash_mma_forward() {
  forward_calls.fetch_add(1);
}
void count_flash_mma_backward() {
  backward_calls.fetch_add(1);
}

int64_t flash_mma_forward_smem_bytes(DType dtype, int64_t D) {
  if (dtype != DType::bf16 && dtype != DType::f16) return 0;
  switch (D) {
    case 32: return FwdConfig<32>::kBytes;
    case 64: return FwdConfig<64>::kBytes;
    case 128: return FwdConfig<128>::kBytes;
    default: return 0;
  }
}

bool flash_mma_applies(const Tensor& q, bool backward) {
  const int64_t D = q.size(3);
  const int64_t bytes = backward ? flash_mma_backward_smem_bytes(q.dtype(), D)
                                 : flash_mma_forward_smem_bytes(q.dtype(), D);
  if (bytes == 0) return false;
  int limit = 0;
  MNEMO_CUDA_CHECK(
      cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, q.device().index));
  return bytes <= limit;
}

void flash_mma_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                       bool causal, double scale, const Tensor& out, const Tensor& lse) {
  const Params p = flash_params(q, k, mask, causal, scale);
  if (p.B * p.H * p.Tq == 0) return;
  visit_flash<true>(q.dtype(), q.size(3), "attention (mma)", [&](auto tag, auto dim) {
    launch_forward<typename decltype(tag)::type, decltype(dim)::value>(p, q, k, v, out, lse);
  });
}

}  // namespace mnemo::cuda

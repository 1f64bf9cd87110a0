// Flash attention forward (FlashAttention-2, Dao 2023), and the host side shared with the
// backward: when the flash kernels apply, and their shared-memory sizes.
//
// Shapes (core/backend_ops.def): q (B, H, Tq, D), k (B, Hkv, Tk, D), v (B, Hkv, Tk, D), out
// (B, H, Tq, D), lse (B, H, Tq) f32; all contiguous. Query head h reads kv head h / (H / Hkv).
// Causal: query i sees key j iff j <= i + Tk - Tq. Optional key-padding bias kb (B, Tk):
//   S[i, j] = scale q_i . k_j + kb[b, j],  P = softmax_j(S),  out_i = sum_j P[i, j] v_j,
//   lse_i = log sum_j exp(S[i, j])   (-inf, with out_i = 0, for a row that sees no key).
//
// flash_forward_kernel: one block of 4 warps per (b, h, tile of kTile query rows); grid
// B * H * ceil(Tq / kTile), 1-d. The block keeps its Q tile and an f32 accumulator O (kTile x
// D) in shared memory and walks the key tiles [j0, j0 + kTile) that any of its rows sees, in
// order (no T x T matrix anywhere):
//   1. load the K and V tiles (rows past Tk are zero) and the tile's key bias;
//   2. S = Q K^T (tile_mma: tensor cores for bf16/f16, FMA for f32), f32 in shared memory;
//   3. online softmax, warp w owning rows w, w + 4, ...: per row the tile max (lanes take
//      columns lane, lane + 32; butterfly max), m_new = max(m, tile max),
//      P = exp(S - m_new) (0 for hidden or out-of-range keys, and for a row whose m_new is
//      still -inf), l = l * exp(m - m_new) + rowsum(P), O row *= exp(m - m_new);
//      P is stored in T (bf16/f16 P feeds the tensor cores, like FA2; l sums the f32 values);
//   4. O += P V (tile_mma).
// Then out = O / l and lse = m + log l (row m = -inf: out 0, lse -inf). Each output element is
// produced by one thread in a fixed order: bitwise repeatable.
//
// FLOPs: 4 B H Tq Tk D (about half when causal with Tq = Tk). Bytes: q, out once; k and v once
// per query tile (B H ceil(Tq / kTile) Tk D 2 sizeof(T), mostly from L2).
// Shared memory per block, e.g. bf16 D = 128: Q, K, V 3 x 17 KiB, S 17 KiB, P 9 KiB, O 33 KiB.
// Known next steps (FA2 proper): S and O in registers (mma.sync fragments), cp.async double
// buffering of K/V, and 128-row tiles with 8 warps.
//
// Measured (the last H100 run of scripts/gpu-check.sh: bench/kernels.cpp beside PyTorch on the same
// GPU): about 37 TFLOP/s at bf16, D = 128, causal, T = 4096, which is 0.12x the 312 TFLOP/s of
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

// Byte offsets of the forward kernel's shared buffers.
template <typename T, int D>
struct ForwardLayout {
  using Tile = FlashTile<T, D, false>;
  static constexpr int kQ = 0;
  static constexpr int kK = kQ + flash::align128(Tile::kRowTile);
  static constexpr int kV = kK + flash::align128(Tile::kRowTile);
  static constexpr int kS = kV + flash::align128(Tile::kRowTile);
  static constexpr int kP = kS + flash::align128(Tile::kScoreTile);
  static constexpr int kO = kP + flash::align128(Tile::kPTile);
  static constexpr int kRowM = kO + flash::align128(Tile::kAccTile);
  static constexpr int kRowL = kRowM + flash::align128(Tile::kTile * 4);
  static constexpr int kBias = kRowL + flash::align128(Tile::kTile * 4);
  static constexpr int kBytes = kBias + flash::align128(Tile::kTile * 4);
};

template <typename T, int D>
__global__ void __launch_bounds__(kThreads)
    flash_forward_kernel(Params p, const T* __restrict__ q, const T* __restrict__ k,
                         const T* __restrict__ v, T* __restrict__ out, float* __restrict__ lse) {
  using Tile = FlashTile<T, D, false>;
  using L = ForwardLayout<T, D>;
  constexpr int kTile = Tile::kTile, kLd = Tile::kLd, kLdS = Tile::kLdS, kLdP = Tile::kLdP,
                kLdAcc = Tile::kLdAcc;
  extern __shared__ __align__(128) unsigned char smem[];
  T* sQ = reinterpret_cast<T*>(smem + L::kQ);
  T* sK = reinterpret_cast<T*>(smem + L::kK);
  T* sV = reinterpret_cast<T*>(smem + L::kV);
  float* sS = reinterpret_cast<float*>(smem + L::kS);
  T* sP = reinterpret_cast<T*>(smem + L::kP);
  float* sO = reinterpret_cast<float*>(smem + L::kO);
  float* row_m = reinterpret_cast<float*>(smem + L::kRowM);
  float* row_l = reinterpret_cast<float*>(smem + L::kRowL);
  float* bias = reinterpret_cast<float*>(smem + L::kBias);

  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int64_t q_tiles = (p.Tq + kTile - 1) / kTile;
  const int64_t qt = int64_t(blockIdx.x) % q_tiles, bh = int64_t(blockIdx.x) / q_tiles;
  const int64_t h = bh % p.H, b = bh / p.H, hk = h / p.group;
  const int64_t i0 = qt * kTile;
  const T* q_bh = q + bh * p.Tq * D;
  const T* k_bh = k + (b * p.Hkv + hk) * p.Tk * D;
  const T* v_bh = v + (b * p.Hkv + hk) * p.Tk * D;

  flash::load_rows<T, D, kTile, kLd>(sQ, q_bh, i0, p.Tq);
  for (int e = tid; e < kTile * kLdAcc; e += kThreads) sO[e] = 0.f;
  for (int r = tid; r < kTile; r += kThreads) row_m[r] = kNegInf, row_l[r] = 0.f;
  // Keys [0, key_end) are seen by some row of this tile (the last row sees the most).
  const int64_t last_row = (i0 + kTile < p.Tq ? i0 + kTile : p.Tq) - 1;
  const int64_t key_end = p.visible(last_row);
  __syncthreads();

  for (int64_t j0 = 0; j0 < key_end; j0 += kTile) {
    flash::load_rows<T, D, kTile, kLd>(sK, k_bh, j0, p.Tk);
    flash::load_rows<T, D, kTile, kLd>(sV, v_bh, j0, p.Tk);
    for (int c = tid; c < kTile; c += kThreads) {
      bias[c] = j0 + c < p.Tk ? flash::key_bias<T>(p, b, j0 + c) : 0.f;
    }
    __syncthreads();
    flash::tile_mma<T, false, true, kTile, kTile, D>(sQ, kLd, sK, kLd, sS, kLdS, false);
    __syncthreads();
    // Online softmax; warp w owns rows w, w + kWarps, ... (warp-uniform branches only).
    for (int r = warp; r < kTile; r += kWarps) {
      const int64_t i = i0 + r;
      const int64_t visible = i < p.Tq ? p.visible(i) : 0;
      float s[kTile / 32];
      float tile_max = kNegInf;
#pragma unroll
      for (int t = 0; t < kTile / 32; ++t) {
        const int c = lane + 32 * t;
        s[t] = j0 + c < visible ? sS[r * kLdS + c] * p.scale + bias[c] : kNegInf;
        tile_max = fmaxf(tile_max, s[t]);
      }
      tile_max = flash::warp_max(tile_max);
      const float m_old = row_m[r];
      const float m_new = fmaxf(m_old, tile_max);
      float sum = 0.f;
#pragma unroll
      for (int t = 0; t < kTile / 32; ++t) {
        const float pr = m_new == kNegInf ? 0.f : expf(s[t] - m_new);  // exp(-inf) = 0
        sP[r * kLdP + lane + 32 * t] = convert<T>(pr);
        sum += pr;
      }
      sum = flash::warp_sum(sum);
      const float correction = m_new == kNegInf ? 1.f : expf(m_old - m_new);
      for (int d = lane; d < D; d += 32) sO[r * kLdAcc + d] *= correction;
      __syncwarp();  // every lane has read row_m[r] before lane 0 overwrites it
      if (lane == 0) {
        row_m[r] = m_new;
        row_l[r] = row_l[r] * correction + sum;
      }
    }
    __syncthreads();
    flash::tile_mma<T, false, false, kTile, D, kTile>(sP, kLdP, sV, kLd, sO, kLdAcc, true);
    __syncthreads();
  }

  for (int r = warp; r < kTile; r += kWarps) {
    const int64_t i = i0 + r;
    if (i >= p.Tq) break;  // later rows of this warp are past Tq too
    const float m = row_m[r], l = row_l[r];
    const bool empty = m == kNegInf;  // sees no key, or only keys at -inf (then l = 0)
    const float inv = empty ? 0.f : 1.f / l;
    T* out_row = out + (bh * p.Tq + i) * D;
    for (int d = lane; d < D; d += 32) out_row[d] = convert<T>(sO[r * kLdAcc + d] * inv);
    if (lane == 0) lse[bh * p.Tq + i] = empty ? kNegInf : m + logf(l);
  }
}

template <typename T>
int64_t forward_bytes(int64_t D) {
  switch (D) {
    case 32: return ForwardLayout<T, 32>::kBytes;
    case 64: return ForwardLayout<T, 64>::kBytes;
    case 128: return ForwardLayout<T, 128>::kBytes;
    default: return 0;
  }
}

bool aligned16(const Tensor& t) {
  return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0;
}

template <typename T, int D>
void launch_forward(const Params& p, const Tensor& q, const Tensor& k, const Tensor& v,
                    const Tensor& out, const Tensor& lse) {
  using Tile = FlashTile<T, D, false>;
  const int64_t blocks = p.B * p.H * ((p.Tq + Tile::kTile - 1) / Tile::kTile);
  MNEMO_ASSERT(blocks <= int64_t(INT32_MAX), "attention: {} query tiles exceed the grid limit",
               blocks);
  constexpr int kBytes = ForwardLayout<T, D>::kBytes;
  MNEMO_CUDA_CHECK(cudaFuncSetAttribute(flash_forward_kernel<T, D>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, kBytes));
  flash_forward_kernel<T, D><<<unsigned(blocks), kThreads, kBytes, stream(q.device())>>>(
      p, static_cast<const T*>(q.data_ptr()), static_cast<const T*>(k.data_ptr()),
      static_cast<const T*>(v.data_ptr()), static_cast<T*>(out.data_ptr()),
      static_cast<float*>(lse.data_ptr()));
  MNEMO_CUDA_CHECK_LAUNCH("flash_forward_kernel");
}

}  // namespace

int64_t flash_forward_smem_bytes(DType dtype, int64_t D) {
  switch (dtype) {
    case DType::f32: return forward_bytes<float>(D);
    case DType::bf16: return forward_bytes<__nv_bfloat16>(D);
    case DType::f16: return forward_bytes<__half>(D);
    default: return 0;
  }
}

bool flash_attention_applies(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                             const Tensor& out, const Tensor& lse, const Tensor& dout,
                             bool backward) {
  const DType dtype = q.dtype();
  if (dtype != DType::f32 && dtype != DType::bf16 && dtype != DType::f16) return false;
  if (lse.dtype() != DType::f32 || !lse.is_contiguous()) return false;
  const int64_t D = q.size(3);
  if (k.size(3) != D || v.size(3) != D || (D != 32 && D != 64 && D != 128)) return false;
  for (const Tensor* t : {&q, &k, &v, &out, &dout}) {
    if (t->defined() && (t->dtype() != dtype || !t->is_contiguous() || !aligned16(*t))) {
      return false;
    }
  }
  // A key-padding bias: the same value for every head and query row.
  if (mask.defined() &&
      !((mask.size(1) == 1 || mask.stride(1) == 0) && (mask.size(2) == 1 || mask.stride(2) == 0))) {
    return false;
  }
  const int64_t bytes =
      backward ? flash_backward_smem_bytes(dtype, D) : flash_forward_smem_bytes(dtype, D);
  int limit = 0;
  MNEMO_CUDA_CHECK(
      cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, q.device().index));
  return bytes > 0 && bytes <= limit;
}

flash::Params flash_params(const Tensor& q, const Tensor& k, const Tensor& mask, bool causal,
                           double scale) {
  flash::Params p{};
  p.B = q.size(0);
  p.H = q.size(1);
  p.Hkv = k.size(1);
  p.Tq = q.size(2);
  p.Tk = k.size(2);
  p.group = p.H / p.Hkv;
  p.causal = causal;
  p.scale = float(scale);
  p.key_bias = mask.defined() ? mask.data_ptr() : nullptr;
  p.bias_sb = mask.defined() ? mask.stride(0) : 0;
  p.bias_sj = mask.defined() ? mask.stride(3) : 0;
  return p;
}

void flash_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                             bool causal, double scale, const Tensor& out, const Tensor& lse) {
  MNEMO_ASSERT(lse.dtype() == DType::f32 && lse.is_contiguous(),
               "attention: flash needs a contiguous f32 lse, got {}", lse.dtype());
  const flash::Params p = flash_params(q, k, mask, causal, scale);
  if (p.B * p.H * p.Tq == 0) return;
  visit_flash(q.dtype(), q.size(3), "attention", [&](auto tag, auto dim) {
    launch_forward<typename decltype(tag)::type, decltype(dim)::value>(p, q, k, v, out, lse);
  });
}

}  // namespace mnemo::cuda

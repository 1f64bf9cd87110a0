// Flash attention (FlashAttention-2) on the GPU: the entry points that cuda/attention.cu
// dispatches to, and the tile helpers that the forward (cuda/flash_attention_forward.cu) and
// backward (cuda/flash_attention_backward.cu) kernels share. Read those files' headers for the
// algorithms; this one holds the pieces:
//
//   FlashTile<T, D>   tile sizes (query rows x keys) and shared-memory layout per dtype, head dim
//   load_rows         a tile of rows of a contiguous (.., T, D) tensor into shared memory
//                     (16-byte vector loads; rows past T are zero)
//   tile_mma          C (f32, shared) = [C +] op(A) op(B) for shared tiles: tensor cores
//                     (nvcuda::wmma 16x16x16, f32 accumulation) for bf16/f16, FMA for f32
//
// Applies (flash_attention_applies) when q, k, v, out share one of f32, bf16, f16; D == Dv in
// {32, 64, 128}; every tensor is contiguous and 16-byte aligned; the mask is undefined or a
// key-padding bias (a (B, H, Tq, Tk) view whose H and Tq strides are 0, i.e. (B, 1, 1, Tk)
// broadcast); and the tiles' shared memory fits the device. Anything else runs the reference
// kernels of cuda/attention.cu.
#pragma once

#include <cuda_runtime.h>
#include <mma.h>

#include <cstdint>
#include <type_traits>

#include "core/error.h"
#include "core/tensor.h"
#include "cuda/kernel_common.cuh"

namespace mnemo::cuda {

// Whether the flash kernels handle these arguments (see the header above). dout, when
// defined, is checked too (backward); lse must be contiguous f32.
bool flash_attention_applies(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                             const Tensor& out, const Tensor& lse, const Tensor& dout,
                             bool backward);

void flash_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                             bool causal, double scale, const Tensor& out, const Tensor& lse);

void flash_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                              bool causal, double scale, const Tensor& out, const Tensor& lse,
                              const Tensor& dout, const Tensor& dq, const Tensor& dk,
                              const Tensor& dv);

// Shared-memory bytes the forward / backward kernels need for dtype and head dim D (0 when the
// flash kernels do not handle them).
int64_t flash_forward_smem_bytes(DType dtype, int64_t D);
int64_t flash_backward_smem_bytes(DType dtype, int64_t D);

// Calls fn(TypeTag<T>{}, std::integral_constant<int, D>{}) with T the element type of dtype
// and D the head dim, for what the flash kernels are built for: f32 (unless kHalfOnly, as for
// the mma.sync kernels), bf16 and f16; D in {32, 64, 128}. Anything else is an InternalError
// naming op: the kernel choice of cuda/attention.cu never sends it here.
template <bool kHalfOnly = false, typename Fn>
void visit_flash(DType dtype, int64_t D, const char* op, Fn&& fn) {
  const auto with_dim = [&](auto tag) {
    switch (D) {
      case 32: return fn(tag, std::integral_constant<int, 32>{});
      case 64: return fn(tag, std::integral_constant<int, 64>{});
      case 128: return fn(tag, std::integral_constant<int, 128>{});
      default: fail_internal("{}: the flash kernels take head dims 32, 64, 128, got {}", op, D);
    }
  };
  switch (dtype) {
    case DType::f32:
      if constexpr (!kHalfOnly) return with_dim(TypeTag<float>{});
      break;
    case DType::bf16: return with_dim(TypeTag<__nv_bfloat16>{});
    case DType::f16: return with_dim(TypeTag<__half>{});
    default: break;
  }
  fail_internal("{}: the flash kernels take {}, got {}", op,
                kHalfOnly ? "bf16 or f16" : "f32, bf16 or f16", dtype);
}

namespace flash {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;

// Problem sizes and per-call constants, passed by value to every kernel.
struct Params {
  int64_t B, H, Hkv, Tq, Tk;
  int64_t group;  // H / Hkv
  bool causal;
  float scale;
  // Key-padding bias (in q's dtype): key_bias[b * bias_sb + j * bias_sj], or null.
  const void* key_bias;
  int64_t bias_sb, bias_sj;

  // Query i sees keys [0, visible(i)).
  __device__ int64_t visible(int64_t i) const {
    if (!causal) return Tk;
    const int64_t v = i + 1 + Tk - Tq;
    return v < 0 ? 0 : (v > Tk ? Tk : v);
  }
  // The first query row that sees key j.
  __device__ int64_t first_query(int64_t j) const {
    if (!causal) return 0;
    const int64_t i = j - (Tk - Tq);
    return i < 0 ? 0 : i;
  }
};

// Tile sizes: kTile query rows x kTile keys in both directions. Rows of T in shared memory
// are padded by 8 elements (16 bytes), f32 rows by 4: wmma needs a leading dimension that is a
// multiple of 16 bytes, and the padding spreads a column's elements over banks.
template <typename T, int D, bool kBackward>
struct FlashTile {
  // f32 at D = 128 and bf16/f16 backward at D = 128 would need more than the 227 KiB an H100
  // block may use with 64-row tiles.
  static constexpr int kTile = (D == 128 && (sizeof(T) == 4 || kBackward)) ? 32 : 64;
  static constexpr int kLd = D + 8;       // a row of a Q, K, V, dO tile (elements of T)
  static constexpr int kLdS = kTile + 4;  // a row of an f32 score tile
  static constexpr int kLdP = kTile + 8;  // a row of a P or dS tile (elements of T)
  static constexpr int kLdAcc = D + 4;    // a row of an f32 accumulator (O, dQ, dK, dV)
  static constexpr int kRowTile = kTile * kLd * int(sizeof(T));
  static constexpr int kScoreTile = kTile * kLdS * 4;
  static constexpr int kPTile = kTile * kLdP * int(sizeof(T));
  static constexpr int kAccTile = kTile * kLdAcc * 4;
};

// Offsets are rounded up to 128 bytes so every buffer starts 32-byte aligned (wmma).
__host__ __device__ constexpr int align128(int bytes) {
  return (bytes + 127) / 128 * 128;
}

// Rows [row0, row0 + kRows) of a contiguous (rows, D) matrix `src` (rows total) into the
// shared tile dst (leading dimension ld elements), zero past the end. 16-byte vector loads:
// D * sizeof(T) is a multiple of 64 bytes and src is 16-byte aligned (checked by the caller).
template <typename T, int D, int kRows, int kLd>
__device__ __forceinline__ void load_rows(T* dst, const T* src, int64_t row0, int64_t rows) {
  constexpr int kVec = 16 / int(sizeof(T));  // elements per 16-byte chunk
  constexpr int kChunksPerRow = D / kVec;
  for (int c = int(threadIdx.x); c < kRows * kChunksPerRow; c += kThreads) {
    const int r = c / kChunksPerRow, e = (c % kChunksPerRow) * kVec;
    uint4 value = make_uint4(0, 0, 0, 0);
    if (row0 + r < rows) value = *reinterpret_cast<const uint4*>(src + (row0 + r) * D + e);
    // kLd * sizeof(T) is a multiple of 16 bytes and e a multiple of kVec: aligned.
    *reinterpret_cast<uint4*>(dst + r * kLd + e) = value;
  }
}

// C[m][n] = (accumulate ? C[m][n] : 0) + sum_k A(m, k) B(k, n) for m < M, n < N, k < K, with
//   A(m, k) = kTransA ? A[k * lda + m] : A[m * lda + k],
//   B(k, n) = kTransB ? B[n * ldb + k] : B[k * ldb + n].
// All operands in shared memory, C in f32. Called by the whole block between __syncthreads.
// bf16/f16: each warp takes 16x16 output tiles (tile t = warp, warp + kWarps, ...) and runs
// wmma m16n16k16 with f32 accumulation over k in order. f32: each thread takes output elements
// (e = thread, thread + kThreads, ...) and sums over k in order with FMA. Either way each
// output is computed by one thread/warp in a fixed order: deterministic.
template <typename T, bool kTransA, bool kTransB, int M, int N, int K>
__device__ __forceinline__ void tile_mma(const T* A, int lda, const T* B, int ldb, float* C,
                                         int ldc, bool accumulate) {
  static_assert(M % 16 == 0 && N % 16 == 0 && K % 16 == 0, "tile_mma: 16-multiple tiles");
  if constexpr (std::is_same_v<T, float>) {
    for (int e = int(threadIdx.x); e < M * N; e += kThreads) {
      const int m = e / N, n = e % N;
      float sum = accumulate ? C[m * ldc + n] : 0.f;
#pragma unroll 16
      for (int k = 0; k < K; ++k) {
        const float a = kTransA ? A[k * lda + m] : A[m * lda + k];
        const float b = kTransB ? B[n * ldb + k] : B[k * ldb + n];
        sum = fmaf(a, b, sum);
      }
      C[m * ldc + n] = sum;
    }
  } else {
    namespace wmma = nvcuda::wmma;
    using LayoutA = std::conditional_t<kTransA, wmma::col_major, wmma::row_major>;
    using LayoutB = std::conditional_t<kTransB, wmma::col_major, wmma::row_major>;
    const int warp = int(threadIdx.x) / 32;
    constexpr int kTilesN = N / 16;
    for (int t = warp; t < (M / 16) * kTilesN; t += kWarps) {
      const int m0 = (t / kTilesN) * 16, n0 = (t % kTilesN) * 16;
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
      if (accumulate) {
        wmma::load_matrix_sync(c, C + m0 * ldc + n0, unsigned(ldc), wmma::mem_row_major);
      } else {
        wmma::fill_fragment(c, 0.f);
      }
#pragma unroll
      for (int k0 = 0; k0 < K; k0 += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, LayoutA> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, LayoutB> b;
        // Element (m, k) of a col-major A sits at A[k * lda + m]: the tile starts at
        // A + k0 * lda + m0. Likewise for B.
        wmma::load_matrix_sync(a, kTransA ? A + k0 * lda + m0 : A + m0 * lda + k0, unsigned(lda));
        wmma::load_matrix_sync(b, kTransB ? B + n0 * ldb + k0 : B + k0 * ldb + n0, unsigned(ldb));
        wmma::mma_sync(c, a, b, c);
      }
      wmma::store_matrix_sync(C + m0 * ldc + n0, c, unsigned(ldc), wmma::mem_row_major);
    }
  }
}

__device__ __forceinline__ float warp_max(float x) {
  for (int offset = 16; offset > 0; offset /= 2)
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
  return x;
}
__device__ __forceinline__ float warp_sum(float x) {
  for (int offset = 16; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

// The key-padding bias of key j (0 without a mask); j < Tk.
template <typename T>
__device__ __forceinline__ float key_bias(const Params& p, int64_t b, int64_t j) {
  if (p.key_bias == nullptr) return 0.f;
  return float(load(static_cast<const T*>(p.key_bias) + b * p.bias_sb + j * p.bias_sj));
}

}  // namespace flash

// The kernels' Params for these (already checked) arguments (cuda/flash_attention_forward.cu).
flash::Params flash_params(const Tensor& q, const Tensor& k, const Tensor& mask, bool causal,
                           double scale);

}  // namespace mnemo::cuda

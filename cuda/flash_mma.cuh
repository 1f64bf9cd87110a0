// Register-level building blocks of the mma.sync flash attention kernels
// (cuda/flash_mma_forward.cu, cuda/flash_mma_backward.cu), and their host entry points.
// sm_80 instructions (they run on sm_90 too): no wgmma, no TMA.
//
//   mma_16816<T>        D = A B + D, m16n8k16, A/B in bf16 or f16, f32 accumulators
//   ldmatrix_x4[_trans] four 8x8 b16 matrices from shared memory into fragments
//   cp_async_16         16-byte global -> shared copy (cp.async.cg, zero-fill when !valid);
//                       cp_async_commit / cp_async_wait<N> group them
//   Swizzle<D>          the shared layout of a (rows, D) tile: 16-byte chunks of a row are
//                       permuted by the row's low bits so 8 consecutive rows at one logical
//                       chunk hit 8 different bank groups (ldmatrix and the cp.async stores
//                       are conflict-free; no padding)
//   load_tile_async     rows [row0, row0 + kRows) of a (rows, D) matrix into a swizzled tile
//
// Fragment layouts (PTX ISA, "mma.m16n8k16"; g = lane / 4, t = lane % 4; a register holds
// two 16-bit values, the lower column index in the low half):
//   A (16 x 16, row-major) a0: (g, 2t..2t+1)  a1: (g+8, 2t..)  a2: (g, 2t+8..)  a3: (g+8, 2t+8..)
//   B (16 x 8, k x n)      b0: (k 2t..2t+1, n g)              b1: (k 2t+8..2t+9, n g)
//   C (16 x 8, f32)        c0, c1: (g, 2t), (g, 2t+1)         c2, c3: (g+8, 2t), (g+8, 2t+1)
// So the C fragments of two adjacent n8 blocks, packed pairwise to 16 bits, are exactly the A
// fragment of one k16 step: the FA2 register trick (P never leaves registers).
//
// ldmatrix.x4: lanes 8i..8i+7 give the row addresses of matrix i; each lane receives, per
// matrix, the pair at (row g, cols 2t..2t+1) (or with .trans the pair at (rows 2t..2t+1,
// col g)). The address helpers below pick rows/chunks so that the four matrices are the four
// registers of an A fragment, or the (b0, b1) of two adjacent n8 blocks of a B fragment.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "core/tensor.h"
#include "cuda/flash_attention.cuh"
#include "cuda/flash_mma.h"

namespace mnemo::cuda {

// Whether the mma kernels take these (already flash-checked, see flash_attention_applies)
// arguments: bf16/f16, D in {32, 64, 128}, shared memory within the device's limit.
bool flash_mma_applies(const Tensor& q, bool backward);

void flash_mma_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                       bool causal, double scale, const Tensor& out, const Tensor& lse);

void flash_mma_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                        bool causal, double scale, const Tensor& out, const Tensor& lse,
                        const Tensor& dout, const Tensor& dq, const Tensor& dk, const Tensor& dv);

// Shared-memory bytes of the kernels for (dtype, D); 0 when they do not handle them.
int64_t flash_mma_forward_smem_bytes(DType dtype, int64_t D);
int64_t flash_mma_backward_smem_bytes(DType dtype, int64_t D);

// Counted by the launchers (flash_mma.h).
void count_flash_mma_forward();
void count_flash_mma_backward();

namespace fmma {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return uint32_t(__cvta_generic_to_shared(p));
}

template <typename T>
__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                          uint32_t b1) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    static_assert(std::is_same_v<T, __half>, "mma_16816: bf16 or f16");
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// 16 bytes from global src to shared dst; when !valid nothing is read and dst gets zeros
// (src must still be a valid address: pass the matrix base).
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, bool valid) {
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(src_bytes)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// c0 (n8 block n0) and c1 (block n0 + 8) += a @ the two B fragments that one ldmatrix reads
// at b_addr: B(k, n) = tile[n][k] (b_frag_addr), or with kTrans B(k, n) = tile[k][n]
// (ldmatrix.trans, bt_frag_addr).
template <typename T, bool kTrans = false>
__device__ __forceinline__ void mma_x2(float (&c0)[4], float (&c1)[4], const uint32_t (&a)[4],
                                       uint32_t b_addr) {
  uint32_t bf[4];
  if constexpr (kTrans) {
    ldmatrix_x4_trans(bf, b_addr);
  } else {
    ldmatrix_x4(bf, b_addr);
  }
  mma_16816<T>(c0, a, bf[0], bf[1]);
  mma_16816<T>(c1, a, bf[2], bf[3]);
}

// Sets N f32 C fragments to 0.
template <int N>
__device__ __forceinline__ void zero_frags(float (&c)[N][4]) {
#pragma unroll
  for (int nb = 0; nb < N; ++nb) c[nb][0] = c[nb][1] = c[nb][2] = c[nb][3] = 0.f;
}

// Two floats rounded to T and packed into one register, lo in the low half.
template <typename T>
__device__ __forceinline__ uint32_t pack(float lo, float hi) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
  } else {
    const __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
  }
}

// Shared layout of a (rows, D) tile of 16-bit elements: row r's logical 16-byte chunk c
// (elements 8c..8c+7) is stored at chunk c ^ f(r) of row r, f(r) = r % 8 when a row has >= 8
// chunks (D >= 64: rows of 128 or 256 bytes, all starting on bank 0), (r / 2) % 4 when it has
// 4 (D = 32: two 64-byte rows share the 32 banks). Either way the 8 rows r0..r0+7 (r0 % 8 ==
// 0) of an 8x8 ldmatrix read at one logical chunk land in 8 distinct 16-byte bank groups.
template <int D>
struct Swizzle {
  static_assert(D == 32 || D == 64 || D == 128, "Swizzle: D in {32, 64, 128}");
  static constexpr int kChunks = D / 8;
  // Element offset of (row, logical chunk) in the tile.
  __device__ static __forceinline__ int offset(int row, int chunk) {
    const int phys = kChunks >= 8 ? (chunk ^ (row & 7)) : (chunk ^ ((row >> 1) & 3));
    return row * D + phys * 8;
  }
};

// Rows [row0, row0 + kRows) of the contiguous (rows, D) matrix src into the swizzled tile dst
// with cp.async (one 16-byte chunk per thread and step); rows past `rows` are zero-filled (a
// masked score times a garbage NaN would poison the products). The caller commits the group.
template <typename T, int D, int kRows, int kThreads>
__device__ __forceinline__ void load_tile_async(T* dst, const T* src, int64_t row0, int64_t rows) {
  static_assert(sizeof(T) == 2, "load_tile_async: 16-bit elements");
  constexpr int kChunks = D / 8;
#pragma unroll
  for (int idx = int(threadIdx.x); idx < kRows * kChunks; idx += kThreads) {
    const int r = idx / kChunks, c = idx % kChunks;
    const bool valid = row0 + r < rows;
    const T* from = valid ? src + (row0 + r) * D + c * 8 : src;
    cp_async_16(smem_u32(dst + Swizzle<D>::offset(r, c)), from, valid);
  }
}

// ldmatrix address (bytes, shared) of this lane for the A fragment of rows [row0, row0 + 16),
// k columns [16 kk, 16 kk + 16) of a swizzled (.., D) tile.
template <int D>
__device__ __forceinline__ uint32_t a_frag_addr(uint32_t tile, int row0, int kk, int lane) {
  return tile + 2u * uint32_t(Swizzle<D>::offset(row0 + (lane & 15), 2 * kk + (lane >> 4)));
}

// ldmatrix (non-trans) address for B fragments with B(k, n) = tile[n][k]: n rows [n0, n0 +
// 16) of the tile (two n8 blocks), k columns [16 kk, 16 kk + 16). Registers 0, 1: (b0, b1) of
// block n0; 2, 3: of block n0 + 8.
template <int D>
__device__ __forceinline__ uint32_t b_frag_addr(uint32_t tile, int n0, int kk, int lane) {
  const int row = n0 + (lane & 7) + ((lane >> 4) << 3);
  const int chunk = 2 * kk + ((lane >> 3) & 1);
  return tile + 2u * uint32_t(Swizzle<D>::offset(row, chunk));
}

// ldmatrix.trans address for B fragments with B(k, n) = tile[k][n]: k rows [k0, k0 + 16),
// n columns [16 nn, 16 nn + 16) (two n8 blocks). Registers 0, 1: (b0, b1) of block 2 nn;
// 2, 3: of block 2 nn + 1.
template <int D>
__device__ __forceinline__ uint32_t bt_frag_addr(uint32_t tile, int k0, int nn, int lane) {
  const int row = k0 + (lane & 7) + (((lane >> 3) & 1) << 3);
  const int chunk = 2 * nn + (lane >> 4);
  return tile + 2u * uint32_t(Swizzle<D>::offset(row, chunk));
}

// The A fragment of k16 step kk made of the C fragments (f32) of n8 blocks 2 kk and 2 kk + 1.
template <typename T>
__device__ __forceinline__ void c_to_a(uint32_t (&a)[4], const float (&c0)[4],
                                       const float (&c1)[4]) {
  a[0] = pack<T>(c0[0], c0[1]);
  a[1] = pack<T>(c0[2], c0[3]);
  a[2] = pack<T>(c1[0], c1[1]);
  a[3] = pack<T>(c1[2], c1[3]);
}

// Stores a warp's 16 x D f32 accumulator (C fragments acc[D / 8][4]) as rows [row0, row0 + 16)
// of the contiguous (rows, D) matrix dst in T; rows >= rows are skipped. 4-byte stores.
template <typename T, int D>
__device__ __forceinline__ void store_acc(T* dst, const float (&acc)[D / 8][4], int64_t row0,
                                          int64_t rows, int lane) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int64_t row = row0 + g + 8 * half;
    if (row >= rows) continue;
    T* out = dst + row * D + 2 * t;
#pragma unroll
    for (int nb = 0; nb < D / 8; ++nb) {
      *reinterpret_cast<uint32_t*>(out + nb * 8) =
          pack<T>(acc[nb][2 * half], acc[nb][2 * half + 1]);
    }
  }
}

// The query tile that a CTA of the forward or the dq kernel owns, and the key tiles its rows
// see. CTAs take the (b, h) heads and their query tiles of kM rows, the last tiles of a head
// first (causal: those see the most keys, so the long CTAs start early). The rows see keys
// [0, visible(last row)): n_tiles tiles of kN keys of kv head hk.
template <typename T, int D, int kM, int kN, int kThreads>
struct QueryTile {
  int64_t bh, b, i0, n_tiles;
  const T* k_bh;  // kv head hk's keys and values, (Tk, D) each
  const T* v_bh;

  __device__ QueryTile(const flash::Params& p, const T* k, const T* v) {
    const int64_t q_tiles = (p.Tq + kM - 1) / kM;
    const int64_t qt = q_tiles - 1 - int64_t(blockIdx.x) % q_tiles;
    bh = int64_t(blockIdx.x) / q_tiles;
    b = bh / p.H;
    const int64_t hk = bh % p.H / p.group;
    i0 = qt * kM;
    k_bh = k + (b * p.Hkv + hk) * p.Tk * D;
    v_bh = v + (b * p.Hkv + hk) * p.Tk * D;
    const int64_t last_row = (i0 + kM < p.Tq ? i0 + kM : p.Tq) - 1;
    n_tiles = (p.visible(last_row) + kN - 1) / kN;
  }

  // Issues the loads of key tile `tile` into buffer `stage` of sK, sV (kN x D each, by
  // cp.async) and sBias (kN floats, the key bias in log2 units, by plain stores: visible
  // after the next __syncthreads).
  __device__ void load_kv(const flash::Params& p, int64_t tile, int stage, T* sK, T* sV,
                          float* sBias) const {
    const int64_t j0 = tile * kN;
    load_tile_async<T, D, kN, kThreads>(sK + stage * kN * D, k_bh, j0, p.Tk);
    load_tile_async<T, D, kN, kThreads>(sV + stage * kN * D, v_bh, j0, p.Tk);
    if (p.key_bias != nullptr) {
      for (int c = int(threadIdx.x); c < kN; c += kThreads) {
        sBias[stage * kN + c] = j0 + c < p.Tk ? flash::key_bias<T>(p, b, j0 + c) * kLog2e : 0.f;
      }
    }
  }
};

// Masks in 32-bit compares. Query `row` sees key j iff j < Tk and (!causal or j <= row + Tk -
// Tq). For the key tile [j0, j0 + kN): row sees the columns c <= the returned value (in [-1,
// kN - 1]: -1 none, kN - 1 all).
__device__ __forceinline__ int visible_last_col(const flash::Params& p, int64_t row, int64_t j0,
                                                int kN) {
  int64_t last = p.Tk - 1 - j0;
  const int64_t diagonal = row + p.Tk - p.Tq - j0;
  if (p.causal && diagonal < last) last = diagonal;
  return last < -1 ? -1 : (last > kN - 1 ? kN - 1 : int(last));
}

// For the query tile [i0, i0 + kM): key j is seen by the columns c >= the returned value (in
// [0, kM]: kM none).
__device__ __forceinline__ int seen_first_col(const flash::Params& p, int64_t j, int64_t i0,
                                              int kM) {
  if (j >= p.Tk) return kM;
  if (!p.causal) return 0;
  const int64_t first = j - (p.Tk - p.Tq) - i0;  // rows i >= j - (Tk - Tq) see j
  return first < 0 ? 0 : (first > kM ? kM : int(first));
}

}  // namespace fmma

}  // namespace mnemo::cuda

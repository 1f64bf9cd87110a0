// mnemo's f32 GEMM (see gemm_f32.h for the contract): Goto/BLIS blocking with a 6x16
// AVX2/FMA micro-kernel.
//
// ---- Algorithm ----
//   for each block of nc columns (all N when K x N packed floats fit 2 MiB):
//     pack b[:, n block] into 16-column panels (kc x 16 floats, k-major), per k block
//     for each block of kMc rows:
//       for each block of kKc rows of b (the K dimension, in order):
//         pack a[m block, k block] into 6-row panels (kc x 6)
//         for each 16-column panel of b (stays in L1: 16 KiB at kc = 256):
//           for each 6-row panel of a (the a block stays in L2):
//             c tile (6 x 16) = (first k block and not accumulating ? 0 : c tile)
//                               + a panel @ b panel
// The micro-kernel keeps the 6 x 16 tile in 12 ymm accumulators; each k step loads two
// vectors of b, broadcasts six scalars of a and issues 12 FMAs. Panels are padded with zeros
// at the matrix edges, and edge tiles go through a 6 x 16 scratch tile, so one kernel serves
// every shape and each element is computed by the same FMA chain wherever it lies.
//
// The k blocks run innermost so that the c block (kMc x nc) stays in cache while its sums
// go round (for dX = dY @ W with N = 128, K = 768 that halved the traffic to memory).
// FLOPs: 2*M*N*K. Floats packed: K*N (b) plus M*K (a) once per column block.
//
// ---- Measured (bench/bench_core.cpp llama_gemms; per product in core/cpu/matmul.cpp) ----
// One thread of a 2-core AMD EPYC (Zen 4) VM: 94-108 GFLOP/s on the forward and dX products
// of the demo step (at most 32 FLOP/cycle with two 256-bit FMA pipes: near the peak), 75-96
// on the dW = dY^T @ X ones, where packing 2048-deep panels is a larger share. The packing
// loops are where the operands are first read from memory; vectorising them (in-register
// 8 x 8 transposes for row-major a and column-major b, wide copies otherwise) took the
// per-step total from 0.99-1.01x OpenBLAS's time to 1.05-1.07x faster (113-123 -> 111-119
// ms on a loaded machine), packing now ~14% of the GEMM samples. Tried and dropped (no gain
// measured): reading full 6-row panels of a in place instead of packing them (slower: six strided
// streams in the kernel), and packing rows of b whole instead of panel by panel.
#include "core/cpu/gemm_f32.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string_view>

#include "core/error.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define MNEMO_GEMM_F32_AVX2 1
#endif

namespace mnemo::cpu {

bool use_own_f32_gemm() {
  static const bool use = [] {
    const char* choice = std::getenv("MNEMO_CPU_GEMM");
    return gemm_f32_available() && !(choice != nullptr && std::string_view(choice) == "eigen");
  }();
  return use;
}

#if MNEMO_GEMM_F32_AVX2

namespace {

constexpr int64_t kMr = 6;    // rows of a micro-tile
constexpr int64_t kNr = 16;   // columns of a micro-tile (two ymm vectors)
constexpr int64_t kKc = 256;  // depth of a block: a 16-column b panel is 16 KiB (L1)
constexpr int64_t kMc = 96;   // rows of an a block: 96 KiB packed (L2)
constexpr int64_t kPackedB = int64_t(1) << 19;  // floats of packed b per column block (2 MiB)

// A 64-byte aligned scratch buffer per thread, grown on demand.
struct Buffer {
  std::unique_ptr<float, decltype(&std::free)> data{nullptr, &std::free};
  int64_t capacity = 0;
  float* get(int64_t n) {
    if (n > capacity) {
      const int64_t bytes = (n * int64_t(sizeof(float)) + 63) / 64 * 64;
      data.reset(static_cast<float*>(std::aligned_alloc(64, size_t(bytes))));
      capacity = data ? n : 0;
      if (data == nullptr) {
        fail_system("matmul: out of memory allocating a {}-byte packing buffer", bytes);
      }
    }
    return data.get();
  }
};

// In-register transpose of an 8 x 8 block: on return r[k] lane j holds the old r[j] lane k.
inline void transpose_8x8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20), r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20), r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31), r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31), r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// 8 consecutive k of `rows` rows of row-major a (rows < kRows are zero) into a panel's 8
// groups of 6, as pack_a describes; kRows = kMr is the common case, compiled without the
// per-row tests.
template <int64_t kRows>
inline void pack_a_8k(const float* src, int64_t rs, int64_t rows, float* out, bool last) {
  __m256 v[8];
  for (int64_t r = 0; r < 8; ++r) {
    const bool present = kRows == kMr ? r < kMr : r < rows;
    v[r] = present ? _mm256_loadu_ps(src + r * rs) : _mm256_setzero_ps();
  }
  transpose_8x8(v);
  for (int64_t k = 0; k < 7; ++k) _mm256_storeu_ps(out + k * kMr, v[k]);
  if (!last) {
    _mm256_storeu_ps(out + 7 * kMr, v[7]);  // spills 2 floats into the next group
  } else {
    _mm256_maskstore_ps(out + 7 * kMr, _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0), v[7]);
  }
}

// Packs a[i0 : i0+mc, p0 : p0+kc] into ceil(mc/6) panels, panel p holding rows 6p..6p+5:
// dst[p*kc*6 + k*6 + r] = a(i0 + 6p + r, p0 + k), zero past the last row.
// Row-major a (cs = 1): 8 consecutive k of each row are loaded as one vector (missing rows
// are zero vectors) and transposed in registers; column k of the 8 x 8 block is the panel's
// k-th group of 6 (plus 2 lanes of garbage, overwritten by the next store, or left out by a
// masked store at the panel's end). Column-major a (rs = 1, a transposed activation in
// dW = dY^T @ X): each k is 6 contiguous floats, one 24-byte copy. (Running k outermost
// over all panels of the block, for one contiguous read per k, measured no different.)
void pack_a(int64_t mc, int64_t kc, const float* a, int64_t rs, int64_t cs, float* dst) {
  for (int64_t i = 0; i < mc; i += kMr) {
    const int64_t rows = std::min(kMr, mc - i);
    float* panel = dst + i * kc;
    int64_t k0 = 0;
    if (cs == 1) {
      const float* src = a + i * rs;
      for (; k0 + 8 <= kc; k0 += 8) {
        const bool last = k0 + 8 == kc;
        if (rows == kMr) {
          pack_a_8k<kMr>(src + k0, rs, rows, panel + k0 * kMr, last);
        } else {
          pack_a_8k<0>(src + k0, rs, rows, panel + k0 * kMr, last);
        }
      }
    } else if (rs == 1 && rows == kMr) {
      for (; k0 < kc; ++k0) std::memcpy(panel + k0 * kMr, a + i + k0 * cs, sizeof(float) * kMr);
    }
    for (int64_t k = k0; k < kc; ++k) {  // any other stride, edges, and the tail of K
      const float* src = a + i * rs + k * cs;
      for (int64_t r = 0; r < rows; ++r) panel[k * kMr + r] = src[r * rs];
      for (int64_t r = rows; r < kMr; ++r) panel[k * kMr + r] = 0.0f;
    }
  }
}

// Packs b[p0 : p0+kc, j0 : j0+nc] into ceil(nc/16) panels, panel p holding columns
// 16p..16p+15: dst[p*kc*16 + k*16 + j] = b(p0 + k, j0 + 16p + j), zero past the last column.
// Row-major b (cs = 1): two vector copies per k. Column-major b (rs = 1, a transposed weight
// in Y = X @ W^T): 8 consecutive k of each of the 16 columns (missing columns are zero
// vectors) make two 8 x 8 blocks, transposed in registers into 8 rows of 16.
void pack_b(int64_t kc, int64_t nc, const float* b, int64_t rs, int64_t cs, float* dst) {
  for (int64_t j = 0; j < nc; j += kNr) {
    const int64_t cols = std::min(kNr, nc - j);
    float* panel = dst + j * kc;
    int64_t k0 = 0;
    if (cs == 1 && cols == kNr) {
      const float* src = b + j;
      for (; k0 < kc; ++k0) {
        _mm256_store_ps(panel + k0 * kNr, _mm256_loadu_ps(src + k0 * rs));
        _mm256_store_ps(panel + k0 * kNr + 8, _mm256_loadu_ps(src + k0 * rs + 8));
      }
    } else if (rs == 1 && cs != 1) {
      const float* src = b + j * cs;
      for (; k0 + 8 <= kc; k0 += 8) {
        __m256 lo[8], hi[8];
        for (int64_t c = 0; c < 8; ++c) {
          lo[c] = c < cols ? _mm256_loadu_ps(src + c * cs + k0) : _mm256_setzero_ps();
          hi[c] = c + 8 < cols ? _mm256_loadu_ps(src + (c + 8) * cs + k0) : _mm256_setzero_ps();
        }
        transpose_8x8(lo);
        transpose_8x8(hi);
        for (int64_t k = 0; k < 8; ++k) {
          _mm256_store_ps(panel + (k0 + k) * kNr, lo[k]);
          _mm256_store_ps(panel + (k0 + k) * kNr + 8, hi[k]);
        }
      }
    }
    for (int64_t k = k0; k < kc; ++k) {  // any other stride, edges, and the tail of K
      for (int64_t c = 0; c < cols; ++c) panel[k * kNr + c] = b[k * rs + (j + c) * cs];
      for (int64_t c = cols; c < kNr; ++c) panel[k * kNr + c] = 0.0f;
    }
  }
}

// c (6 x 16, leading dimension ldc) = (accumulate ? c : 0) + a_panel (6 x kc) @ b_panel.
void kernel_6x16(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                 bool accumulate) {
  __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
  if (accumulate) {
    c00 = _mm256_loadu_ps(c + 0 * ldc), c01 = _mm256_loadu_ps(c + 0 * ldc + 8);
    c10 = _mm256_loadu_ps(c + 1 * ldc), c11 = _mm256_loadu_ps(c + 1 * ldc + 8);
    c20 = _mm256_loadu_ps(c + 2 * ldc), c21 = _mm256_loadu_ps(c + 2 * ldc + 8);
    c30 = _mm256_loadu_ps(c + 3 * ldc), c31 = _mm256_loadu_ps(c + 3 * ldc + 8);
    c40 = _mm256_loadu_ps(c + 4 * ldc), c41 = _mm256_loadu_ps(c + 4 * ldc + 8);
    c50 = _mm256_loadu_ps(c + 5 * ldc), c51 = _mm256_loadu_ps(c + 5 * ldc + 8);
  } else {
    c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
  }
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
    __m256 x = _mm256_broadcast_ss(a + 0);
    c00 = _mm256_fmadd_ps(x, b0, c00), c01 = _mm256_fmadd_ps(x, b1, c01);
    x = _mm256_broadcast_ss(a + 1);
    c10 = _mm256_fmadd_ps(x, b0, c10), c11 = _mm256_fmadd_ps(x, b1, c11);
    x = _mm256_broadcast_ss(a + 2);
    c20 = _mm256_fmadd_ps(x, b0, c20), c21 = _mm256_fmadd_ps(x, b1, c21);
    x = _mm256_broadcast_ss(a + 3);
    c30 = _mm256_fmadd_ps(x, b0, c30), c31 = _mm256_fmadd_ps(x, b1, c31);
    x = _mm256_broadcast_ss(a + 4);
    c40 = _mm256_fmadd_ps(x, b0, c40), c41 = _mm256_fmadd_ps(x, b1, c41);
    x = _mm256_broadcast_ss(a + 5);
    c50 = _mm256_fmadd_ps(x, b0, c50), c51 = _mm256_fmadd_ps(x, b1, c51);
    a += kMr;
    b += kNr;
  }
  _mm256_storeu_ps(c + 0 * ldc, c00), _mm256_storeu_ps(c + 0 * ldc + 8, c01);
  _mm256_storeu_ps(c + 1 * ldc, c10), _mm256_storeu_ps(c + 1 * ldc + 8, c11);
  _mm256_storeu_ps(c + 2 * ldc, c20), _mm256_storeu_ps(c + 2 * ldc + 8, c21);
  _mm256_storeu_ps(c + 3 * ldc, c30), _mm256_storeu_ps(c + 3 * ldc + 8, c31);
  _mm256_storeu_ps(c + 4 * ldc, c40), _mm256_storeu_ps(c + 4 * ldc + 8, c41);
  _mm256_storeu_ps(c + 5 * ldc, c50), _mm256_storeu_ps(c + 5 * ldc + 8, c51);
}

// An edge tile (rows x cols < 6 x 16) through a full-size scratch tile.
void kernel_edge(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate,
                 int64_t rows, int64_t cols) {
  alignas(64) float tile[kMr * kNr] = {};
  if (accumulate) {
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(tile + r * kNr, c + r * ldc, sizeof(float) * size_t(cols));
  }
  kernel_6x16(kc, a, b, tile, kNr, accumulate);
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(c + r * ldc, tile + r * kNr, sizeof(float) * size_t(cols));
}

}  // namespace

bool gemm_f32_available() {
  return true;
}

void gemm_f32(int64_t M, int64_t N, int64_t K, const float* a, int64_t a_rs, int64_t a_cs,
              const float* b, int64_t b_rs, int64_t b_cs, float* c, int64_t ldc, bool accumulate) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (accumulate) return;
    for (int64_t i = 0; i < M; ++i) std::fill(c + i * ldc, c + i * ldc + N, 0.0f);
    return;
  }
  thread_local Buffer a_buffer, b_buffer;
  // Columns per b block: all of N when the whole packed block (K x nc) fits kPackedB floats.
  const int64_t nc_fit = std::max(kNr, kPackedB / K / kNr * kNr);
  const int64_t nc_max = std::min(N, nc_fit);
  const int64_t nc_padded_max = (nc_max + kNr - 1) / kNr * kNr;
  float* bp = b_buffer.get(nc_padded_max * K);
  float* ap = a_buffer.get((std::min(M, kMc) + kMr - 1) / kMr * kMr * std::min(K, kKc));
  for (int64_t j0 = 0; j0 < N; j0 += nc_max) {
    const int64_t nc = std::min(nc_max, N - j0);
    const int64_t nc_padded = (nc + kNr - 1) / kNr * kNr;
    // b[:, j0 : j0+nc] packed once, as one chunk of panels per k block (chunk p0 starts at
    // bp + p0 * nc_padded); it stays in L2 while every a block streams past it.
    for (int64_t p0 = 0; p0 < K; p0 += kKc) {
      pack_b(std::min(kKc, K - p0), nc, b + p0 * b_rs + j0 * b_cs, b_rs, b_cs, bp + p0 * nc_padded);
    }
    for (int64_t i0 = 0; i0 < M; i0 += kMc) {
      const int64_t mc = std::min(kMc, M - i0);
      // The k blocks innermost: the c block (mc x nc) stays in cache between them.
      for (int64_t p0 = 0; p0 < K; p0 += kKc) {
        const int64_t kc = std::min(kKc, K - p0);
        const bool load_c = accumulate || p0 > 0;
        pack_a(mc, kc, a + i0 * a_rs + p0 * a_cs, a_rs, a_cs, ap);
        for (int64_t j = 0; j < nc; j += kNr) {
          const int64_t cols = std::min(kNr, nc - j);
          const float* b_panel = bp + p0 * nc_padded + j * kc;
          for (int64_t i = 0; i < mc; i += kMr) {
            const int64_t rows = std::min(kMr, mc - i);
            float* tile = c + (i0 + i) * ldc + j0 + j;
            if (rows == kMr && cols == kNr) {
              kernel_6x16(kc, ap + i * kc, b_panel, tile, ldc, load_c);
            } else {
              kernel_edge(kc, ap + i * kc, b_panel, tile, ldc, load_c, rows, cols);
            }
          }
        }
      }
    }
  }
}

void gemm_f32_segment_sum(int64_t M, int64_t N, int64_t K, const float* a, int64_t a_rs,
                          int64_t a_cs, const float* b, int64_t b_rs, int64_t b_cs, int64_t segment,
                          double* c, int64_t ldc) {
  MNEMO_ASSERT(segment > 0, "matmul_segment_sum: the segment length must be positive, got {}",
               segment);
  if (M <= 0 || N <= 0 || K <= 0) return;
  // The k blocks of gemm_f32, cut again at segment boundaries; an f32 chain never crosses one.
  const auto depth = [&](int64_t p0) { return std::min({kKc, K - p0, segment - p0 % segment}); };
  thread_local Buffer a_buffer, b_buffer, s_buffer;
  const int64_t nc_fit = std::max(kNr, kPackedB / K / kNr * kNr);
  const int64_t nc_max = std::min(N, nc_fit);
  const int64_t nc_padded_max = (nc_max + kNr - 1) / kNr * kNr;
  float* bp = b_buffer.get(nc_padded_max * K);
  float* ap = a_buffer.get((std::min(M, kMc) + kMr - 1) / kMr * kMr * std::min(K, kKc));
  float* sp = s_buffer.get(std::min(M, kMc) * nc_max);  // a segment's f32 block (mc x nc)
  for (int64_t j0 = 0; j0 < N; j0 += nc_max) {
    const int64_t nc = std::min(nc_max, N - j0);
    const int64_t nc_padded = (nc + kNr - 1) / kNr * kNr;
    for (int64_t p0 = 0, kc = 0; p0 < K; p0 += kc) {
      kc = depth(p0);
      pack_b(kc, nc, b + p0 * b_rs + j0 * b_cs, b_rs, b_cs, bp + p0 * nc_padded);
    }
    for (int64_t i0 = 0; i0 < M; i0 += kMc) {
      const int64_t mc = std::min(kMc, M - i0);
      for (int64_t p0 = 0, kc = 0; p0 < K; p0 += kc) {
        kc = depth(p0);
        const bool load_s = p0 % segment != 0;  // continuing the segment's chains
        pack_a(mc, kc, a + i0 * a_rs + p0 * a_cs, a_rs, a_cs, ap);
        for (int64_t j = 0; j < nc; j += kNr) {
          const int64_t cols = std::min(kNr, nc - j);
          const float* b_panel = bp + p0 * nc_padded + j * kc;
          for (int64_t i = 0; i < mc; i += kMr) {
            const int64_t rows = std::min(kMr, mc - i);
            float* tile = sp + i * nc_max + j;
            if (rows == kMr && cols == kNr) {
              kernel_6x16(kc, ap + i * kc, b_panel, tile, nc_max, load_s);
            } else {
              kernel_edge(kc, ap + i * kc, b_panel, tile, nc_max, load_s, rows, cols);
            }
          }
        }
        if ((p0 + kc) % segment == 0 || p0 + kc == K) {  // the segment is complete: add it
          for (int64_t r = 0; r < mc; ++r) {
            double* out = c + (i0 + r) * ldc + j0;
            const float* in = sp + r * nc_max;
            for (int64_t col = 0; col < nc; ++col) out[col] += double(in[col]);
          }
        }
      }
    }
  }
}

#else  // no AVX2/FMA: matmul.cpp uses Eigen

bool gemm_f32_available() {
  return false;
}

void gemm_f32(int64_t, int64_t, int64_t, const float*, int64_t, int64_t, const float*, int64_t,
              int64_t, float*, int64_t, bool) {
  fail_internal("gemm_f32: this build has no AVX2/FMA kernel (check gemm_f32_available)");
}

void gemm_f32_segment_sum(int64_t, int64_t, int64_t, const float*, int64_t, int64_t, const float*,
                          int64_t, int64_t, int64_t, double*, int64_t) {
  fail_internal("gemm_f32: this build has no AVX2/FMA kernel (check gemm_f32_available)");
}

#endif

}  // namespace mnemo::cpu

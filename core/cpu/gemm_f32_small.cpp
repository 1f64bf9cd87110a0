// The in-place small f32 product kernel (see gemm_f32_small.h for what and why).
#include "core/cpu/gemm_f32_small.h"

#include "core/error.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

namespace mnemo::cpu {

#if defined(__AVX2__) && defined(__FMA__)

namespace {

// c tile (R x 16, or its first cols < 16 columns at the right edge) = or += a rows @ b,
// over k = k0 .. k1-1.
template <int R, bool Full>
void small_tile(int64_t k0, int64_t k1, const float* a, int64_t a_rs, int64_t a_cs, const float* b,
                int64_t ldb, float* c, int64_t ldc, bool accumulate, int64_t cols) {
  // cols < 16 (the right edge): masked loads and stores of the lanes past cols.
  alignas(32) static constexpr int32_t kLane[16] = {0, 1, 2,  3,  4,  5,  6,  7,
                                                    8, 9, 10, 11, 12, 13, 14, 15};
  const __m256i n = _mm256_set1_epi32(int32_t(cols));
  const __m256i m0 = _mm256_cmpgt_epi32(n, _mm256_load_si256((const __m256i*)kLane));
  const __m256i m1 = _mm256_cmpgt_epi32(n, _mm256_load_si256((const __m256i*)(kLane + 8)));
  constexpr bool full = Full;
  __m256 acc[R][2];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    if (!accumulate) {
      acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    } else if (full) {
      acc[r][0] = _mm256_loadu_ps(c + r * ldc), acc[r][1] = _mm256_loadu_ps(c + r * ldc + 8);
    } else {
      acc[r][0] = _mm256_maskload_ps(c + r * ldc, m0);
      acc[r][1] = _mm256_maskload_ps(c + r * ldc + 8, m1);
    }
  }
  for (int64_t k = k0; k < k1; ++k) {
    const float* bk = b + k * ldb;
    const __m256 b0 = full ? _mm256_loadu_ps(bk) : _mm256_maskload_ps(bk, m0);
    const __m256 b1 = full ? _mm256_loadu_ps(bk + 8) : _mm256_maskload_ps(bk + 8, m1);
    const float* ak = a + k * a_cs;
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const __m256 x = _mm256_broadcast_ss(ak + r * a_rs);
      acc[r][0] = _mm256_fmadd_ps(x, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(x, b1, acc[r][1]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    if (full) {
      _mm256_storeu_ps(c + r * ldc, acc[r][0]), _mm256_storeu_ps(c + r * ldc + 8, acc[r][1]);
    } else {
      _mm256_maskstore_ps(c + r * ldc, m0, acc[r][0]);
      _mm256_maskstore_ps(c + r * ldc + 8, m1, acc[r][1]);
    }
  }
}

// Row tile [i, i + R) of the column strip [j, j + 16) (Full) or [j, N) (N - j < 16).
template <int R, bool Full>
void small_tile_at(const SmallProduct& p, int64_t i, int64_t j) {
  if (p.skip.columns(i, R, p.N) <= j) return;  // a causal tile right of every row's keys
  small_tile<R, Full>(p.skip.k_begin(i, p.K), p.skip.k_end(i, R, p.K), p.a + i * p.a_rs, p.a_rs,
                      p.a_cs, p.b + j, p.ldb, p.c + i * p.ldc + j, p.ldc, p.accumulate, p.N - j);
}

// One column strip: 6-row tiles, then the remaining rows.
template <bool Full>
void small_strip(const SmallProduct& p, int64_t j) {
  int64_t i = 0;
  for (; i + 6 <= p.M; i += 6) small_tile_at<6, Full>(p, i, j);
  switch (p.M - i) {
    case 5: small_tile_at<5, Full>(p, i, j); break;
    case 4: small_tile_at<4, Full>(p, i, j); break;
    case 3: small_tile_at<3, Full>(p, i, j); break;
    case 2: small_tile_at<2, Full>(p, i, j); break;
    case 1: small_tile_at<1, Full>(p, i, j); break;
    default: break;
  }
}

}  // namespace

// Strips of 16 columns, the last one masked.
void small_gemm(const SmallProduct& p) {
  int64_t j = 0;
  for (; j + 16 <= p.N; j += 16) small_strip<true>(p, j);
  if (j < p.N) small_strip<false>(p, j);
}

#else

void small_gemm(const SmallProduct&) {
  fail_internal("small_gemm: this build has no AVX2/FMA kernel (check kSmallGemmAvailable)");
}

#endif

}  // namespace mnemo::cpu

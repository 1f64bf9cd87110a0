// mnemo's f32 GEMM kernel (core/cpu/gemm_f32.h), called directly: every element must be
// exactly the in-order fused multiply-add chain over k (so bitwise equal to a scalar std::fma
// loop), for shapes crossing every block edge (6-row and 16-column micro-tiles, 256-deep K
// blocks, 96-row A blocks, B column blocks of 2 MiB packed), any operand strides (transposed,
// stride 0), a leading dimension wider than N, K = 0, and any sub-tile computed on its own.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/cpu/gemm_f32.h"
#include "support/skip.h"

using namespace mnemo;

namespace {

// Without AVX2 and FMA (on the CPU or in the build) Eigen serves matmul and gemm_f32 is absent.
void no_gemm_f32() {
  test::skip("gemm_f32 needs AVX2 and FMA; Eigen serves matmul here");
}

struct Matrix {
  std::vector<float> data;
  int64_t rs, cs;  // element (i, j) at data[i*rs + j*cs]
  float at(int64_t i, int64_t j) const { return data[size_t(i * rs + j * cs)]; }
};

// rows x cols values, stored row-major, column-major, or as one broadcast row (rs = 0).
enum class Layout { row_major, col_major, broadcast_rows };
Matrix random_matrix(int64_t rows, int64_t cols, Layout layout, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-1, 1);
  Matrix m;
  const int64_t stored = layout == Layout::broadcast_rows ? cols : rows * cols;
  m.data.resize(size_t(std::max<int64_t>(stored, 1)));
  for (float& v : m.data) v = dist(rng);
  m.rs = layout == Layout::row_major ? cols : layout == Layout::col_major ? 1 : 0;
  m.cs = layout == Layout::col_major ? rows : 1;
  return m;
}

// c(i, j) = fma(a(i, K-1), b(K-1, j), ... fma(a(i, 0), b(0, j), 0)), in float.
float fma_chain(const Matrix& a, const Matrix& b, int64_t i, int64_t j, int64_t K) {
  float acc = 0;
  for (int64_t k = 0; k < K; ++k) acc = std::fma(a.at(i, k), b.at(k, j), acc);
  return acc;
}

}  // namespace

TEST_CASE("gemm_f32: every element is the in-order fma chain, across block edges and layouts") {
  if (!cpu::gemm_f32_available()) return no_gemm_f32();
  struct Case {
    int64_t M, N, K;
    Layout a, b;
  };
  const std::vector<Case> cases = {
      {1, 1, 1, Layout::row_major, Layout::row_major},
      {6, 16, 256, Layout::row_major, Layout::row_major},
      {7, 17, 257, Layout::col_major, Layout::col_major},
      {97, 33, 600, Layout::row_major, Layout::col_major},
      {5, 2100, 40, Layout::col_major, Layout::row_major},
      {8, 1000, 600, Layout::row_major, Layout::col_major},  // b in two column blocks
      {200, 45, 513, Layout::broadcast_rows, Layout::row_major},
      {13, 70, 9, Layout::row_major, Layout::broadcast_rows},
      // The vectorised packing (8-deep in-register transposes of row-major a and
      // column-major b) and its scalar tails: K not a multiple of 8 (also K < 8, and a last
      // K block of 44 = 5 x 8 + 4), partial 6-row and 16-column panels.
      {23, 45, 13, Layout::row_major, Layout::col_major},
      {11, 40, 7, Layout::row_major, Layout::col_major},
      {100, 35, 300, Layout::row_major, Layout::col_major},
      {98, 64, 264, Layout::row_major, Layout::col_major},  // last a panel: 2 rows, K 8-aligned
      {9, 20, 30, Layout::col_major, Layout::row_major},
      {14, 31, 17, Layout::col_major, Layout::col_major},
      {4, 3, 16, Layout::row_major, Layout::col_major},
  };
  for (const Case& c : cases) {
    INFO("M=", c.M, " N=", c.N, " K=", c.K, " layouts ", int(c.a), int(c.b));
    const Matrix a = random_matrix(c.M, c.K, c.a, 1), b = random_matrix(c.K, c.N, c.b, 2);
    const int64_t ldc = c.N + 3;  // a wider row than N: the gap must stay untouched
    std::vector<float> out(size_t(c.M * ldc), 42.0f);
    cpu::gemm_f32(c.M, c.N, c.K, a.data.data(), a.rs, a.cs, b.data.data(), b.rs, b.cs, out.data(),
                  ldc);
    int64_t mismatches = 0, gap_changed = 0;
    for (int64_t i = 0; i < c.M; ++i) {
      for (int64_t j = 0; j < c.N; ++j)
        mismatches += out[size_t(i * ldc + j)] != fma_chain(a, b, i, j, c.K);
      for (int64_t j = c.N; j < ldc; ++j) gap_changed += out[size_t(i * ldc + j)] != 42.0f;
    }
    CHECK(mismatches == 0);
    CHECK(gap_changed == 0);
  }
}

TEST_CASE("gemm_f32: a sub-tile computed alone has the same bits as in the whole product") {
  if (!cpu::gemm_f32_available()) return no_gemm_f32();
  const int64_t M = 50, N = 70, K = 300;
  const Matrix a = random_matrix(M, K, Layout::row_major, 3);
  const Matrix b = random_matrix(K, N, Layout::col_major, 4);
  std::vector<float> whole(size_t(M * N));
  cpu::gemm_f32(M, N, K, a.data.data(), a.rs, a.cs, b.data.data(), b.rs, b.cs, whole.data(), N);
  // Rows 7..29, columns 5..44: offsets not on any micro-tile boundary.
  const int64_t r0 = 7, r1 = 30, c0 = 5, c1 = 45;
  std::vector<float> part(size_t((r1 - r0) * (c1 - c0)));
  cpu::gemm_f32(r1 - r0, c1 - c0, K, a.data.data() + r0 * a.rs, a.rs, a.cs,
                b.data.data() + c0 * b.cs, b.rs, b.cs, part.data(), c1 - c0);
  int64_t mismatches = 0;
  for (int64_t i = r0; i < r1; ++i) {
    for (int64_t j = c0; j < c1; ++j) {
      mismatches += part[size_t((i - r0) * (c1 - c0) + j - c0)] != whole[size_t(i * N + j)];
    }
  }
  CHECK(mismatches == 0);
}

TEST_CASE("gemm_f32: K = 0 writes zeros, or leaves c alone when accumulating") {
  if (!cpu::gemm_f32_available()) return no_gemm_f32();
  std::vector<float> out(12, 5.0f);
  const float dummy = 1;
  cpu::gemm_f32(3, 4, 0, &dummy, 0, 1, &dummy, 4, 1, out.data(), 4, /*accumulate=*/true);
  for (float v : out) CHECK(v == 5.0f);
  cpu::gemm_f32(3, 4, 0, &dummy, 0, 1, &dummy, 4, 1, out.data(), 4);
  for (float v : out) CHECK(v == 0.0f);
}

TEST_CASE("gemm_f32: accumulate continues each element's chain from c") {
  if (!cpu::gemm_f32_available()) return no_gemm_f32();
  const int64_t M = 20, N = 37, K = 300;
  const Matrix a = random_matrix(M, K, Layout::col_major, 5);
  const Matrix b = random_matrix(K, N, Layout::row_major, 6);
  const Matrix c0 = random_matrix(M, N, Layout::row_major, 7);
  std::vector<float> c = c0.data;
  cpu::gemm_f32(M, N, K, a.data.data(), a.rs, a.cs, b.data.data(), b.rs, b.cs, c.data(), N,
                /*accumulate=*/true);
  int64_t mismatches = 0;
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      float acc = c0.at(i, j);
      for (int64_t k = 0; k < K; ++k) acc = std::fma(a.at(i, k), b.at(k, j), acc);
      mismatches += c[size_t(i * N + j)] != acc;
    }
  }
  CHECK(mismatches == 0);
}

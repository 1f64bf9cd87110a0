// A small f32 product kernel that reads its operands in place, for core/cpu/attention.cpp.
//
// The attention products are small (one side 32 = D or the query block, the other <= Tk)
// and their operands already lie in L1/L2, so gemm_f32's packing of both operands on every
// call (core/cpu/gemm_f32.h) was about a fifth of the attention time (its a-panel packing is a
// scalar transpose). This kernel packs nothing: c tile (R x 16) += a (R rows, any strides: a
// broadcast per row and k) @ b (row-major, contiguous rows: two vector loads per k), in R x 2
// ymm accumulators, 6-row tiles in 16-column strips, the last strip masked. Each element of c
// is one chain of FMAs over k = k0 .. k1-1 in order, starting from 0 or from c: the same
// chain as gemm_f32's (over k0 = 0 .. k1 = K), so the results equal its results bit for bit.
//
// A causal attention product also skips the part of c that no query can see (Skip below).
#pragma once

#include <algorithm>
#include <cstdint>

namespace mnemo::cpu {

// The part of a causal product that matters, per row tile [i, i + R) of c; offset is
// i0 + Tk - Tq for a query block starting at i0, so that local query row r sees keys
// [0, r + 1 + offset). kColumns (c = scores or dP, columns are keys): the tile needs columns
// [0, i + R + offset). kDepthEnd (a = P or dS, zero past each row's keys): the k-sum of the
// tile ends at i + R + offset. kDepthBegin (c = dK or dV, rows are keys, a = dS^T or P^T): the
// queries before i - offset see none of the tile's keys, so the k-sum starts there. Skipped
// terms are products with exact zeros (leaving each sum unchanged), and skipped columns are
// never read.
struct Skip {
  enum Kind { kNone, kColumns, kDepthEnd, kDepthBegin } kind = kNone;
  int64_t offset = 0;
  int64_t columns(int64_t i, int64_t R, int64_t N) const {
    return kind == kColumns ? std::clamp<int64_t>(i + R + offset, 0, N) : N;
  }
  int64_t k_end(int64_t i, int64_t R, int64_t K) const {
    return kind == kDepthEnd ? std::clamp<int64_t>(i + R + offset, 0, K) : K;
  }
  int64_t k_begin(int64_t i, int64_t K) const {
    return kind == kDepthBegin ? std::clamp<int64_t>(i - offset, 0, K) : 0;
  }
};

// The operands of one product, as small_gemm takes them.
struct SmallProduct {
  int64_t M, N, K;
  const float* a;
  int64_t a_rs, a_cs;
  const float* b;
  int64_t ldb;
  float* c;
  int64_t ldc;
  bool accumulate;
  Skip skip;
};

// True when this build has the kernel (x86-64 with AVX2 and FMA); otherwise small_gemm must
// not be called.
#if defined(__AVX2__) && defined(__FMA__)
inline constexpr bool kSmallGemmAvailable = true;
#else
inline constexpr bool kSmallGemmAvailable = false;
#endif

// c (M, N) (row-major, ldc) = or += a (M, K) @ b (K, N): a element (i, k) at
// a[i*a_rs + k*a_cs], b row-major with row length ldb; only the part skip asks for.
void small_gemm(const SmallProduct& p);

}  // namespace mnemo::cpu

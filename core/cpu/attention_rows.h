// Row operations on attention scores, in Eigen packets: the row maximum, exp(x - shift) with
// its sum, a row's softmax, and probabilities from a saved logsumexp (core/cpu/attention.cpp).
//
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include <Eigen/Core>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

namespace mnemo::cpu::rows {

namespace ei = Eigen::internal;
template <typename F>
using Packet = typename ei::packet_traits<F>::type;
template <typename F>
constexpr int64_t kWidth = ei::packet_traits<F>::size;

// Each element's result must not depend on where a row starts in memory, or the output would
// change with heap addresses (and so with the thread count). Eigen's array expressions peel
// unaligned heads and tails into scalar code (std::exp there, its vectorised pexp elsewhere:
// they round differently), and a compiler-vectorised reduction may also peel for alignment.
// So these loops work in Eigen packets from the row's first element, the tail through a
// padded packet: exp through pexp for every element, sums in W lane partials (lane l adds the
// elements j = l mod W in order, then the lanes are combined), maxima likewise (exact, any
// order). std::exp in a loop would stay scalar without -ffast-math and cost more than the
// GEMMs. Only a row's visible keys [0, visible) are read; the rest of the row is set to 0.

// The packet of s[j, n) padded with fill (n - j < W).
template <typename F>
Packet<F> load_tail(const F* s, int64_t j, int64_t n, F fill) {
  F tail[kWidth<F>];
  std::fill(tail, tail + kWidth<F>, fill);
  std::copy(s + j, s + n, tail);
  return ei::ploadu<Packet<F>>(tail);
}

// max of s[0, n); -inf for n = 0.
template <typename F>
F row_max(const F* s, int64_t n) {
  constexpr int64_t W = kWidth<F>;
  const F neg_inf = -std::numeric_limits<F>::infinity();
  Packet<F> m = ei::pset1<Packet<F>>(neg_inf);
  int64_t j = 0;
  for (; j + W <= n; j += W) m = ei::pmax(m, ei::ploadu<Packet<F>>(s + j));
  if (j < n) m = ei::pmax(m, load_tail(s, j, n, neg_inf));
  return ei::predux_max(m);
}

// exp of a packet of x - shift (x <= shift here: shift is a row maximum or logsumexp).
// Eigen's pexp for 8 floats is Cephes' expf (exp(r) by a polynomial, r = x - m ln 2), then
// 2^m through a range-safe ldexp of about a dozen integer and multiply steps. With x clamped
// to [-87, 88], 2^m is a normal float and one exponent-field add suffices: same polynomial,
// same values (a product by a power of two is exact), a third fewer instructions. Below
// -87 the result stays at about 1e-38 instead of going to 0 (an absolute error < 1e-37).
template <typename F>
Packet<F> exp_packet(const Packet<F>& x) {
#if defined(__AVX2__) && defined(__FMA__)
  if constexpr (std::is_same_v<F, float> && kWidth<F> == 8) {
    const __m256 xc =
        _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.0f)), _mm256_set1_ps(-87.0f));
    // m = floor(x / ln 2 + 1/2), r = x - m ln 2 (ln 2 in two parts, as Eigen does)
    const __m256 m = _mm256_floor_ps(
        _mm256_fmadd_ps(xc, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
    __m256 r = _mm256_fmadd_ps(m, _mm256_set1_ps(-0.693359375f), xc);
    r = _mm256_fmadd_ps(m, _mm256_set1_ps(2.12194440e-4f), r);
    const __m256 r2 = _mm256_mul_ps(r, r), r3 = _mm256_mul_ps(r2, r);
    __m256 y =
        _mm256_fmadd_ps(_mm256_set1_ps(1.9875691500E-4f), r, _mm256_set1_ps(1.3981999507E-3f));
    __m256 y1 =
        _mm256_fmadd_ps(_mm256_set1_ps(4.1665795894E-2f), r, _mm256_set1_ps(1.6666665459E-1f));
    const __m256 y2 = _mm256_add_ps(r, _mm256_set1_ps(1.0f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073E-3f));
    y1 = _mm256_fmadd_ps(y1, r, _mm256_set1_ps(5.0000001201E-1f));
    y = _mm256_fmadd_ps(y, r3, y1);
    y = _mm256_fmadd_ps(y, r2, y2);
    // 2^m: m + 127 in [1, 254] into the exponent field.
    const __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(m), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
  }
#endif
  return ei::pexp(x);
}

// s[j] = exp(s[j] - shift) for j < n, exactly 0 where s[j] = -inf (a masked key; Eigen's pexp
// clamps its argument, so it would give a tiny positive number there); returns the sum of
// the new s[0, n) (in the fixed lane order above).
template <typename F>
F exp_shifted(F* s, int64_t n, F shift) {
  constexpr int64_t W = kWidth<F>;
  const Packet<F> neg_inf = ei::pset1<Packet<F>>(-std::numeric_limits<F>::infinity());
  const Packet<F> vshift = ei::pset1<Packet<F>>(shift);
  Packet<F> sum = ei::pzero(vshift);
  auto exp_masked = [&](const Packet<F>& x) {
    const Packet<F> e = exp_packet<F>(ei::psub(x, vshift));
    return ei::pselect(ei::pcmp_eq(x, neg_inf), ei::pzero(e), e);
  };
  int64_t j = 0;
  for (; j + W <= n; j += W) {
    const Packet<F> e = exp_masked(ei::ploadu<Packet<F>>(s + j));
    ei::pstoreu(s + j, e);
    sum = ei::padd(sum, e);
  }
  if (j < n) {
    F tail[W];
    ei::pstoreu(tail, exp_masked(load_tail(s, j, n, -std::numeric_limits<F>::infinity())));
    std::copy(tail, tail + (n - j), s + j);
    sum = ei::padd(sum, ei::ploadu<Packet<F>>(tail));  // the padding lanes hold exp(-inf) = 0
  }
  return ei::predux(sum);
}

// Row s[0, n) of scores, keys [0, visible) visible -> unnormalised probabilities
// exp(s - max) in place (0 past visible); returns 1 / their sum (the caller scales the
// row's output instead of the n probabilities) and sets lse to the row's logsumexp. A row
// with no finite score becomes zeros with lse = -inf and 1 / sum = 0.
template <typename F>
F softmax_row(F* s, int64_t visible, int64_t n, F& lse) {
  std::fill(s + visible, s + n, F(0));
  const F max = row_max(s, visible);
  if (max == -std::numeric_limits<F>::infinity()) {
    std::fill(s, s + visible, F(0));
    lse = max;
    return F(0);
  }
  const F sum = exp_shifted(s, visible, max);
  lse = max + std::log(sum);
  return F(1) / sum;
}

// Row s[0, n) of scores -> probabilities exp(s - lse) in place, from the forward's lse; keys
// past visible get 0.
template <typename F>
void probabilities_row(F* s, int64_t visible, int64_t n, F lse) {
  if (lse == -std::numeric_limits<F>::infinity()) visible = 0;
  std::fill(s + visible, s + n, F(0));
  exp_shifted(s, visible, lse);
}

}  // namespace mnemo::cpu::rows

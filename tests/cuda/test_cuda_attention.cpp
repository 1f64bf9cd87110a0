// attention forward and backward on the GPU (cuda/attention.cu) against the CPU backend:
// causal or not, additive masks broadcast from (Tq, Tk) or (B, 1, Tq, Tk), grouped-query heads,
// Tq != Tk (causal aligned bottom-right), odd and maximal head dims, rows that see no key
// (out 0, lse -inf, no gradient), every floating dtype, and bitwise repeats.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "compare.h"
#include "core/ops/factory.h"
#include "core/ops/nn.h"
#include "core/ops/view.h"

namespace mnemo {
namespace {

using namespace cuda_test;  // tests/cuda/compare.h

constexpr double kInf = std::numeric_limits<double>::infinity();

enum class MaskKind {
  kNone,
  kShared,    // (Tq, Tk), broadcast over B and H, with some keys hidden (-inf)
  kPerBatch,  // (B, 1, Tq, Tk), broadcast over H, with query row 1 hiding every key
};

struct AttentionCase {
  int64_t B, H, Hkv, Tq, Tk, D, Dv;
  bool causal;
  MaskKind mask;
};

const AttentionCase kCases[] = {
    {2, 4, 4, 33, 33, 64, 64, true, MaskKind::kNone},      // causal self-attention
    {2, 4, 4, 33, 33, 64, 64, false, MaskKind::kNone},     // full
    {2, 4, 2, 7, 19, 64, 64, true, MaskKind::kNone},       // GQA, keys prepended (Tk > Tq)
    {1, 4, 2, 9, 5, 24, 40, true, MaskKind::kNone},        // Tq > Tk: rows 0..3 see no key
    {2, 3, 1, 17, 17, 24, 24, false, MaskKind::kShared},   // odd D, MQA, shared mask
    {2, 4, 2, 13, 21, 32, 16, true, MaskKind::kPerBatch},  // per-batch mask, a hidden row
    {1, 2, 2, 5, 70, 256, 256, false, MaskKind::kNone},    // the largest head dims
    {1, 1, 1, 1, 1, 1, 1, false, MaskKind::kNone},         // one of everything
};

// Values in [-1, 1) with about one in five set to -inf; for kPerBatch, query row 1 is -inf
// everywhere (that row sees no key).
Tensor make_mask(const AttentionCase& c, uint64_t seed) {
  if (c.mask == MaskKind::kNone) return {};
  const Shape shape = c.mask == MaskKind::kShared ? Shape{c.Tq, c.Tk} : Shape{c.B, 1, c.Tq, c.Tk};
  std::vector<double> values = random_cpu(shape, DType::f64, seed).to_vector<double>();
  for (size_t n = 0; n < values.size(); ++n) {
    const int64_t i = int64_t(n) / c.Tk % c.Tq;
    if ((n * 7 + 3) % 5 == 0 || (c.mask == MaskKind::kPerBatch && i == 1)) values[n] = -kInf;
  }
  return from_vector(values, shape, {DType::f32});
}

AttentionOptions options_for(const AttentionCase& c, const Tensor& mask, double scale = 0) {
  AttentionOptions o;
  o.causal = c.causal;
  o.mask = mask;
  o.scale = scale;
  return o;
}

std::string describe(const AttentionCase& c) {
  return "B=" + std::to_string(c.B) + " H=" + std::to_string(c.H) +
         " Hkv=" + std::to_string(c.Hkv) + " Tq=" + std::to_string(c.Tq) +
         " Tk=" + std::to_string(c.Tk) + " D=" + std::to_string(c.D) +
         " Dv=" + std::to_string(c.Dv) + (c.causal ? " causal" : "") +
         " mask=" + std::to_string(int(c.mask));
}

}  // namespace

TEST_CASE("cuda: attention forward and backward match the CPU") {
  for (DType dtype : kFloating) {
    for (const AttentionCase& c : kCases) {
      const uint64_t seed = fresh_seed();
      CAPTURE(seed);
      CAPTURE(dtype_name(dtype));
      CAPTURE(describe(c));
      const Tensor q = random_cpu({c.B, c.H, c.Tq, c.D}, dtype, seed);
      const Tensor k = random_cpu({c.B, c.Hkv, c.Tk, c.D}, dtype, seed + 1);
      const Tensor v = random_cpu({c.B, c.Hkv, c.Tk, c.Dv}, dtype, seed + 2);
      const Tensor dout = random_cpu({c.B, c.H, c.Tq, c.Dv}, dtype, seed + 3);
      const Tensor mask = make_mask(c, seed + 4);
      const AttentionOptions cpu_options = options_for(c, mask);
      const AttentionOptions gpu_options = options_for(c, mask.defined() ? to_gpu(mask) : mask);

      const core::AttentionOutput want = core::attention(q, k, v, cpu_options);
      const core::AttentionOutput got =
          core::attention(to_gpu(q), to_gpu(k), to_gpu(v), gpu_options);
      CHECK_CLOSE_TO_CPU(got.out, want.out);
      CHECK_CLOSE_TO_CPU(got.lse, want.lse);  // -inf rows must match exactly

      // The backward from the CPU's forward results, so it is compared on its own.
      const core::AttentionGrads want_grads =
          core::attention_backward(q, k, v, cpu_options, want.out, want.lse, dout);
      const core::AttentionGrads got_grads =
          core::attention_backward(to_gpu(q), to_gpu(k), to_gpu(v), gpu_options, to_gpu(want.out),
                                   to_gpu(want.lse), to_gpu(dout));
      CHECK_CLOSE_TO_CPU(got_grads.dq, want_grads.dq);
      CHECK_CLOSE_TO_CPU(got_grads.dk, want_grads.dk);
      CHECK_CLOSE_TO_CPU(got_grads.dv, want_grads.dv);
    }
  }
}

TEST_CASE("cuda: attention rows that see no key give out 0, lse -inf and no gradient") {
  // Causal with Tq = 6 > Tk = 3: query i sees keys j <= i - 3, so rows 0..2 see none.
  const AttentionCase c{1, 2, 1, 6, 3, 8, 8, true, MaskKind::kNone};
  const uint64_t seed = fresh_seed();
  CAPTURE(seed);
  const Tensor q = to_gpu(random_cpu({1, 2, 6, 8}, DType::f32, seed));
  const Tensor k = to_gpu(random_cpu({1, 1, 3, 8}, DType::f32, seed + 1));
  const Tensor v = to_gpu(random_cpu({1, 1, 3, 8}, DType::f32, seed + 2));
  const Tensor dout = to_gpu(random_cpu({1, 2, 6, 8}, DType::f32, seed + 3));
  const AttentionOptions options = options_for(c, {});
  const core::AttentionOutput fwd = core::attention(q, k, v, options);
  const std::vector<double> out = fwd.out.to_vector<double>();
  const std::vector<double> lse = fwd.lse.to_vector<double>();
  const core::AttentionGrads grads =
      core::attention_backward(q, k, v, options, fwd.out, fwd.lse, dout);
  const std::vector<double> dq = grads.dq.to_vector<double>();
  for (int64_t h = 0; h < 2; ++h) {
    for (int64_t i = 0; i < 6; ++i) {
      CAPTURE(h);
      CAPTURE(i);
      const bool empty = i < 3;
      CHECK((lse[size_t(h * 6 + i)] == -kInf) == empty);
      for (int64_t e = 0; e < 8; ++e) {
        const size_t at = size_t((h * 6 + i) * 8 + e);
        if (empty) {
          CHECK(out[at] == 0);
          CHECK(dq[at] == 0);
        }
        CHECK(std::isfinite(out[at]));
        CHECK(std::isfinite(dq[at]));
      }
    }
  }
}

TEST_CASE("cuda: attention forward and backward give the same bits when repeated") {
  for (DType dtype : {DType::f32, DType::bf16}) {
    const AttentionCase c{2, 4, 2, 37, 45, 64, 64, true, MaskKind::kShared};
    const uint64_t seed = fresh_seed();
    CAPTURE(seed);
    CAPTURE(dtype_name(dtype));
    const Tensor q = to_gpu(random_cpu({c.B, c.H, c.Tq, c.D}, dtype, seed));
    const Tensor k = to_gpu(random_cpu({c.B, c.Hkv, c.Tk, c.D}, dtype, seed + 1));
    const Tensor v = to_gpu(random_cpu({c.B, c.Hkv, c.Tk, c.Dv}, dtype, seed + 2));
    const Tensor dout = to_gpu(random_cpu({c.B, c.H, c.Tq, c.Dv}, dtype, seed + 3));
    const AttentionOptions options = options_for(c, to_gpu(make_mask(c, seed + 4)), 0.3);
    const core::AttentionOutput a = core::attention(q, k, v, options);
    const core::AttentionOutput b = core::attention(q, k, v, options);
    CHECK(bitwise_equal(a.out, b.out));
    CHECK(bitwise_equal(a.lse, b.lse));
    const core::AttentionGrads ga = core::attention_backward(q, k, v, options, a.out, a.lse, dout);
    const core::AttentionGrads gb = core::attention_backward(q, k, v, options, a.out, a.lse, dout);
    CHECK(bitwise_equal(ga.dq, gb.dq));
    CHECK(bitwise_equal(ga.dk, gb.dk));
    CHECK(bitwise_equal(ga.dv, gb.dv));
  }
}

}  // namespace mnemo

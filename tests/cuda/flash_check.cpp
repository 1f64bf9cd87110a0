// The shared half of the flash attention tests (tests/cuda/flash_check.h).
#include "flash_check.h"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "compare.h"
#include "core/ops/factory.h"

namespace mnemo::cuda_test {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

Tensor make_key_padding(const FlashCase& c, DType dtype, uint64_t seed) {
  if (!c.key_padding) return {};
  const Shape shape{c.B, 1, 1, c.Tk};
  std::vector<double> values = random_cpu(shape, DType::f64, seed).to_vector<double>();
  for (int64_t b = 0; b < c.B; ++b) {
    for (int64_t j = 0; j < c.Tk; ++j) {
      double& x = values[size_t(b * c.Tk + j)];
      if ((b == 0 && j % 5 == 3) || (b == 1 && j < 20) || b == 2) x = -kInf;
    }
  }
  return from_vector(values, shape, {dtype});
}

}  // namespace

std::string describe(const FlashCase& c) {
  return "B=" + std::to_string(c.B) + " H=" + std::to_string(c.H) +
         " Hkv=" + std::to_string(c.Hkv) + " Tq=" + std::to_string(c.Tq) +
         " Tk=" + std::to_string(c.Tk) + " D=" + std::to_string(c.D) + (c.causal ? " causal" : "") +
         (c.key_padding ? " key-padding" : "");
}

FlashInputs make_flash_inputs(const FlashCase& c, DType dtype, uint64_t seed, DType mask_dtype) {
  return {random_cpu({c.B, c.H, c.Tq, c.D}, dtype, seed),
          random_cpu({c.B, c.Hkv, c.Tk, c.D}, dtype, seed + 1),
          random_cpu({c.B, c.Hkv, c.Tk, c.D}, dtype, seed + 2),
          random_cpu({c.B, c.H, c.Tq, c.D}, dtype, seed + 3),
          make_key_padding(c, mask_dtype, seed + 4)};
}

FlashResults run_attention(const FlashInputs& in, bool causal, bool gpu,
                           const core::AttentionOutput* fwd_from) {
  const auto dev = [&](const Tensor& t) { return gpu && t.defined() ? to_gpu(t) : t; };
  AttentionOptions options;
  options.causal = causal;
  options.mask = dev(in.mask);
  FlashResults r;
  r.fwd = core::attention(dev(in.q), dev(in.k), dev(in.v), options);
  const core::AttentionOutput& from = fwd_from != nullptr ? *fwd_from : r.fwd;
  r.grads = core::attention_backward(dev(in.q), dev(in.k), dev(in.v), options, dev(from.out),
                                     dev(from.lse), dev(in.dout));
  return r;
}

void check_flash_close(const FlashResults& got, const FlashResults& want, double bound,
                       const char* what, bool single_key) {
  INFO(what);
  const double out_error = rel_error(got.fwd.out, want.fwd.out);
  const double lse_error = rel_error(got.fwd.lse, want.fwd.lse);  // -inf rows must match
  const double dq_error = single_key ? scaled_error(got.grads.dq, want.grads.dq, 1.0)
                                     : rel_error(got.grads.dq, want.grads.dq);
  const double dk_error = single_key ? scaled_error(got.grads.dk, want.grads.dk, 1.0)
                                     : rel_error(got.grads.dk, want.grads.dk);
  const double dv_error = rel_error(got.grads.dv, want.grads.dv);
  CAPTURE(out_error);
  CAPTURE(lse_error);
  CAPTURE(dq_error);
  CAPTURE(dk_error);
  CAPTURE(dv_error);
  CHECK(out_error < bound);
  CHECK(lse_error < bound);
  CHECK(dq_error < bound);
  CHECK(dk_error < bound);
  CHECK(dv_error < bound);
}

void check_rows_without_keys(const FlashResults& r, const FlashCase& c) {
  REQUIRE((c.causal && c.key_padding && c.B == 3 && c.Tq == c.Tk + 10));
  const std::vector<double> out = r.fwd.out.to_vector<double>();
  const std::vector<double> lse = r.fwd.lse.to_vector<double>();
  const std::vector<double> dq = r.grads.dq.to_vector<double>();
  const std::vector<double> dk = r.grads.dk.to_vector<double>();
  const std::vector<double> dv = r.grads.dv.to_vector<double>();
  for (int64_t b = 0; b < c.B; ++b) {
    for (int64_t h = 0; h < c.H; ++h) {
      for (int64_t i = 0; i < c.Tq; ++i) {
        CAPTURE(b);
        CAPTURE(h);
        CAPTURE(i);
        // Row i sees keys j <= i - 10; batch 1 hides keys < 20, batch 2 all of them.
        const bool empty = i < 10 || (b == 1 && i < 30) || b == 2;
        const size_t row = size_t((b * c.H + h) * c.Tq + i);
        CHECK((lse[row] == -kInf) == empty);
        if (!empty) REQUIRE(std::isfinite(lse[row]));
        for (int64_t e = 0; e < c.D; ++e) {
          const size_t at = row * size_t(c.D) + size_t(e);
          REQUIRE(std::isfinite(out[at]));
          REQUIRE(std::isfinite(dq[at]));
          if (empty) {
            REQUIRE(out[at] == 0);
            REQUIRE(dq[at] == 0);
          }
        }
      }
    }
  }
  // Batch 2's keys are seen by no query: zero dk, dv; every other gradient is finite.
  const size_t per_batch = size_t(c.Hkv * c.Tk * c.D);
  for (size_t n = 0; n < dk.size(); ++n) {
    REQUIRE(std::isfinite(dk[n]));
    REQUIRE(std::isfinite(dv[n]));
    if (n >= 2 * per_batch) {
      REQUIRE(dk[n] == 0);
      REQUIRE(dv[n] == 0);
    }
  }
}

void check_same_bits(const FlashResults& a, const FlashResults& b) {
  CHECK(bitwise_equal(a.fwd.out, b.fwd.out));
  CHECK(bitwise_equal(a.fwd.lse, b.fwd.lse));
  CHECK(bitwise_equal(a.grads.dq, b.grads.dq));
  CHECK(bitwise_equal(a.grads.dk, b.grads.dk));
  CHECK(bitwise_equal(a.grads.dv, b.grads.dv));
}

}  // namespace mnemo::cuda_test

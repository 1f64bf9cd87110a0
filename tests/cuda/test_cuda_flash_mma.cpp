// The mma.sync flash attention kernels (cuda/flash_mma_*.cu, opt-in: KernelChoice::fast_mma)
// against the CPU backend and against the wmma flash kernels (cuda/flash_attention_*.cu):
// bf16 and f16, head dims 32/64/128, causal and not, grouped-query heads, Tq != Tk, lengths
// that are not multiples of the tiles (128 query rows, 64/128 keys forward; 64/32 query rows
// backward), several tiles per CTA, key-padding masks with fully hidden rows, the lse output,
// gradients and bitwise repeats. Bounds are the issue's: normwise relative error < 2e-2.
// Each check also makes sure the mma kernels really ran (their launch counters moved).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "compare.h"
#include "core/ops/factory.h"
#include "core/ops/nn.h"
#include "cuda/flash_mma.h"
#include "cuda/runtime.h"

namespace mnemo {
namespace {

using cuda::KernelChoice;
using cuda::KernelChoiceGuard;
using cuda_test::bitwise_equal;
using cuda_test::fresh_seed;
using cuda_test::random_cpu;
using cuda_test::rel_error;
using cuda_test::scaled_error;
using cuda_test::to_gpu;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kBound = 2e-2;  // bf16 / f16

struct MmaCase {
  int64_t B, H, Hkv, Tq, Tk, D;
  bool causal;
  bool key_padding;  // a (B, 1, 1, Tk) bias; B >= 3 covers every pattern
};

const MmaCase kCases[] = {
    {2, 2, 2, 129, 129, 128, true, false},   // one row past a 128-row tile, D = 128
    {1, 2, 2, 127, 127, 128, false, false},  // one row short of a tile
    {1, 2, 2, 300, 300, 128, true, false},   // 3 query tiles, 5 key tiles of 64: diagonal
    {1, 2, 2, 300, 300, 64, false, false},   // D = 64, key tiles of 128
    {2, 2, 2, 257, 257, 64, true, false},
    {1, 2, 2, 200, 200, 32, true, false},   // D = 32
    {1, 8, 2, 150, 150, 64, true, false},   // GQA: 4 query heads per kv head
    {1, 6, 2, 65, 190, 128, false, false},  // GQA, D = 128, Tq < Tk
    {2, 4, 2, 1, 300, 64, true, false},     // decoding: one query over a 300-key cache
    {1, 4, 4, 1, 300, 128, false, false},
    {2, 4, 4, 77, 329, 64, true, false},   // keys prepended: causal offset 252
    {1, 2, 2, 70, 200, 128, true, false},  // offset 130: whole key tiles before the diagonal
    {1, 2, 2, 200, 77, 64, true, false},   // Tq > Tk: the first 123 rows see no key
    {1, 2, 1, 250, 90, 128, true, false},  // Tq > Tk, whole warps and a tile with no key
    {1, 1, 1, 1, 1, 32, false, false},     // one of everything
    {1, 1, 1, 16, 8, 64, false, false},    // fewer keys than one mma n-block pair
    {3, 4, 2, 140, 140, 64, true, true},   // key padding, causal: rows that see only padding
    {3, 2, 2, 33, 170, 128, false, true},  // key padding, cross lengths, a fully padded batch
    {3, 4, 4, 128, 128, 32, false, true},  // tile multiples, key padding
    {3, 2, 2, 128, 256, 128, true, true},
};

std::string describe(const MmaCase& c) {
  return "B=" + std::to_string(c.B) + " H=" + std::to_string(c.H) +
         " Hkv=" + std::to_string(c.Hkv) + " Tq=" + std::to_string(c.Tq) +
         " Tk=" + std::to_string(c.Tk) + " D=" + std::to_string(c.D) + (c.causal ? " causal" : "") +
         (c.key_padding ? " key-padding" : "");
}

// A key-padding bias (B, 1, 1, Tk) in dtype: batch 0 a random bias in [-1, 1) with every fifth
// key hidden; batch 1 its first 20 keys hidden (left padding: with causal masking early rows
// see only hidden keys); batch 2 every key hidden. Undefined when the case has no mask.
Tensor make_key_padding(const MmaCase& c, DType dtype, uint64_t seed) {
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

struct Inputs {
  Tensor q, k, v, dout, mask;
};

Inputs make_inputs(const MmaCase& c, DType dtype, uint64_t seed) {
  return {random_cpu({c.B, c.H, c.Tq, c.D}, dtype, seed),
          random_cpu({c.B, c.Hkv, c.Tk, c.D}, dtype, seed + 1),
          random_cpu({c.B, c.Hkv, c.Tk, c.D}, dtype, seed + 2),
          random_cpu({c.B, c.H, c.Tq, c.D}, dtype, seed + 3), make_key_padding(c, dtype, seed + 4)};
}

struct Results {
  core::AttentionOutput fwd;
  core::AttentionGrads grads;
};

// Forward, and backward from fwd_from (the CPU's forward, so every backward sees the same out
// and lse) or from this forward.
Results run(const Inputs& in, bool causal, bool gpu, const core::AttentionOutput* fwd_from) {
  const auto dev = [&](const Tensor& t) { return gpu && t.defined() ? to_gpu(t) : t; };
  AttentionOptions options;
  options.causal = causal;
  options.mask = dev(in.mask);
  Results r;
  r.fwd = core::attention(dev(in.q), dev(in.k), dev(in.v), options);
  const core::AttentionOutput& from = fwd_from != nullptr ? *fwd_from : r.fwd;
  r.grads = core::attention_backward(dev(in.q), dev(in.k), dev(in.v), options, dev(from.out),
                                     dev(from.lse), dev(in.dout));
  return r;
}

// On the GPU with the flash kernels, the mma ones when `mma`; checks that the mma kernels ran
// exactly when asked for.
Results run_gpu(const Inputs& in, bool causal, bool mma, const core::AttentionOutput* fwd_from) {
  KernelChoiceGuard choice(mma ? KernelChoice::fast_mma : KernelChoice::fast);
  const int64_t fwd_before = cuda::flash_mma_forward_calls();
  const int64_t bwd_before = cuda::flash_mma_backward_calls();
  Results r = run(in, causal, true, fwd_from);
  const bool work = in.q.numel() > 0;
  CHECK(cuda::flash_mma_forward_calls() - fwd_before == (mma && work ? 1 : 0));
  CHECK(cuda::flash_mma_backward_calls() - bwd_before == (mma ? 1 : 0));
  return r;
}

// single_key (Tk = 1): P = 1 and dS = 0 in exact arithmetic, so dq and dk are rounding noise,
// measured against the size of the terms (1) instead of themselves.
void check_close(const Results& got, const Results& want, const char* what, bool single_key) {
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
  CHECK(out_error < kBound);
  CHECK(lse_error < kBound);
  CHECK(dq_error < kBound);
  CHECK(dk_error < kBound);
  CHECK(dv_error < kBound);
}

}  // namespace

TEST_CASE("cuda: flash mma attention matches the CPU and the wmma flash kernels") {
  for (DType dtype : {DType::bf16, DType::f16}) {
    for (const MmaCase& c : kCases) {
      const uint64_t seed = fresh_seed();
      CAPTURE(seed);
      CAPTURE(dtype_name(dtype));
      CAPTURE(describe(c));
      const Inputs in = make_inputs(c, dtype, seed);
      const Results cpu = run(in, c.causal, false, nullptr);
      const Results mma = run_gpu(in, c.causal, true, &cpu.fwd);
      const Results wmma = run_gpu(in, c.causal, false, &cpu.fwd);
      check_close(mma, cpu, "mma vs CPU", c.Tk == 1);
      check_close(wmma, cpu, "wmma flash vs CPU", c.Tk == 1);
      check_close(mma, wmma, "mma vs wmma flash", c.Tk == 1);
    }
  }
}

TEST_CASE("cuda: flash mma attention rows that see no key give out 0, lse -inf and no gradient") {
  // Key padding hides every key of batch 2 (and the first 20 of batch 1); causal with
  // Tq = 150 > Tk = 140 also leaves rows 0..9 of every batch without keys.
  const MmaCase c{3, 2, 1, 150, 140, 64, true, true};
  for (DType dtype : {DType::bf16, DType::f16}) {
    const uint64_t seed = fresh_seed();
    CAPTURE(seed);
    CAPTURE(dtype_name(dtype));
    const Inputs in = make_inputs(c, dtype, seed);
    const Results r = run_gpu(in, c.causal, true, nullptr);
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
}

TEST_CASE("cuda: flash mma attention gives the same bits when repeated") {
  const MmaCase c{3, 8, 2, 200, 231, 128, true, true};
  for (DType dtype : {DType::bf16, DType::f16}) {
    const uint64_t seed = fresh_seed();
    CAPTURE(seed);
    CAPTURE(dtype_name(dtype));
    const Inputs in = make_inputs(c, dtype, seed);
    const Results a = run_gpu(in, c.causal, true, nullptr);
    const Results b = run_gpu(in, c.causal, true, nullptr);
    CHECK(bitwise_equal(a.fwd.out, b.fwd.out));
    CHECK(bitwise_equal(a.fwd.lse, b.fwd.lse));
    CHECK(bitwise_equal(a.grads.dq, b.grads.dq));
    CHECK(bitwise_equal(a.grads.dk, b.grads.dk));
    CHECK(bitwise_equal(a.grads.dv, b.grads.dv));
  }
}

TEST_CASE("cuda: flash mma switch leaves f32 and unsupported head dims to the other kernels") {
  // f32 and D = 80 never reach the mma kernels, even with the switch on; results still match.
  for (const auto& [dtype, D] :
       {std::pair{DType::f32, int64_t(64)}, std::pair{DType::bf16, int64_t(80)}}) {
    const MmaCase c{1, 2, 2, 70, 70, D, true, false};
    const uint64_t seed = fresh_seed();
    CAPTURE(seed);
    CAPTURE(dtype_name(dtype));
    CAPTURE(D);
    const Inputs in = make_inputs(c, dtype, seed);
    const Results cpu = run(in, c.causal, false, nullptr);
    KernelChoiceGuard choice(KernelChoice::fast_mma);
    const int64_t fwd_before = cuda::flash_mma_forward_calls();
    const int64_t bwd_before = cuda::flash_mma_backward_calls();
    const Results got = run(in, c.causal, true, &cpu.fwd);
    CHECK(cuda::flash_mma_forward_calls() == fwd_before);
    CHECK(cuda::flash_mma_backward_calls() == bwd_before);
    CHECK(rel_error(got.fwd.out, cpu.fwd.out) < (dtype == DType::f32 ? 1e-4 : kBound));
    CHECK(rel_error(got.grads.dq, cpu.grads.dq) < (dtype == DType::f32 ? 1e-4 : kBound));
  }
}

}  // namespace mnemo

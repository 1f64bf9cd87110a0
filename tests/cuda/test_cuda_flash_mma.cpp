// The mma.sync flash attention kernels (cuda/flash_mma_*.cu, opt-in: KernelChoice::fast_mma)
// against the CPU backend and against the wmma flash kernels (cuda/flash_attention_*.cu):
// bf16 and f16, head dims 32/64/128, causal and not, grouped-query heads, Tq != Tk, lengths
// that are not multiples of the tiles (128 query rows, 64/128 keys forward; 64/32 query rows
// backward), several tiles per CTA, key-padding masks with fully hidden rows, the lse output,
// gradients and bitwise repeats. Bound: normwise relative error < 2e-2 (bf16 and f16 inputs).
// Each check also makes sure the mma kernels really ran (their launch counters moved). The
// inputs, runs and checks are shared with the wmma kernels' tests (tests/cuda/flash_check.h).
#include <doctest/doctest.h>

#include "compare.h"
#include "cuda/flash_mma.h"
#include "cuda/runtime.h"
#include "flash_check.h"

namespace mnemo {
namespace {

using cuda::KernelChoice;
using cuda::KernelChoiceGuard;
using namespace cuda_test;  // tests/cuda/compare.h, tests/cuda/flash_check.h

constexpr double kBound = 2e-2;  // bf16 / f16

const FlashCase kCases[] = {
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

// The key-padding bias in the dtype of q, k, v.
FlashInputs inputs(const FlashCase& c, DType dtype, uint64_t seed) {
  return make_flash_inputs(c, dtype, seed, dtype);
}

// On the GPU with the flash kernels, the mma ones when `mma`; checks that the mma kernels ran
// exactly when asked for.
FlashResults run_gpu(const FlashInputs& in, bool causal, bool mma,
                     const core::AttentionOutput* fwd_from) {
  KernelChoiceGuard choice(mma ? KernelChoice::fast_mma : KernelChoice::fast);
  const int64_t fwd_before = cuda::flash_mma_forward_calls();
  const int64_t bwd_before = cuda::flash_mma_backward_calls();
  FlashResults r = run_attention(in, causal, true, fwd_from);
  const bool work = in.q.numel() > 0;
  CHECK(cuda::flash_mma_forward_calls() - fwd_before == (mma && work ? 1 : 0));
  CHECK(cuda::flash_mma_backward_calls() - bwd_before == (mma ? 1 : 0));
  return r;
}

}  // namespace

TEST_CASE("cuda: flash mma attention matches the CPU and the wmma flash kernels") {
  for (DType dtype : {DType::bf16, DType::f16}) {
    for (const FlashCase& c : kCases) {
      const uint64_t seed = fresh_seed();
      CAPTURE(seed);
      CAPTURE(dtype_name(dtype));
      CAPTURE(describe(c));
      const FlashInputs in = inputs(c, dtype, seed);
      const FlashResults cpu = run_attention(in, c.causal, false, nullptr);
      const FlashResults mma = run_gpu(in, c.causal, true, &cpu.fwd);
      const FlashResults wmma = run_gpu(in, c.causal, false, &cpu.fwd);
      check_flash_close(mma, cpu, kBound, "mma vs CPU", c.Tk == 1);
      check_flash_close(wmma, cpu, kBound, "wmma flash vs CPU", c.Tk == 1);
      check_flash_close(mma, wmma, kBound, "mma vs wmma flash", c.Tk == 1);
    }
  }
}

TEST_CASE("cuda: flash mma attention rows that see no key give out 0, lse -inf and no gradient") {
  // Key padding hides every key of batch 2 (and the first 20 of batch 1); causal with
  // Tq = 150 > Tk = 140 also leaves rows 0..9 of every batch without keys.
  const FlashCase c{3, 2, 1, 150, 140, 64, true, true};
  for (DType dtype : {DType::bf16, DType::f16}) {
    const uint64_t seed = fresh_seed();
    CAPTURE(seed);
    CAPTURE(dtype_name(dtype));
    check_rows_without_keys(run_gpu(inputs(c, dtype, seed), c.causal, true, nullptr), c);
  }
}

TEST_CASE("cuda: flash mma attention gives the same bits when repeated") {
  const FlashCase c{3, 8, 2, 200, 231, 128, true, true};
  for (DType dtype : {DType::bf16, DType::f16}) {
    const uint64_t seed = fresh_seed();
    CAPTURE(seed);
    CAPTURE(dtype_name(dtype));
    const FlashInputs in = inputs(c, dtype, seed);
    check_same_bits(run_gpu(in, c.causal, true, nullptr), run_gpu(in, c.causal, true, nullptr));
  }
}

TEST_CASE("cuda: flash mma switch leaves f32 and unsupported head dims to the other kernels") {
  // f32 and D = 80 never reach the mma kernels, even with the switch on; results still match.
  for (const auto& [dtype, D] :
       {std::pair{DType::f32, int64_t(64)}, std::pair{DType::bf16, int64_t(80)}}) {
    const FlashCase c{1, 2, 2, 70, 70, D, true, false};
    const uint64_t seed = fresh_seed();
    CAPTURE(seed);
    CAPTURE(dtype_name(dtype));
    CAPTURE(D);
    const FlashInputs in = inputs(c, dtype, seed);
    const FlashResults cpu = run_attention(in, c.causal, false, nullptr);
    KernelChoiceGuard choice(KernelChoice::fast_mma);
    const int64_t fwd_before = cuda::flash_mma_forward_calls();
    const int64_t bwd_before = cuda::flash_mma_backward_calls();
    const FlashResults got = run_attention(in, c.causal, true, &cpu.fwd);
    CHECK(cuda::flash_mma_forward_calls() == fwd_before);
    CHECK(cuda::flash_mma_backward_calls() == bwd_before);
    CHECK(rel_error(got.fwd.out, cpu.fwd.out) < (dtype == DType::f32 ? 1e-4 : kBound));
    CHECK(rel_error(got.grads.dq, cpu.grads.dq) < (dtype == DType::f32 ? 1e-4 : kBound));
  }
}

}  // namespace mnemo

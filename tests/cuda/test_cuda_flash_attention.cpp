// Flash attention (cuda/flash_attention_*.cu) against the CPU backend and against the reference
// kernels of cuda/attention.cu (KernelChoiceGuard): f32, bf16 and f16, head dims 32/64/128,
// causal and not, grouped-query heads, Tq != Tk (decoding, cross-attention), lengths that are
// not tile multiples, key-padding masks with fully hidden rows, gradients, bitwise repeats.
// Bounds: normwise relative error f32 < 1e-4, bf16/f16 < 2e-2. (The inputs, runs and checks
// are shared with the mma kernels' tests: tests/cuda/flash_check.h.)
#include <doctest/doctest.h>

#include "compare.h"
#include "cuda/runtime.h"
#include "flash_check.h"

namespace mnemo {
namespace {

using cuda::KernelChoice;
using cuda::KernelChoiceGuard;
using namespace cuda_test;  // tests/cuda/compare.h, tests/cuda/flash_check.h

double bound(DType dtype) {
  return dtype == DType::f32 ? 1e-4 : 2e-2;
}

const FlashCase kCases[] = {
    {2, 4, 4, 65, 65, 32, true, false},     // D = 32, one row past a 64-row tile
    {2, 4, 4, 63, 63, 32, false, false},    // one row short of a tile
    {2, 4, 4, 65, 65, 64, true, false},     // D = 64
    {1, 2, 2, 257, 257, 64, false, false},  // several tiles plus one row
    {2, 4, 4, 65, 65, 128, true, false},    // D = 128 (32-row tiles)
    {1, 2, 2, 63, 63, 128, false, false},
    {1, 8, 2, 63, 63, 64, true, false},    // GQA: 4 query heads per kv head
    {1, 8, 2, 65, 65, 128, false, false},  // GQA, D = 128
    {2, 4, 2, 1, 300, 64, true, false},    // decoding: one query over a 300-key cache
    {1, 4, 4, 1, 300, 128, false, false},
    {2, 4, 4, 77, 129, 64, true, false},  // cross lengths, keys prepended (causal offset 52)
    {1, 4, 2, 77, 129, 32, false, false},
    {1, 2, 2, 129, 77, 64, true, false},  // Tq > Tk: the first 52 rows see no key
    {1, 1, 1, 1, 1, 32, false, false},    // one of everything
    {3, 4, 2, 65, 65, 64, true, true},    // key padding, causal: rows that see only padding
    {3, 2, 2, 33, 70, 128, false, true},  // key padding, cross lengths, a fully padded batch
    {3, 4, 4, 64, 64, 32, false, true},   // tile multiple, key padding
};

// The key-padding bias stays f32 whatever the dtype of q, k, v.
FlashInputs inputs(const FlashCase& c, DType dtype, uint64_t seed) {
  return make_flash_inputs(c, dtype, seed, DType::f32);
}

}  // namespace

TEST_CASE("cuda: flash attention matches the CPU and the reference kernels") {
  for (DType dtype : {DType::f32, DType::bf16, DType::f16}) {
    for (const FlashCase& c : kCases) {
      const uint64_t seed = fresh_seed();
      CAPTURE(seed);
      CAPTURE(dtype_name(dtype));
      CAPTURE(describe(c));
      const FlashInputs in = inputs(c, dtype, seed);
      const FlashResults cpu = run_attention(in, c.causal, false, nullptr);
      FlashResults fast, reference;
      {
        KernelChoiceGuard guard(KernelChoice::fast);
        fast = run_attention(in, c.causal, true, &cpu.fwd);
      }
      {
        KernelChoiceGuard guard(KernelChoice::reference);
        reference = run_attention(in, c.causal, true, &cpu.fwd);
      }
      check_flash_close(fast, cpu, bound(dtype), "flash vs CPU", c.Tk == 1);
      check_flash_close(fast, reference, bound(dtype), "flash vs reference kernels", c.Tk == 1);
    }
  }
}

TEST_CASE("cuda: flash attention rows that see no key give out 0, lse -inf and no gradient") {
  // Key padding hides every key of batch 2 (and the first 20 of batch 1); causal with
  // Tq = 80 > Tk = 70 also leaves rows 0..9 of every batch without keys.
  const FlashCase c{3, 2, 1, 80, 70, 64, true, true};
  for (DType dtype : {DType::f32, DType::bf16}) {
    const uint64_t seed = fresh_seed();
    CAPTURE(seed);
    CAPTURE(dtype_name(dtype));
    KernelChoiceGuard guard(KernelChoice::fast);
    check_rows_without_keys(run_attention(inputs(c, dtype, seed), c.causal, true, nullptr), c);
  }
}

TEST_CASE("cuda: flash attention forward and backward give the same bits when repeated") {
  const FlashCase c{3, 8, 2, 65, 77, 64, true, true};
  for (DType dtype : {DType::f32, DType::bf16}) {
    const uint64_t seed = fresh_seed();
    CAPTURE(seed);
    CAPTURE(dtype_name(dtype));
    const FlashInputs in = inputs(c, dtype, seed);
    KernelChoiceGuard guard(KernelChoice::fast);
    check_same_bits(run_attention(in, c.causal, true, nullptr),
                    run_attention(in, c.causal, true, nullptr));
  }
}

}  // namespace mnemo

// The shared half of the flash attention tests (test_cuda_flash_attention.cpp for the wmma
// kernels, test_cuda_flash_mma.cpp for the mma.sync ones): a case, its inputs, one forward and
// backward on either device, and the checks both files make.
//
//   const FlashInputs in = make_flash_inputs(c, dtype, seed);
//   const FlashResults cpu = run_attention(in, c.causal, false, nullptr);
//   const FlashResults gpu = run_attention(in, c.causal, true, &cpu.fwd);
//   check_flash_close(gpu, cpu, 2e-2, "flash vs CPU", c.Tk == 1);
#pragma once

#include <cstdint>
#include <string>

#include "core/ops/nn.h"
#include "core/tensor.h"

namespace mnemo::cuda_test {

struct FlashCase {
  int64_t B, H, Hkv, Tq, Tk, D;
  bool causal;
  bool key_padding;  // a (B, 1, 1, Tk) bias; B >= 3 covers every pattern
};

// "B=2 H=4 Hkv=4 Tq=65 Tk=65 D=32 causal", for CAPTURE.
std::string describe(const FlashCase& c);

struct FlashInputs {
  Tensor q, k, v, dout, mask;  // on the CPU; mask undefined without key padding
};

// Random q, k, v (B, H or Hkv, T, D) and dout in dtype, and the key-padding bias in mask_dtype:
// batch 0 a random bias in [-1, 1) with every fifth key hidden; batch 1 its first 20 keys
// hidden (left padding: with causal masking the early rows see only hidden keys); batch 2
// every key hidden (no row sees a key).
FlashInputs make_flash_inputs(const FlashCase& c, DType dtype, uint64_t seed, DType mask_dtype);

struct FlashResults {
  core::AttentionOutput fwd;
  core::AttentionGrads grads;
};

// The forward, then the backward from fwd_from (the CPU's forward, so that every backward
// sees the same out and lse) or, when null, from this forward. On the GPU when gpu, with the
// kernels the caller's guards select.
FlashResults run_attention(const FlashInputs& in, bool causal, bool gpu,
                           const core::AttentionOutput* fwd_from);

// Normwise relative errors of out, lse, dq, dk and dv below bound. single_key (Tk = 1): P = 1
// and dS = P (dP - delta) = dO.v - dO.O = 0 in exact arithmetic, so dq and dk hold only
// rounding noise and are measured against the size of the terms (q, k, dO, v are O(1)), not
// against themselves (found on the H100: the CPU's noise is ~1e-8, the GPU's exactly 0).
void check_flash_close(const FlashResults& got, const FlashResults& want, double bound,
                       const char* what, bool single_key);

// For a causal key-padding case with Tq = Tk + 10, whose rows i < 10 see no key (as do batch
// 1's rows below 30 and all of batch 2): those rows give out 0, lse -inf and dq 0; batch 2's
// keys get dk = dv = 0; everything else is finite.
void check_rows_without_keys(const FlashResults& r, const FlashCase& c);

// Two runs of the same case: the same bits in every output.
void check_same_bits(const FlashResults& a, const FlashResults& b);

}  // namespace mnemo::cuda_test

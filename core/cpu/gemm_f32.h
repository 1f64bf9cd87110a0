// mnemo's own f32 GEMM for the CPU: packed panels and an AVX2/FMA register-blocked kernel.
//
// c (M, N) = a (M, K) @ b (K, N), single-threaded, where a's element (i, k) is at
// a[i*a_rs + k*a_cs] and b's element (k, j) at b[k*b_rs + j*b_cs]: any strides (transposed
// views, stride-0 broadcasts) are read in place while packing. c is row-major with leading
// dimension ldc and is overwritten (its old contents are never read, so callers need not zero
// it), or with accumulate = true added to: c += a @ b (the chain of each element starts from
// its old value). core/cpu/matmul.cpp splits the work over threads and calls this on each
// tile; core/cpu/attention.cpp's small per-head products use the in-place kernel of
// core/cpu/gemm_f32_small.h, which computes the same chains.
//
// Each element of c is one chain of fused multiply-adds over k = 0, 1, ..., K-1 in order
// (the accumulator of a K block is reloaded from c for the next block), whatever the tile,
// its position, M, N or the block sizes: results are bit-identical however the caller cuts
// the matrix, and so across thread counts.
#pragma once

#include <cstdint>

namespace mnemo::cpu {

// True when this build has the vector kernel (x86-64 with AVX2 and FMA); otherwise
// matmul.cpp keeps using Eigen's GEMM and gemm_f32 must not be called.
bool gemm_f32_available();

// Whether the CPU backend's f32 products (core/cpu/matmul.cpp, core/cpu/attention.cpp) use
// mnemo's kernels: when the build has them, unless the environment sets MNEMO_CPU_GEMM=eigen
// (to compare the two in one binary). Read once.
bool use_own_f32_gemm();

void gemm_f32(int64_t M, int64_t N, int64_t K, const float* a, int64_t a_rs, int64_t a_cs,
              const float* b, int64_t b_rs, int64_t b_cs, float* c, int64_t ldc,
              bool accumulate = false);

// c (M, N, f64, row-major, leading dimension ldc) += sum over segments s of
// a[:, s] @ b[s, :], where K is cut into segments of `segment` rows (the last may be
// shorter). Each segment's product is the f32 chain gemm_f32 computes for a (M, seg) @
// (seg, N) product, bit for bit; the segment products are added to c in f64, in order. The
// k blocks end at segment boundaries and the segment's f32 block stays in cache until it is
// added, so this costs about one gemm_f32 over all of K (core/cpu/matmul.cpp's
// matmul_segment_sum; autograd/exact_grad.h says why).
void gemm_f32_segment_sum(int64_t M, int64_t N, int64_t K, const float* a, int64_t a_rs,
                          int64_t a_cs, const float* b, int64_t b_rs, int64_t b_cs,
                          int64_t segment, double* c, int64_t ldc);

}  // namespace mnemo::cpu

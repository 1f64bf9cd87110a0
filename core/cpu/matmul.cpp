// Matrix products on the CPU: mnemo's f32 GEMM kernel (core/cpu/gemm_f32.h; f32, bf16, f16)
// or Eigen's (f64, and f32 on machines without AVX2/FMA or with MNEMO_CPU_GEMM=eigen set),
// with mnemo's own threading.
//
// out (..., M, N) = a (..., M, K) @ b (..., K, N); the op layer (core/ops/matmul.cpp) has
// already expanded both operands' batch dims to out's (broadcast dims have stride 0).
//
// ---- No copies for transposes ----
// A GEMM reads a matrix through a leading dimension: row-major (element (i, j) at i*ld + j)
// or column-major (at i + j*ld). A strided view with strides (rs, cs) is row-major when
// cs == 1 and column-major when rs == 1 -- and a transposed matrix, x.transpose(-1, -2),
// is exactly a column-major view of x's storage. So both a and b are handed to the GEMM in
// place whichever way round they are stored; only other layouts (a column slice with step 2,
// a row broadcast with stride 0) are first copied into a contiguous buffer. This matters for
// backward: dA = dY @ B^T and dB = A^T @ dY read transposed views, never materialised ones.
//
// ---- Threads, and why results do not depend on their number ----
// Eigen's GEMM (Goto's algorithm: pack a kc-deep panel of each operand, then a register-
// blocked micro-kernel) can parallelise itself, but it then picks a smaller depth block kc
// (at most 320) than when it runs on one thread, and a different kc groups the K-sum
// differently: the same product would round differently on 1 and 2 threads. mnemo instead
// always runs Eigen's single-threaded kernel and splits the work itself:
//   - many small matrices (attention heads): whole matrices per thread;
//   - otherwise: each matrix cut into one tile per thread along its longer side.
// In single-threaded mode Eigen's kc depends on K only, and which micro-kernel computes an
// element depends only on its position relative to the ends of the matrix, as long as the
// cuts fall on whole register blocks (4 rows by mr columns of our row-major out). Then every
// element is computed by the same sequence of fused multiply-adds however the work is split;
// the test "matmul: same bits on any thread count" checks this. mnemo's f32 kernel needs no
// such care: each element is one in-order FMA chain over k wherever the cuts fall.
//
// For f64 we call Eigen's GEMM routine (internal::general_matrix_matrix_product, what `c.noalias()
// = a * b` ends up in for large matrices) directly rather than through the expression API, so that
// the product never switches to Eigen's GEMV or coefficient-wise paths for thin shapes (which sum
// in other orders) and never starts Eigen's own threads.
//
// ---- Dtypes ----
// f32 and f64 run natively. bf16/f16 operands are converted to f32 buffers, multiplied in
// f32 and rounded once on store. Integer dtypes are rejected by the op layer.
//
// ---- Measured (bench/bench_core.cpp llama_gemms: the 15 projection products of one step
// of configs/demo.json, 11.3 GFLOP; 2-core AMD EPYC Zen 4 VM, f32, median of interleaved runs)
//   1 thread:  Eigen kernel 192 ms per step (0.68x OpenBLAS 0.3.21), mnemo's f32 kernel
//              119 ms (1.00x; 75-108 GFLOP/s per product, the dW = dY^T @ X ones lowest);
//   2 threads: Eigen 82 ms (1.10x OpenBLAS, whose threads scale poorly on these small
//              products), mnemo's kernel 60 ms (1.60x; 151-208 GFLOP/s).
// `MNEMO_CPU_GEMM=eigen bench_core 2 llama_gemms` reproduces the Eigen numbers.

// GCC 12 reports a false "may be used uninitialized" inside Eigen's AVX-512 packet transpose
// (_mm256_undefined_pd is uninitialised by design); the pragma must precede the intrinsics
// headers, since the warning points into them.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <Eigen/Core>
#include <cstring>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/gemm_f32.h"
#include "core/cpu/parallel.h"

#if !EIGEN_VERSION_AT_LEAST(3, 4, 0)
#error "mnemo's CPU matmul calls Eigen 3.4's GEMM routine; install Eigen >= 3.4"
#endif

namespace mnemo::cpu {

namespace {

// Rows of out per unit of parallel work when rows are split: a multiple of the 4 rows of
// out that Eigen's register blocks span. (Column splits use Eigen's mr, the register
// block's other side.)
constexpr int64_t kRowBlock = 16;
// Below this many multiply-adds per matrix, batched products hand whole matrices to threads.
constexpr int64_t kSmallMatrix = int64_t(1) << 21;

// One matrix as the GEMM reads it: element (i, j) at data[i*ld + j] (row-major) or
// data[i + j*ld] (column-major).
template <typename C>
struct Operand {
  const C* data = nullptr;
  int64_t ld = 0;
  bool row_major = true;
  std::vector<C> buffer;  // owns data when the input had to be copied or converted

  const C* row(int64_t r) const { return data + (row_major ? r * ld : r); }
  const C* col(int64_t c) const { return data + (row_major ? c : c * ld); }
};

// Wraps the (rows, cols) matrix at p with strides (rs, cs), copying (and converting to C)
// only if the GEMM cannot read it in place. A size-1 dim never steps, so its stride is free.
template <typename C, typename T>
Operand<C> make_operand(const T* p, int64_t rows, int64_t cols, int64_t rs, int64_t cs) {
  Operand<C> op;
  if constexpr (std::is_same_v<T, C>) {
    if ((cols == 1 || cs == 1) && (rows == 1 || rs >= cols)) {
      op.data = p;
      op.ld = rows == 1 ? cols : rs;
      op.row_major = true;
      return op;
    }
    if ((rows == 1 || rs == 1) && (cols == 1 || cs >= rows)) {
      op.data = p;
      op.ld = cols == 1 ? rows : cs;
      op.row_major = false;
      return op;
    }
  }
  op.buffer.resize(size_t(rows * cols));
  for (int64_t i = 0; i < rows; ++i) {
    C* dst = op.buffer.data() + i * cols;
    for (int64_t j = 0; j < cols; ++j) dst[j] = C(p[i * rs + j * cs]);
  }
  op.data = op.buffer.data();
  op.ld = cols;
  op.row_major = true;
  return op;
}

// c (M, N) row-major with leading dimension ldc  +=  a (M, K) @ b (K, N), on this thread.
template <typename C, int AOrder, int BOrder>
void gemm(int64_t M, int64_t N, int64_t K, const C* a, int64_t lda, const C* b, int64_t ldb, C* c,
          int64_t ldc) {
  using Gemm = Eigen::internal::general_matrix_matrix_product<Eigen::Index, C, AOrder, false, C,
                                                              BOrder, false, Eigen::RowMajor, 1>;
  // Block sizes for one thread (num_threads = 1): kc then depends on K alone.
  Eigen::internal::gemm_blocking_space<Eigen::RowMajor, C, C, Eigen::Dynamic, Eigen::Dynamic,
                                       Eigen::Dynamic>
      blocking(M, N, K, 1, true);
  Gemm::run(M, N, K, a, lda, b, ldb, c, 1, ldc, C(1), blocking, nullptr);
}

template <typename C>
void gemm(int64_t M, int64_t N, int64_t K, const C* a, bool a_row_major, int64_t lda, const C* b,
          bool b_row_major, int64_t ldb, C* c, int64_t ldc) {
  constexpr int R = Eigen::RowMajor, L = Eigen::ColMajor;
  if (a_row_major && b_row_major) return gemm<C, R, R>(M, N, K, a, lda, b, ldb, c, ldc);
  if (a_row_major) return gemm<C, R, L>(M, N, K, a, lda, b, ldb, c, ldc);
  if (b_row_major) return gemm<C, L, R>(M, N, K, a, lda, b, ldb, c, ldc);
  return gemm<C, L, L>(M, N, K, a, lda, b, ldb, c, ldc);
}

// The geometry of one batched product, read off the tensors once.
struct Problem {
  int64_t M, N, K, batch;
  int64_t a_rs, a_cs, b_rs, b_cs;           // matrix strides of a and b
  std::vector<int64_t> a_offset, b_offset;  // element offset of each batch item's matrix
};

Problem make_problem(const Tensor& a, const Tensor& b, const Tensor& out) {
  Problem p;
  const int64_t rank = out.dim();
  p.M = out.size(-2);
  p.N = out.size(-1);
  p.K = a.size(-1);
  p.a_rs = a.stride(-2), p.a_cs = a.stride(-1), p.b_rs = b.stride(-2), p.b_cs = b.stride(-1);
  p.batch = out.numel() / (p.M * p.N);
  p.a_offset.resize(size_t(p.batch));
  p.b_offset.resize(size_t(p.batch));
  // Odometer over the batch dims (all but the last two), row-major like out.
  std::vector<int64_t> index(size_t(rank - 2), 0);
  int64_t a_off = 0, b_off = 0;
  for (int64_t i = 0; i < p.batch; ++i) {
    p.a_offset[size_t(i)] = a_off;
    p.b_offset[size_t(i)] = b_off;
    for (int64_t d = rank - 3; d >= 0; --d) {
      a_off += a.stride(d);
      b_off += b.stride(d);
      if (++index[size_t(d)] < out.size(d)) break;
      a_off -= a.stride(d) * out.size(d);
      b_off -= b.stride(d) * out.size(d);
      index[size_t(d)] = 0;
    }
  }
  return p;
}

// out[r0:r1, c0:c1] = A[r0:r1, :] @ B[:, c0:c1]; out (M, N) row-major. The tile is zeroed
// first (Eigen's GEMM adds into its output); bf16/f16 tiles are computed in an f32 staging
// buffer and rounded once on store. f32 goes to mnemo's own kernel (core/cpu/gemm_f32.h)
// unless use_own_f32_gemm() says no.
template <typename T, typename C>
void multiply_tile(const Operand<C>& A, const Operand<C>& B, int64_t N, int64_t K, int64_t r0,
                   int64_t r1, int64_t c0, int64_t c1, T* out) {
  const int64_t rows = r1 - r0, cols = c1 - c0;
  std::vector<C> staging;
  C* c = nullptr;
  int64_t ldc = 0;
  if constexpr (std::is_same_v<T, C>) {
    c = out + r0 * N + c0;
    ldc = N;
  } else {
    staging.resize(size_t(rows * cols));
    c = staging.data();
    ldc = cols;
  }
  if constexpr (std::is_same_v<C, float>) {
    if (use_own_f32_gemm()) {  // overwrites c: no zeroing pass
      gemm_f32(rows, cols, K, A.row(r0), A.row_major ? A.ld : 1, A.row_major ? 1 : A.ld, B.col(c0),
               B.row_major ? B.ld : 1, B.row_major ? 1 : B.ld, c, ldc);
    }
  }
  if (!std::is_same_v<C, float> || !use_own_f32_gemm()) {
    for (int64_t r = 0; r < rows; ++r) std::memset(c + r * ldc, 0, size_t(cols) * sizeof(C));
    gemm<C>(rows, cols, K, A.row(r0), A.row_major, A.ld, B.col(c0), B.row_major, B.ld, c, ldc);
  }
  if constexpr (!std::is_same_v<T, C>) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < cols; ++j) out[(r0 + r) * N + c0 + j] = convert<T>(c[r * ldc + j]);
    }
  }
}

// out_matrix (M, N) = a_matrix @ b_matrix for batch item i, split over threads (inline when
// called from a thread already). We cut along the longer side of out: row tiles share B,
// column tiles share A, and each tile packs the shared operand again, so cutting the longer
// side keeps that repeated packing small. Cuts fall on multiples of Eigen's register blocks
// (kRowBlock rows, mr columns), which keeps the results independent of the thread count.
template <typename T>
void multiply_one(const Problem& p, int64_t i, const T* a, const T* b, T* out) {
  using C = ComputeType<T>;
  const Operand<C> A = make_operand<C>(a + p.a_offset[size_t(i)], p.M, p.K, p.a_rs, p.a_cs);
  const Operand<C> B = make_operand<C>(b + p.b_offset[size_t(i)], p.K, p.N, p.b_rs, p.b_cs);
  T* out_matrix = out + i * p.M * p.N;
  const bool along_n = p.N > p.M;
  const int64_t unit = along_n ? int64_t(Eigen::internal::gebp_traits<C, C>::mr) : kRowBlock;
  const int64_t extent = along_n ? p.N : p.M;
  const int64_t units = (extent + unit - 1) / unit;
  // kParallelGrain counts elementwise operations; a multiply-add in a vectorised GEMM costs
  // about an eighth of one.
  const int64_t cost_per_unit = std::max<int64_t>(1, unit * (along_n ? p.M : p.N) * p.K / 8);
  parallel_for(units, cost_per_unit, [&](int64_t begin, int64_t end) {
    const int64_t lo = begin * unit, hi = std::min(extent, end * unit);
    if (along_n) {
      multiply_tile(A, B, p.N, p.K, 0, p.M, lo, hi, out_matrix);
    } else {
      multiply_tile(A, B, p.N, p.K, lo, hi, 0, p.N, out_matrix);
    }
  });
}

}  // namespace

void CpuBackend::matmul(const Tensor& a, const Tensor& b, const Tensor& out) {
  visit_floating(out.dtype(), "matmul", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const Problem p = make_problem(a, b, out);
    const T* ap = static_cast<const T*>(a.data_ptr());
    const T* bp = static_cast<const T*>(b.data_ptr());
    T* op = static_cast<T*>(out.data_ptr());
    const int64_t work = p.M * p.N * p.K;
    if (p.batch > 1 && (work < kSmallMatrix || p.batch >= 4 * num_threads())) {
      // Many matrices: whole ones per thread (the row split inside then runs inline).
      parallel_for(p.batch, std::max<int64_t>(1, work / 8), [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) multiply_one(p, i, ap, bp, op);
      });
    } else {
      for (int64_t i = 0; i < p.batch; ++i) multiply_one(p, i, ap, bp, op);
    }
  });
}

// out (M, N) f64 += the segment-by-segment product (core/backend_ops.def). f32 with mnemo's own
// GEMM: one fused pass (gemm_f32_segment_sum), the longer side of out split over threads as
// in multiply_one; every element's chains are the same whatever the split. Other dtypes, or
// MNEMO_CPU_GEMM=eigen: the default, one matmul per segment.
void CpuBackend::matmul_segment_sum(const Tensor& a, const Tensor& b, int64_t segment,
                                    const Tensor& out) {
  if (a.dtype() != DType::f32 || !use_own_f32_gemm()) {
    Backend::matmul_segment_sum(a, b, segment, out);
    return;
  }
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  const Operand<float> A =
      make_operand<float>(static_cast<const float*>(a.data_ptr()), M, K, a.stride(0), a.stride(1));
  const Operand<float> B =
      make_operand<float>(static_cast<const float*>(b.data_ptr()), K, N, b.stride(0), b.stride(1));
  double* c = static_cast<double*>(out.data_ptr());
  const bool along_n = N > M;
  const int64_t unit = kRowBlock, extent = along_n ? N : M;
  const int64_t units = (extent + unit - 1) / unit;
  const int64_t cost_per_unit = std::max<int64_t>(1, unit * (along_n ? M : N) * K / 8);
  parallel_for(units, cost_per_unit, [&](int64_t begin, int64_t end) {
    const int64_t lo = begin * unit, hi = std::min(extent, end * unit);
    const int64_t r0 = along_n ? 0 : lo, rows = along_n ? M : hi - lo;
    const int64_t c0 = along_n ? lo : 0, cols = along_n ? hi - lo : N;
    gemm_f32_segment_sum(rows, cols, K, A.row(r0), A.row_major ? A.ld : 1, A.row_major ? 1 : A.ld,
                         B.col(c0), B.row_major ? B.ld : 1, B.row_major ? 1 : B.ld, segment,
                         c + r0 * N + c0, N);
  });
}

}  // namespace mnemo::cpu

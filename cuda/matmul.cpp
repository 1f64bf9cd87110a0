// Matrix products on the GPU through cuBLASLt.
//
// out (..., M, N) = a (..., M, K) @ b (..., K, N); the op layer (core/ops/matmul.cpp) has
// already expanded both operands' batch dims to out's (broadcast dims have stride 0).
//
// ---- Row-major products on a column-major library ----
// cuBLASLt thinks in column-major matrices. A row-major (R, C) matrix with row stride ld is,
// read column-major, its transpose: a (C, R) matrix with leading dimension ld. So instead of
// out = a b we ask for out^T = b^T a^T, which cuBLASLt writes column-major as an (N, M)
// matrix with ld N: exactly our row-major out. Each operand m (R, C) enters as m^T:
//   - m row-major (column stride 1, row stride ld >= C): m^T is the column-major (C, R)
//     matrix at ld, taken as it is (CUBLAS_OP_N);
//   - m column-major (row stride 1, column stride ld >= R), e.g. a transposed view: m is the
//     column-major (R, C) matrix at ld, and cuBLASLt transposes it (CUBLAS_OP_T).
// So transposed views (dA = dY B^T, dB = A^T dY in backward) are read in place, never copied.
//
// ---- Batches ----
// One strided-batched call covers every batch item when each operand's batch dims collapse
// to one stride: item i's matrix at data + i * stride (stride 0 for a broadcast operand).
// An operand whose batch dims do not collapse (e.g. (3, 4) with strides (0, 12)) or whose
// matrix is neither row- nor column-major (a column slice with step 2, a stride-0 row) is
// first copied into a contiguous tensor. out must be contiguous; a strided out is computed
// into a temporary and copied.
//
// ---- Dtypes ----
//   f32   CUBLAS_COMPUTE_32F (CUBLAS_COMPUTE_32F_FAST_TF32 when allow_tf32(): cuda/runtime.h)
//   f64   CUBLAS_COMPUTE_64F
//   bf16  CUBLAS_COMPUTE_32F: f32 accumulation, rounded once on store
//   f16   CUBLAS_COMPUTE_32F
//
// ---- Plans ----
// The descriptors and the algorithm cuBLASLt's heuristic picks depend only on the problem's
// geometry (sizes, leading dims, batch strides, transposes, dtype, pointer alignments), so
// they are built once per geometry and cached (a training step repeats the same few dozen
// shapes). A fixed algorithm per shape also keeps results bitwise repeatable. The heuristic
// is told the operands' real pointer alignment (default 256 bytes would admit kernels that
// fault on a view starting mid-row) and the 32 MiB workspace (cuda/blas.h).
//
// Every cuBLASLt function is called through the table of cuda/cublaslt_library.h
// (lt.cublasLtMatmul): the library is loaded on first use, not linked.
#include <cublasLt.h>

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>

#include "core/error.h"
#include "cuda/blas.h"
#include "cuda/context.h"
#include "cuda/cublaslt_library.h"
#include "cuda/ops.h"
#include "cuda/runtime.h"

namespace mnemo::cuda {

namespace {

// One operand m (R, C) as cuBLASLt reads m^T (see the header): a column-major matrix of
// `rows` x `cols` at leading dim ld, transposed by cuBLASLt when op is CUBLAS_OP_T; batch
// item i at data + i * batch_stride elements.
struct Operand {
  const void* data = nullptr;
  int64_t rows = 0, cols = 0, ld = 0;
  cublasOperation_t op = CUBLAS_OP_N;
  int64_t batch_stride = 0;
};

// The one stride s with offset(batch item i) = i * s, i the row-major linear index over t's
// batch dims (all but the last two), if there is one. Size-1 dims never step, so their
// stride is free.
std::optional<int64_t> collapsed_batch_stride(const Tensor& t) {
  int64_t stride = 0, inner = 1;  // inner: product of the sizes of the dims inside d
  bool found = false;
  for (int64_t d = t.dim() - 3; d >= 0; --d) {
    const int64_t size = t.size(d);
    if (size == 1) continue;
    if (!found) {
      stride = t.stride(d);
      found = true;
    } else if (t.stride(d) != stride * inner) {
      return std::nullopt;
    }
    inner *= size;
  }
  return stride;
}

// t's matrices (R, C) as cuBLASLt operands, or nullopt if they must be copied first.
std::optional<Operand> describe(const Tensor& t) {
  const int64_t R = t.size(-2), C = t.size(-1), rs = t.stride(-2), cs = t.stride(-1);
  const std::optional<int64_t> batch_stride = collapsed_batch_stride(t);
  if (!batch_stride) return std::nullopt;
  Operand m;
  m.data = t.data_ptr();
  m.batch_stride = *batch_stride;
  if ((C == 1 || cs == 1) && (R == 1 || rs >= C)) {  // row-major: m^T is (C, R) at ld
    m.rows = C, m.cols = R, m.ld = R == 1 ? C : rs, m.op = CUBLAS_OP_N;
    return m;
  }
  if ((R == 1 || rs == 1) && (C == 1 || cs >= R)) {  // column-major: m is (R, C) at ld
    m.rows = R, m.cols = C, m.ld = C == 1 ? R : cs, m.op = CUBLAS_OP_T;
    return m;
  }
  return std::nullopt;
}

// A contiguous copy of t (always describable: row-major, batch stride R * C).
Tensor contiguous_copy(const Tensor& t) {
  Tensor copy = Tensor::empty(t.shape(), t.dtype(), t.device());
  copy_on_device(t, copy);
  return copy;
}

// The largest power of two up to 256 dividing the address of every batch item's matrix.
int64_t alignment(const void* p, int64_t batch_stride_bytes) {
  uint64_t bits = uint64_t(reinterpret_cast<uintptr_t>(p)) | uint64_t(batch_stride_bytes) | 256;
  return int64_t(bits & (~bits + 1));  // the lowest set bit
}

struct Types {
  cudaDataType_t data, scale;
  cublasComputeType_t compute;
};

Types types_for(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return {CUDA_R_32F, CUDA_R_32F,
              allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F};
    case DType::f64: return {CUDA_R_64F, CUDA_R_64F, CUBLAS_COMPUTE_64F};
    case DType::bf16: return {CUDA_R_16BF, CUDA_R_32F, CUBLAS_COMPUTE_32F};
    case DType::f16: return {CUDA_R_16F, CUDA_R_32F, CUBLAS_COMPUTE_32F};
    default: break;
  }
  fail_internal("matmul: dtype {} is not supported on the cuda backend (floating dtypes only)",
                dtype_name(dtype));
}

// Everything the descriptors and the heuristic's choice depend on.
using PlanKey = std::array<int64_t, 22>;

// The descriptors of one geometry and the algorithm chosen for it (never destroyed: cached
// for the process's life).
struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool found = false;  // false: the heuristic had no algorithm for this geometry
};

cublasLtMatrixLayout_t make_layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld,
                                   int64_t batch, int64_t batch_stride) {
  const CublasLt& lt = cublaslt();
  cublasLtMatrixLayout_t layout = nullptr;
  MNEMO_CUBLAS_CHECK(
      lt.cublasLtMatrixLayoutCreate(&layout, type, uint64_t(rows), uint64_t(cols), ld));
  if (batch > 1) {
    const int32_t count = int32_t(batch);
    MNEMO_CUBLAS_CHECK(lt.cublasLtMatrixLayoutSetAttribute(
        layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
    MNEMO_CUBLAS_CHECK(lt.cublasLtMatrixLayoutSetAttribute(
        layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &batch_stride, sizeof(batch_stride)));
  }
  return layout;
}

// The geometry of one cuBLASLt call: D (N, M) column-major = op(A) op(B), with A from b and
// B from a (see the header). Alignments in bytes.
struct Problem {
  int device;
  DType dtype;
  Types types;
  Operand A, B;  // A: b's matrices (op(A) is (N, K)); B: a's (op(B) is (K, M))
  int64_t M, N, K, batch;
  int64_t align_a, align_b, align_c;

  PlanKey key() const {
    // clang-format off
    return {device, int64_t(dtype), int64_t(types.data), int64_t(types.scale),
            int64_t(types.compute),
            A.rows, A.cols, A.ld, int64_t(A.op), A.batch_stride,
            B.rows, B.cols, B.ld, int64_t(B.op), B.batch_stride,
            M, N, K, batch, align_a, align_b, align_c};
    // clang-format on
  }
};

Plan make_plan(const Problem& p, const BlasHandle& handle) {
  const CublasLt& lt = cublaslt();
  Plan plan;
  MNEMO_CUBLAS_CHECK(lt.cublasLtMatmulDescCreate(&plan.desc, p.types.compute, p.types.scale));
  MNEMO_CUBLAS_CHECK(lt.cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA,
                                                       &p.A.op, sizeof(p.A.op)));
  MNEMO_CUBLAS_CHECK(lt.cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB,
                                                       &p.B.op, sizeof(p.B.op)));
  plan.a = make_layout(p.types.data, p.A.rows, p.A.cols, p.A.ld, p.batch, p.A.batch_stride);
  plan.b = make_layout(p.types.data, p.B.rows, p.B.cols, p.B.ld, p.batch, p.B.batch_stride);
  plan.c = make_layout(p.types.data, p.N, p.M, p.N, p.batch, p.M * p.N);

  cublasLtMatmulPreference_t pref = nullptr;
  MNEMO_CUBLAS_CHECK(lt.cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t workspace = handle.workspace_bytes;
  MNEMO_CUBLAS_CHECK(lt.cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof(workspace)));
  const uint32_t align_a = uint32_t(p.align_a), align_b = uint32_t(p.align_b),
                 align_c = uint32_t(p.align_c);
  MNEMO_CUBLAS_CHECK(lt.cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a, sizeof(align_a)));
  MNEMO_CUBLAS_CHECK(lt.cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b, sizeof(align_b)));
  MNEMO_CUBLAS_CHECK(lt.cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_c, sizeof(align_c)));
  MNEMO_CUBLAS_CHECK(lt.cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_c, sizeof(align_c)));

  cublasLtMatmulHeuristicResult_t result{};
  int returned = 0;
  const cublasStatus_t status = lt.cublasLtMatmulAlgoGetHeuristic(
      handle.lt, plan.desc, plan.a, plan.b, plan.c, plan.c, pref, 1, &result, &returned);
  MNEMO_CUBLAS_CHECK(lt.cublasLtMatmulPreferenceDestroy(pref));
  // NOT_SUPPORTED: no algorithm fits (the caller retries with contiguous copies).
  if (status != CUBLAS_STATUS_NOT_SUPPORTED) MNEMO_CUBLAS_CHECK(status);
  plan.found = status == CUBLAS_STATUS_SUCCESS && returned > 0;
  if (plan.found) plan.algo = result.algo;
  return plan;
}

// The cached plan of p's geometry (made on first sight).
const Plan& plan_for(const Problem& p, const BlasHandle& handle) {
  static std::mutex mutex;
  static auto* plans = new std::map<PlanKey, Plan>();  // never destroyed (see Plan)
  const PlanKey key = p.key();
  std::lock_guard<std::mutex> lock(mutex);
  auto it = plans->find(key);
  if (it == plans->end()) it = plans->emplace(key, make_plan(p, handle)).first;
  return it->second;
}

// Runs out = a @ b as one cuBLASLt call; false if cuBLASLt has no algorithm for it.
bool run(const Tensor& out, const Operand& a, const Operand& b, int64_t M, int64_t N, int64_t K,
         int64_t batch) {
  const int device = out.device().index;
  const int64_t elem = int64_t(out.element_size());
  Problem p{device, out.dtype(), types_for(out.dtype()), b, a, M, N, K, batch, 0, 0, 0};
  p.align_a = alignment(b.data, batch > 1 ? b.batch_stride * elem : 0);
  p.align_b = alignment(a.data, batch > 1 ? a.batch_stride * elem : 0);
  p.align_c = alignment(out.data_ptr(), batch > 1 ? M * N * elem : 0);
  const BlasHandle& handle = blas_handle(device);  // loads cuBLASLt on the first product
  const CublasLt& lt = cublaslt();
  const Plan& plan = plan_for(p, handle);
  if (!plan.found) return false;
  const float alpha_f = 1, beta_f = 0;
  const double alpha_d = 1, beta_d = 0;
  const bool f64 = out.dtype() == DType::f64;
  const void* alpha = f64 ? static_cast<const void*>(&alpha_d) : &alpha_f;
  const void* beta = f64 ? static_cast<const void*>(&beta_d) : &beta_f;
  MNEMO_CUBLAS_CHECK(lt.cublasLtMatmul(handle.lt, plan.desc, alpha, p.A.data, plan.a, p.B.data,
                                       plan.b, beta, out.data_ptr(), plan.c, out.data_ptr(), plan.c,
                                       &plan.algo, handle.workspace, handle.workspace_bytes,
                                       stream(device)));
  return true;
}

}  // namespace

void matmul(const Tensor& a, const Tensor& b, const Tensor& out) {
  MNEMO_ASSERT(out.dim() >= 2 && a.dim() == out.dim() && b.dim() == out.dim(),
               "matmul: expected a (..., M, K), b (..., K, N), out (..., M, N) of one rank, got "
               "{}, {}, {}",
               shape_str(a.shape()), shape_str(b.shape()), shape_str(out.shape()));
  MNEMO_ASSERT(a.dtype() == out.dtype() && b.dtype() == out.dtype(),
               "matmul: a ({}), b ({}) and out ({}) must share a dtype", a.dtype(), b.dtype(),
               out.dtype());
  const int64_t M = out.size(-2), N = out.size(-1), K = a.size(-1);
  if (out.numel() == 0) return;
  if (K == 0) {  // an empty sum
    fill(out, 0);
    return;
  }
  if (!out.is_contiguous()) {
    Tensor result = Tensor::empty(out.shape(), out.dtype(), out.device());
    matmul(a, b, result);
    copy_on_device(result, out);
    return;
  }
  const int64_t batch = out.numel() / (M * N);
  MNEMO_ASSERT(batch <= INT32_MAX, "matmul: {} batch items exceed cuBLASLt's batch count", batch);
  // Operands in place where cuBLASLt can read them, else contiguous copies.
  Tensor a_copy, b_copy;
  std::optional<Operand> A = describe(a), B = describe(b);
  if (!A) A = describe(a_copy = contiguous_copy(a));
  if (!B) B = describe(b_copy = contiguous_copy(b));
  if (run(out, *A, *B, M, N, K, batch)) return;
  // No algorithm for these leading dims / alignments: fresh contiguous operands always have
  // one (256-byte aligned, ld = row length).
  if (!a_copy.defined()) A = describe(a_copy = contiguous_copy(a));
  if (!b_copy.defined()) B = describe(b_copy = contiguous_copy(b));
  MNEMO_ASSERT(run(out, *A, *B, M, N, K, batch),
               "matmul: cuBLASLt has no algorithm for {} @ {} in {}", shape_str(a.shape()),
               shape_str(b.shape()), out.dtype());
}

}  // namespace mnemo::cuda

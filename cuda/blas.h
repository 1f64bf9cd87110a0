// cuBLASLt as the CUDA backend uses it: one handle and one 32 MiB workspace per device, and
// status checking that names the call site.
//
//   const CublasLt& lt = cublaslt();  // cuda/cublaslt_library.h: loaded on first use
//   MNEMO_CUBLAS_CHECK(lt.cublasLtMatmul(handle.lt, ...));
//
// throws mnemo::Error("cuda/matmul.cpp:120: lt.cublasLtMatmul(...) failed: the requested
// functionality is not supported (CUBLAS_STATUS_NOT_SUPPORTED)") unless the call returns
// CUBLAS_STATUS_SUCCESS.
//
// The handle and workspace of a device are created on first use and live until the process
// ends (never destroyed: destroying them from a static destructor would race the CUDA
// runtime's own teardown). The workspace is a tensor from the caching allocator; every
// cuBLASLt call that uses it is queued on the device's compute stream (cuda/context.h), so
// calls never overlap and one workspace per device is enough.
//
// TF32 (cuda/runtime.h: set_allow_tf32 / allow_tf32) is off by default: f32 products then
// round like the CPU's. MNEMO_ALLOW_TF32=1 in the environment turns it on at first use.
//
// Internal to cuda/ (includes the cuBLASLt header).
#pragma once

#include <cublasLt.h>

#include <cstddef>

namespace mnemo::cuda {

inline constexpr size_t kBlasWorkspaceBytes = size_t(32) << 20;

struct BlasHandle {
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;  // kBlasWorkspaceBytes on the device
  size_t workspace_bytes = 0;
};

// The cuBLASLt handle and workspace of GPU `device` (created on first use; the caller has
// made `device` current).
const BlasHandle& blas_handle(int device);

// "FILE:LINE: CALL failed: <cublasLtGetStatusString> (<cublasLtGetStatusName>)"; if cuBLASLt
// has not been loaded (cuda/cublaslt_library.h), "FILE:LINE: CALL failed: cuBLAS status N".
void check_blas(cublasStatus_t status, const char* call, const char* file, int line);

}  // namespace mnemo::cuda

#define MNEMO_CUBLAS_CHECK(call) ::mnemo::cuda::check_blas((call), #call, __FILE__, __LINE__)

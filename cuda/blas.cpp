// The per-device cuBLASLt handle and workspace, cuBLAS status checks, and the TF32 switch
// (cuda/blas.h, cuda/runtime.h). cuBLASLt itself is loaded on first use
// (cuda/cublaslt_library.h).
#include "cuda/blas.h"

#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "core/error.h"
#include "core/tensor.h"
#include "cuda/cublaslt_library.h"
#include "cuda/runtime.h"

namespace mnemo::cuda {

namespace {

constexpr int kMaxDevices = 64;

struct BlasState {
  std::once_flag created;
  BlasHandle handle;
  Tensor workspace;  // keeps the workspace's block out of the allocator's free lists
};

}  // namespace

void check_blas(cublasStatus_t status, const char* call, const char* file, int line) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  // Only a loaded library returns statuses, but a check must not fail for another reason
  // (load it, or throw its load error) while reporting one: without the library, the number.
  const CublasLt* lt = cublaslt_if_loaded();
  if (lt == nullptr) {
    fail_system("{}:{}: {} failed: cuBLAS status {}", file, line, call, int(status));
  }
  fail_system("{}:{}: {} failed: {} ({})", file, line, call, lt->cublasLtGetStatusString(status),
              lt->cublasLtGetStatusName(status));
}

const BlasHandle& blas_handle(int device) {
  // Allocated once and never freed (see cuda/blas.h): no static destructor touches CUDA.
  static auto* states = new std::array<BlasState, kMaxDevices>();
  MNEMO_ASSERT(device >= 0 && device < kMaxDevices, "cuBLASLt: device index {} out of range",
               device);
  BlasState& s = (*states)[size_t(device)];
  std::call_once(s.created, [&] {
    const CublasLt& lt = cublaslt();  // the first use: loads the library
    MNEMO_CUBLAS_CHECK(lt.cublasLtCreate(&s.handle.lt));
    // f32 elements: the allocator's blocks are 256-byte aligned, which cuBLASLt wants.
    s.workspace = Tensor::empty({int64_t(kBlasWorkspaceBytes / sizeof(float))}, DType::f32,
                                Device::cuda(device));
    s.handle.workspace = s.workspace.data_ptr();
    s.handle.workspace_bytes = kBlasWorkspaceBytes;
  });
  return s.handle;
}

namespace {

// -1: not decided yet (read MNEMO_ALLOW_TF32 on first use), 0: off, 1: on.
std::atomic<int> tf32_state{-1};

}  // namespace

void set_allow_tf32(bool allow) {
  tf32_state.store(allow ? 1 : 0);
}

bool allow_tf32() {
  int state = tf32_state.load();
  if (state < 0) {
    const char* env = std::getenv("MNEMO_ALLOW_TF32");
    const int from_env = env != nullptr && std::strcmp(env, "1") == 0 ? 1 : 0;
    // A set_allow_tf32 that ran meanwhile wins over the environment.
    tf32_state.compare_exchange_strong(state, from_env);
    state = tf32_state.load();
  }
  return state == 1;
}

}  // namespace mnemo::cuda

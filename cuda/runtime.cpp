// The device query behind cuda/runtime.h, and the error formatting behind cuda/check.h.
#include "cuda/runtime.h"

#include <cuda_runtime_api.h>
#include <fmt/format.h>

#include <string_view>

#include "core/error.h"
#include "cuda/check.h"

namespace mnemo::cuda {

namespace {

struct DeviceQuery {
  int count = 0;
  std::string reason;  // why count is 0; empty otherwise
};

// Runs cudaGetDeviceCount once. A failure (no driver, no device) is a result, not an error.
const DeviceQuery& query() {
  static const DeviceQuery result = [] {
    DeviceQuery q;
    cudaError_t status = cudaGetDeviceCount(&q.count);
    if (status != cudaSuccess) {
      q.count = 0;
      q.reason = fmt::format("cudaGetDeviceCount: {}", cudaGetErrorString(status));
      cudaGetLastError();  // clear the error so it does not surface in a later, unrelated check
    } else if (q.count == 0) {
      q.reason = "cudaGetDeviceCount: 0 devices";
    }
    return q;
  }();
  return result;
}

// "13.0" from the runtime's encoding 1000 * major + 10 * minor.
std::string version_string(int encoded) {
  return fmt::format("{}.{}", encoded / 1000, (encoded % 1000) / 10);
}

// Strips the build machine's folders from __FILE__: "/src/mnemo/cuda/copy.cpp" -> "cuda/copy.cpp".
std::string_view short_path(std::string_view file) {
  size_t at = file.rfind("/cuda/");
  return at == std::string_view::npos ? file : file.substr(at + 1);
}

}  // namespace

std::string describe_error(cudaError_t status, const char* call, const char* file, int line) {
  return fmt::format("{}:{}: {} failed: {} ({})", short_path(file), line, call,
                     cudaGetErrorString(status), cudaGetErrorName(status));
}

void check(cudaError_t status, const char* call, const char* file, int line) {
  if (status == cudaSuccess) [[likely]] {
    return;
  }
  cudaGetLastError();  // the error is reported by the exception; don't let it linger
  throw SystemError(describe_error(status, call, file, line));
}

int device_count() {
  return query().count;
}

std::string no_device_reason() {
  return query().reason;
}

std::string describe_devices() {
  const DeviceQuery& q = query();
  if (q.count == 0) return fmt::format("no GPU visible: {}", q.reason);
  std::string text = fmt::format("{} GPU{}:", q.count, q.count == 1 ? "" : "s");
  for (int i = 0; i < q.count; ++i) {
    cudaDeviceProp prop{};
    MNEMO_CUDA_CHECK(cudaGetDeviceProperties(&prop, i));
    text += fmt::format("{} {} (sm_{}{}, {:.1f} GiB)", i == 0 ? "" : ",", prop.name, prop.major,
                        prop.minor, double(prop.totalGlobalMem) / double(1ull << 30));
  }
  int runtime = 0, driver = 0;
  MNEMO_CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
  MNEMO_CUDA_CHECK(cudaDriverGetVersion(&driver));
  return text +
         fmt::format("; runtime {}, driver {}", version_string(runtime), version_string(driver));
}

}  // namespace mnemo::cuda

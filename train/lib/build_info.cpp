// `mnemo version`'s report. Compile-time facts come from the generated mnemo_build_info.h
// (cmake/build_info.h.in); the CUDA device query and the OpenMP thread count are asked of
// the running process.
#include "train/lib/build_info.h"

#include <cstdlib>

#include <fmt/format.h>

#include <Eigen/Core>

#include "core/cpu/parallel.h"
#include "mnemo_build_info.h"

#if MNEMO_HAVE_CUDA
#include "cuda/runtime.h"
#endif

namespace mnemo {

namespace {

// "off" for a library the build did not find, else its version.
std::string version_or_off(const char* version) {
  return version[0] == '\0' ? std::string("off") : std::string(version);
}

std::string cuda_line() {
#if MNEMO_HAVE_CUDA
  return fmt::format("CUDA: on (toolkit {}, archs {}; runtime: {})", MNEMO_CUDA_TOOLKIT_VERSION,
                     MNEMO_CUDA_ARCHS, cuda::describe_devices());
#else
  return "CUDA: off";
#endif
}

std::string openmp_line() {
#if MNEMO_HAVE_OPENMP
  const int threads = num_threads();
  // How idle threads wait (the mnemo CLI sets GOMP_SPINCOUNT=10000 unless told otherwise).
  const char* policy = std::getenv("OMP_WAIT_POLICY");
  const char* spin = std::getenv("GOMP_SPINCOUNT");
  std::string waiting;
  if (policy) waiting += fmt::format(", OMP_WAIT_POLICY={}", policy);
  if (spin) waiting += fmt::format(", GOMP_SPINCOUNT={}", spin);
  return fmt::format("OpenMP: on (OpenMP {}, {} thread{}{})", MNEMO_OPENMP_VERSION, threads,
                     threads == 1 ? "" : "s", waiting);
#else
  return "OpenMP: off";
#endif
}

}  // namespace

std::string version() {
  return MNEMO_VERSION;
}

std::vector<std::string> build_features() {
  const char* sanitizers = MNEMO_SANITIZE[0] == '\0' ? "none" : MNEMO_SANITIZE;
  return {
      fmt::format("build: {}, {}, sanitizers: {}", MNEMO_BUILD_TYPE, MNEMO_COMPILER, sanitizers),
      cuda_line(),
      "cuDNN: " + version_or_off(MNEMO_CUDNN_VERSION),
      "NCCL: " + version_or_off(MNEMO_NCCL_VERSION),
      fmt::format("MPI: {}", MNEMO_MPI_DESCRIPTION),
      openmp_line(),
      fmt::format("BLAS: Eigen {}.{}.{} (matrix products)", EIGEN_WORLD_VERSION,
                  EIGEN_MAJOR_VERSION, EIGEN_MINOR_VERSION),
  };
}

std::string version_report() {
  std::string report = fmt::format("mnemo {}\n", version());
  for (const std::string& line : build_features()) report += line + "\n";
  return report;
}

}  // namespace mnemo

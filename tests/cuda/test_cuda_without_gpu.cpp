// A CUDA build on a machine with no visible GPU (CI, laptops): the backend is registered,
// the runtime reports why there is no device, and every use of cuda:N is a mnemo::Error
// that says so — never a crash, never a silent CPU fallback. Run by `test_cuda --without-gpu`
// (tests/cuda/main.cpp), skipped when a GPU is visible. cuBLASLt, which the backend loads on
// first use (cuda/cublaslt_library.h), loads and answers without a GPU too.
#include <dlfcn.h>
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <string_view>

#include "autograd/ops.h"
#include "core/backend.h"
#include "cuda/allocator.h"
#include "cuda/blas.h"
#include "cuda/cublaslt_library.h"
#include "cuda/runtime.h"
#include "support/errors.h"

namespace mnemo {

namespace {

// Whether libcublasLt is in this process: RTLD_NOLOAD finds a loaded library (by its SONAME,
// however it was opened) and loads nothing.
bool cublaslt_in_process() {
  void* library = dlopen(cuda::cublaslt_soname(), RTLD_NOW | RTLD_NOLOAD);
  if (library == nullptr) return false;
  dlclose(library);  // drop the reference RTLD_NOLOAD took
  return true;
}

}  // namespace

TEST_SUITE("without gpu") {
  // Loads cuBLASLt: no other case of the suite may (in any order), or this one would fail.
  TEST_CASE("cuda without gpu: cuBLASLt is loaded on first use, not at start-up") {
    // Started: the backend registered itself from its static initialisers.
    REQUIRE(has_backend(DeviceType::cuda));
    REQUIRE(std::string_view(cuda::cublaslt_soname()).starts_with("libcublasLt.so."));
    CHECK_FALSE(cublaslt_in_process());
    CHECK(cuda::cublaslt_if_loaded() == nullptr);
    // A status reported before the library is loaded is a number, and loads nothing.
    const std::string where = "cuda/example.cpp:7: lt.cublasLtExample(x) failed: ";
    CHECK(test::error_message<SystemError>([] {
            cuda::check_blas(CUBLAS_STATUS_NOT_SUPPORTED, "lt.cublasLtExample(x)",
                             "cuda/example.cpp", 7);
          }) == where + "cuBLAS status " + std::to_string(int(CUBLAS_STATUS_NOT_SUPPORTED)));
    CHECK_FALSE(cublaslt_in_process());

    // The first use loads it: every function of the table, and the probe above now sees it.
    const cuda::CublasLt& lt = cuda::cublaslt();
    CHECK(cublaslt_in_process());
    CHECK(cuda::cublaslt_if_loaded() == &lt);
    CHECK(&cuda::cublaslt() == &lt);  // loaded once
#define MNEMO_CHECK_LOADED(name) CHECK_MESSAGE((lt.name != nullptr), #name);
    MNEMO_CUBLASLT_FUNCTIONS(MNEMO_CHECK_LOADED)
#undef MNEMO_CHECK_LOADED

    // Status strings need no GPU; check_blas reports through them once the library is loaded.
    CHECK(std::string_view(lt.cublasLtGetStatusName(CUBLAS_STATUS_NOT_SUPPORTED)) ==
          "CUBLAS_STATUS_NOT_SUPPORTED");
    const std::string description = lt.cublasLtGetStatusString(CUBLAS_STATUS_NOT_SUPPORTED);
    CHECK_FALSE(description.empty());
    CHECK(description != "CUBLAS_STATUS_NOT_SUPPORTED");
    CHECK(test::error_message<SystemError>([] {
            cuda::check_blas(CUBLAS_STATUS_NOT_SUPPORTED, "lt.cublasLtExample(x)",
                             "cuda/example.cpp", 7);
          }) == where + description + " (CUBLAS_STATUS_NOT_SUPPORTED)");
    CHECK_NOTHROW(cuda::check_blas(CUBLAS_STATUS_SUCCESS, "lt.cublasLtExample(x)", "f.cpp", 1));

    // The first file that opens is taken: here the file CMake found, which a build without
    // LD_LIBRARY_PATH falls back to.
    const std::string found = cuda::cublaslt_files()[1];
    REQUIRE(found.starts_with("/"));
    const char* const fallback[] = {"libmnemo-no-such-library.so.1", found.c_str()};
    const cuda::CublasLt from_found = cuda::load_cublaslt(fallback);
    REQUIRE((from_found.cublasLtGetStatusName != nullptr));
    CHECK(std::string_view(from_found.cublasLtGetStatusName(CUBLAS_STATUS_SUCCESS)) ==
          "CUBLAS_STATUS_SUCCESS");
  }

  // Loads nothing: every file it tries fails to open or is not cuBLASLt.
  TEST_CASE("cuda without gpu: a cuBLASLt that cannot be loaded is an error, not a crash") {
    // No such file: each file tried, with dlopen's reason.
    const char* const missing[] = {"libmnemo-no-such-library.so.1", "",
                                   "/nonexistent/libcublasLt.so.13"};
    const std::string not_found =
        test::error_message<SystemError>([&] { cuda::load_cublaslt(missing); });
    CHECK(not_found.starts_with(std::string("cuBLASLt: cannot load ") + cuda::cublaslt_soname()));
    CHECK(not_found.find("libmnemo-no-such-library.so.1: cannot open shared object file") !=
          std::string::npos);
    CHECK(not_found.find("/nonexistent/libcublasLt.so.13: cannot open shared object file") !=
          std::string::npos);
    CHECK(test::error_message<SystemError>([] {
            cuda::load_cublaslt({});
          }).find("no file to try") != std::string::npos);
    // A library that opens but is not cuBLASLt: the first missing function, with dlsym's reason.
    const char* const libc[] = {"libc.so.6"};
    const std::string no_symbol =
        test::error_message<SystemError>([&] { cuda::load_cublaslt(libc); });
    CHECK(no_symbol.starts_with("cuBLASLt: libc.so.6 has no function cublasLtCreate ("));
    CHECK(no_symbol.find("undefined symbol: cublasLtCreate") != std::string::npos);
  }

  TEST_CASE("cuda without gpu: the runtime reports no device and why") {
    CHECK(cuda::device_count() == 0);
    const std::string reason = cuda::no_device_reason();
    CHECK(reason.starts_with("cudaGetDeviceCount: "));
    CHECK(reason.size() > std::string("cudaGetDeviceCount: ").size());
    CHECK(cuda::describe_devices() == "no GPU visible: " + reason);
  }

  TEST_CASE("cuda without gpu: the backend is registered but every device is unavailable") {
    CHECK(has_backend(DeviceType::cuda));
    CHECK(backend_for(Device::cuda(0)).name() == "cuda");
    const std::string unavailable =
        "cuda:0 is not available (0 CUDA devices visible; " + cuda::no_device_reason() + ")";
    CHECK_THROWS_WITH_AS(Tensor::empty({3}, DType::f32, Device::cuda(0)),
                         doctest::Contains(unavailable.c_str()), Error);
    CHECK_THROWS_WITH_AS(to(from_vector(std::vector<double>{1, 2}, {2}), Device::cuda(0)),
                         doctest::Contains("cuda allocator: cuda:0 is not available"), Error);
    CHECK_THROWS_WITH_AS(synchronize(Device::cuda(1)),
                         doctest::Contains("synchronize: cuda:1 is not available"), Error);
  }

  TEST_CASE("cuda without gpu: even a tensor with no elements names the missing device") {
    // As in PyTorch, placing a tensor on a device checks the device, whatever its size.
    CHECK_THROWS_WITH_AS(Tensor::empty({0, 4}, DType::f32, Device::cuda(0)),
                         doctest::Contains("cuda:0 is not available"), Error);
  }

  TEST_CASE("cuda without gpu: the caching allocator's size classes") {
    // Below 1 MiB: multiples of 512 bytes.
    CHECK(cuda::size_class(1) == 512);
    CHECK(cuda::size_class(512) == 512);
    CHECK(cuda::size_class(513) == 1024);
    CHECK(cuda::size_class(size_t(1) << 20) == size_t(1) << 20);
    // Above: 8 classes per power of two, so a block wastes at most 1/8 of its request.
    CHECK(cuda::size_class((size_t(1) << 20) + 1) == (size_t(9) << 17));
    for (size_t bytes = 1; bytes < (size_t(1) << 34); bytes = bytes * 3 + 7) {
      const size_t cls = cuda::size_class(bytes);
      CAPTURE(bytes);
      CHECK(cls >= bytes);
      CHECK(double(cls - bytes) <= std::max(512.0, double(bytes) / 8));
      CHECK(cuda::size_class(cls) == cls);  // a class is its own class
    }
  }
}

}  // namespace mnemo

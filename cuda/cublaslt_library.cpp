// Loading cuBLASLt on first use (cuda/cublaslt_library.h).
//
// MNEMO_CUBLASLT_SONAME and MNEMO_CUBLASLT_PATH come from cuda/CMakeLists.txt: the SONAME of
// the toolkit's cuBLASLt and the file CMake found at configure time ("" if it found none).
#include "cuda/cublaslt_library.h"

#include <dlfcn.h>
#include <fmt/format.h>

#include <atomic>
#include <mutex>
#include <string>
#include <type_traits>

#include "core/error.h"

#ifndef MNEMO_CUBLASLT_SONAME
#error "cuda/CMakeLists.txt defines MNEMO_CUBLASLT_SONAME and MNEMO_CUBLASLT_PATH"
#endif

namespace mnemo::cuda {

namespace {

// The outcome of the one load: the table, or why there is none.
struct LoadedLibrary {
  std::once_flag once;
  CublasLt table;
  std::string error;                            // empty if the load succeeded
  std::atomic<const CublasLt*> ready{nullptr};  // &table once it is complete
};

LoadedLibrary& loaded_library() {
  // Never destroyed: no static destructor runs while another thread might still multiply.
  static auto* library = new LoadedLibrary();
  return *library;
}

}  // namespace

CublasLt load_cublaslt(std::span<const char* const> files) {
  void* library = nullptr;
  const char* opened = nullptr;
  std::string reasons;  // dlerror() of each file that did not open
  for (const char* file : files) {
    if (file == nullptr || *file == '\0') continue;  // dlopen("") would return the program
    library = dlopen(file, RTLD_NOW | RTLD_LOCAL);
    if (library != nullptr) {
      opened = file;
      break;
    }
    const char* reason = dlerror();
    reasons += fmt::format("{}{}", reasons.empty() ? "" : "; ",
                           reason != nullptr ? reason : fmt::format("{}: not opened", file));
  }
  if (library == nullptr) {
    fail_system(
        "cuBLASLt: cannot load {}, which matrix products on the GPU need ({}); install the "
        "CUDA toolkit's cuBLAS or put the folder that holds it on LD_LIBRARY_PATH",
        cublaslt_soname(), reasons.empty() ? "no file to try" : reasons);
  }
  CublasLt table;
  const auto resolve = [&](auto& pointer, const char* name) {
    dlerror();  // clear a stale error, so the one read below is dlsym's
    void* symbol = dlsym(library, name);
    if (symbol == nullptr) {
      const char* reason = dlerror();
      fail_system("cuBLASLt: {} has no function {} ({}); mnemo was built against {}", opened, name,
                  reason != nullptr ? reason : "the symbol is null", cublaslt_soname());
    }
    pointer = reinterpret_cast<std::remove_reference_t<decltype(pointer)>>(symbol);
  };
#define MNEMO_CUBLASLT_RESOLVE(name) resolve(table.name, #name);
  MNEMO_CUBLASLT_FUNCTIONS(MNEMO_CUBLASLT_RESOLVE)
#undef MNEMO_CUBLASLT_RESOLVE
  return table;
}

const CublasLt& cublaslt() {
  LoadedLibrary& library = loaded_library();
  std::call_once(library.once, [&] {
    try {
      library.table = load_cublaslt(cublaslt_files());
      library.ready.store(&library.table, std::memory_order_release);
    } catch (const Error& e) {
      library.error = e.what();
    }
  });
  if (!library.error.empty()) throw SystemError(library.error);
  return library.table;
}

const CublasLt* cublaslt_if_loaded() {
  return loaded_library().ready.load(std::memory_order_acquire);
}

std::span<const char* const> cublaslt_files() {
  static constexpr const char* files[] = {MNEMO_CUBLASLT_SONAME, MNEMO_CUBLASLT_PATH};
  return files;
}

}  // namespace mnemo::cuda

// cuBLASLt, loaded with dlopen on first use instead of linked.
//
// Why: libcublasLt's static initialisers run in every process that links it, GPU or not,
// before main: 0.35-0.5 s per start on the 2-core, GPU-less build machine (perf: 70% of
// start-up in the dynamic loader's call_init, 41% of all samples inside libcublasLt). Every
// `mnemo` command and every test binary links the CUDA backend, and a test run starts hundreds
// of processes, nearly all of which never multiply on a GPU. So the backend does not link the
// library: the first matrix product (cuda/blas.cpp: blas_handle) loads it, and a process that
// never multiplies on a GPU never pays for it. Measured there (medians of 15 starts):
// `mnemo --version` 374 ms linked, 19 ms loaded on first use; a test binary running one small
// case 372 ms and 10 ms.
//
//   const CublasLt& lt = cublaslt();  // loads on first call, then returns the same table
//   MNEMO_CUBLAS_CHECK(lt.cublasLtMatmul(handle.lt, ...));
//
// The table holds exactly the functions the backend calls, each member named and typed like
// the function in <cublasLt.h> (decltype(&::cublasLtMatmul)), so a signature cannot drift
// from the header the backend compiles against. The header still provides the types and
// enums; only the linking is gone, so a direct call of a cuBLASLt function anywhere in the
// backend fails to link: every call goes through the table.
//
// Which file: the library's SONAME (libcublasLt.so.<CUDA major>), found the usual way
// (LD_LIBRARY_PATH, the ld.so cache), and failing that the file CMake found at configure
// time, so a build runs without LD_LIBRARY_PATH. Loaded once for the process (RTLD_NOW, so a
// missing symbol shows at load, RTLD_LOCAL) and never unloaded. A missing library or symbol
// is a mnemo::SystemError naming the file, the symbol and dlerror()'s reason, thrown by
// cublaslt() at the first matrix product (and again at every later call) — never a crash at
// start-up.
//
// Internal to cuda/ (includes the cuBLASLt header).
#pragma once

#include <cublasLt.h>

#include <span>

// X(name) for every cuBLASLt function the backend calls (cuda/blas.cpp, cuda/matmul.cpp).
#define MNEMO_CUBLASLT_FUNCTIONS(X)       \
  X(cublasLtCreate)                       \
  X(cublasLtGetStatusName)                \
  X(cublasLtGetStatusString)              \
  X(cublasLtMatmul)                       \
  X(cublasLtMatmulAlgoGetHeuristic)       \
  X(cublasLtMatmulDescCreate)             \
  X(cublasLtMatmulDescSetAttribute)       \
  X(cublasLtMatmulPreferenceCreate)       \
  X(cublasLtMatmulPreferenceDestroy)      \
  X(cublasLtMatmulPreferenceSetAttribute) \
  X(cublasLtMatrixLayoutCreate)           \
  X(cublasLtMatrixLayoutSetAttribute)

namespace mnemo::cuda {

// Pointers to the loaded library's functions: lt.cublasLtMatmul(...) calls cublasLtMatmul.
struct CublasLt {
#define MNEMO_CUBLASLT_POINTER(name) decltype(&::name) name = nullptr;
  MNEMO_CUBLASLT_FUNCTIONS(MNEMO_CUBLASLT_POINTER)
#undef MNEMO_CUBLASLT_POINTER
};

// The process's cuBLASLt, loaded on the first call (thread-safe). Throws mnemo::SystemError if
// the library or one of its functions cannot be loaded.
const CublasLt& cublaslt();

// The process's cuBLASLt if a call of cublaslt() has loaded it, else nullptr; never loads.
// For reporting a status without a chance of failing again (cuda/blas.cpp: check_blas).
const CublasLt* cublaslt_if_loaded();

// The files cublaslt() tries, in order: the SONAME ("libcublasLt.so.13", the CUDA major of the
// toolkit the build found), then the file CMake found at configure time ("" if none).
std::span<const char* const> cublaslt_files();
inline const char* cublaslt_soname() {
  return cublaslt_files()[0];
}

// Opens the first of `files` that dlopen can open ("" entries skipped) and looks up every
// function of the table. Throws mnemo::SystemError naming each file tried with dlerror()'s
// reason, or the file and the missing function. cublaslt() calls it once with
// cublaslt_files(); tests call it with files that fail. The library stays open for the
// process's life, also when a function is missing (unloading a CUDA library is not safe).
CublasLt load_cublaslt(std::span<const char* const> files);

}  // namespace mnemo::cuda

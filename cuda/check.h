// Error checking for CUDA runtime calls (internal to cuda/: it includes the runtime header).
//
//   MNEMO_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
//
// throws mnemo::SystemError("cuda/backend.cpp:87: cudaMemcpy(...) failed: invalid argument
// (cudaErrorInvalidValue)") when the call does not return cudaSuccess. The message carries
// the file and line of the call, the call itself and the runtime's own description, which is
// what a user needs to tell "no GPU" from "out of memory" from a bug.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

namespace mnemo::cuda {

// "FILE:LINE: CALL failed: <cudaGetErrorString> (<cudaGetErrorName>)".
std::string describe_error(cudaError_t status, const char* call, const char* file, int line);

// Throws mnemo::SystemError with describe_error's message unless status is cudaSuccess.
void check(cudaError_t status, const char* call, const char* file, int line);

}  // namespace mnemo::cuda

#define MNEMO_CUDA_CHECK(call) ::mnemo::cuda::check((call), #call, __FILE__, __LINE__)

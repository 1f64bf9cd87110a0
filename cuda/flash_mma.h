// Launch counters of the mma.sync flash attention kernels (cuda/flash_mma_forward.cu,
// cuda/flash_mma_backward.cu), so that a test can check that KernelChoice::fast_mma
// (cuda/runtime.h) really selects them. Which attention kernel runs is decided in one place:
// choose_kernel in cuda/attention.cu.
//
// Like cuda/runtime.h this header includes no CUDA header: the test runners include it.
#pragma once

#include <cstdint>

namespace mnemo::cuda {

// How many times the mma forward / backward kernels have been launched in this process.
int64_t flash_mma_forward_calls();
int64_t flash_mma_backward_calls();

}  // namespace mnemo::cuda

// Opt-in switch for the mma.sync flash attention kernels (cuda/flash_mma_forward.cu,
// cuda/flash_mma_backward.cu; issue 4). Those kernels were written without a GPU: until a GPU
// run has verified them they run only when asked for, with MNEMO_FLASH_MMA=1 in the
// environment (read once, at first use) or set_flash_mma(true) (tests). When enabled they
// replace the wmma flash kernels (cuda/flash_attention_*.cu) for bf16/f16 at head dims 32, 64
// and 128; everything else keeps its kernel.
//
// Like cuda/runtime.h this header includes no CUDA header: the test runners include it.
#pragma once

#include <cstdint>

namespace mnemo::cuda {

bool flash_mma_enabled();
void set_flash_mma(bool enabled);

// How many times the mma forward / backward kernels have been launched in this process (so a
// test can check that the switch really selects them).
int64_t flash_mma_forward_calls();
int64_t flash_mma_backward_calls();

// Sets the switch for a scope (tests), restoring the previous value.
class FlashMmaGuard {
 public:
  explicit FlashMmaGuard(bool enabled) : previous_(flash_mma_enabled()) { set_flash_mma(enabled); }
  ~FlashMmaGuard() { set_flash_mma(previous_); }
  FlashMmaGuard(const FlashMmaGuard&) = delete;
  FlashMmaGuard& operator=(const FlashMmaGuard&) = delete;

 private:
  bool previous_;
};

}  // namespace mnemo::cuda

// PLACEHOLDER until written: every function throws "not implemented on the cuda backend".
#include "core/error.h"
#include "cuda/ops.h"

namespace mnemo::cuda {

void random(RandomOp, const RandomParams&, PhiloxState, const Tensor&) {
  fail("random: not implemented on the cuda backend yet");
}

void multinomial(const Tensor&, int64_t, bool, PhiloxState, const Tensor&) {
  fail("multinomial: not implemented on the cuda backend yet");
}


}  // namespace mnemo::cuda

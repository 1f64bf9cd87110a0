// PLACEHOLDER until written: every function throws "not implemented on the cuda backend".
#include "core/error.h"
#include "cuda/ops.h"

namespace mnemo::cuda {

void adamw(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const AdamWParams&) {
  fail("adamw: not implemented on the cuda backend yet");
}


}  // namespace mnemo::cuda

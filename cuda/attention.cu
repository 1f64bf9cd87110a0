// PLACEHOLDER until written: every function throws "not implemented on the cuda backend".
#include "core/error.h"
#include "cuda/ops.h"

namespace mnemo::cuda {

void attention(const Tensor&, const Tensor&, const Tensor&, const Tensor&, bool, double, const Tensor&, const Tensor&) {
  fail("attention: not implemented on the cuda backend yet");
}

void attention_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, bool, double, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  fail("attention_backward: not implemented on the cuda backend yet");
}


}  // namespace mnemo::cuda

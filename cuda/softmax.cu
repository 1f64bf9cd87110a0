// PLACEHOLDER until written: every function throws "not implemented on the cuda backend".
#include "core/error.h"
#include "cuda/ops.h"

namespace mnemo::cuda {

void softmax(const Tensor&, int64_t, bool, const Tensor&) {
  fail("softmax: not implemented on the cuda backend yet");
}

void softmax_backward(const Tensor&, const Tensor&, int64_t, bool, const Tensor&) {
  fail("softmax_backward: not implemented on the cuda backend yet");
}

void cross_entropy(const Tensor&, const Tensor&, int64_t, double, const Tensor&, const Tensor&) {
  fail("cross_entropy: not implemented on the cuda backend yet");
}

void cross_entropy_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t, double, const Tensor&) {
  fail("cross_entropy_backward: not implemented on the cuda backend yet");
}


}  // namespace mnemo::cuda

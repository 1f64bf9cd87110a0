// PLACEHOLDER until written: every function throws "not implemented on the cuda backend".
#include "core/error.h"
#include "cuda/ops.h"

namespace mnemo::cuda {

void rms_norm(const Tensor&, const Tensor&, double, const Tensor&, const Tensor&) {
  fail("rms_norm: not implemented on the cuda backend yet");
}

void rms_norm_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  fail("rms_norm_backward: not implemented on the cuda backend yet");
}

void layer_norm(const Tensor&, const Tensor&, const Tensor&, double, const Tensor&, const Tensor&, const Tensor&) {
  fail("layer_norm: not implemented on the cuda backend yet");
}

void layer_norm_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  fail("layer_norm_backward: not implemented on the cuda backend yet");
}


}  // namespace mnemo::cuda

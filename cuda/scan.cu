// PLACEHOLDER until written: every function throws "not implemented on the cuda backend".
#include "core/error.h"
#include "cuda/ops.h"

namespace mnemo::cuda {

void scan(const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  fail("scan: not implemented on the cuda backend yet");
}

void scan_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  fail("scan_backward: not implemented on the cuda backend yet");
}


}  // namespace mnemo::cuda

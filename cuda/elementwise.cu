// PLACEHOLDER until written: every function throws "not implemented on the cuda backend".
#include "core/error.h"
#include "cuda/ops.h"

namespace mnemo::cuda {

void copy_on_device(const Tensor&, const Tensor&) {
  fail("copy_on_device: not implemented on the cuda backend yet");
}

void fill(const Tensor&, double) {
  fail("fill: not implemented on the cuda backend yet");
}

void arange(const Tensor&, double, double) {
  fail("arange: not implemented on the cuda backend yet");
}

void unary(UnaryOp, const UnaryParams&, const Tensor&, const Tensor&) {
  fail("unary: not implemented on the cuda backend yet");
}

void binary(BinaryOp, const Tensor&, const Tensor&, const Tensor&) {
  fail("binary: not implemented on the cuda backend yet");
}

void where(const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  fail("where: not implemented on the cuda backend yet");
}


}  // namespace mnemo::cuda

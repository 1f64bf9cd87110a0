// PLACEHOLDER until written: every function throws "not implemented on the cuda backend".
#include "core/error.h"
#include "cuda/ops.h"

namespace mnemo::cuda {

void reduce(ReduceOp, const Tensor&, const std::vector<int64_t>&, const Tensor&) {
  fail("reduce: not implemented on the cuda backend yet");
}

void arg_reduce(ArgReduceOp, const Tensor&, int64_t, const Tensor&) {
  fail("arg_reduce: not implemented on the cuda backend yet");
}

void cumsum(const Tensor&, int64_t, bool, const Tensor&) {
  fail("cumsum: not implemented on the cuda backend yet");
}

void topk(const Tensor&, int64_t, int64_t, bool, const Tensor&, const Tensor&) {
  fail("topk: not implemented on the cuda backend yet");
}


}  // namespace mnemo::cuda

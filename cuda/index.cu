// PLACEHOLDER until written: every function throws "not implemented on the cuda backend".
#include "core/error.h"
#include "cuda/ops.h"

namespace mnemo::cuda {

void index_select(const Tensor&, int64_t, const Tensor&, const Tensor&) {
  fail("index_select: not implemented on the cuda backend yet");
}

void index_add(const Tensor&, int64_t, const Tensor&, const Tensor&) {
  fail("index_add: not implemented on the cuda backend yet");
}

void gather(const Tensor&, int64_t, const Tensor&, const Tensor&) {
  fail("gather: not implemented on the cuda backend yet");
}

void scatter_add(const Tensor&, int64_t, const Tensor&, const Tensor&) {
  fail("scatter_add: not implemented on the cuda backend yet");
}


}  // namespace mnemo::cuda

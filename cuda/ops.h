// The CUDA backend's compute functions, one per Backend method (core/backend_ops.def states
// each one's contract: shapes, dtypes, what may be strided). CudaBackend (cuda/backend.cpp)
// makes the tensors' device current and calls these.
// All tensors are on one GPU; work is queued on that GPU's stream (cuda/context.h).
//
// Internal to cuda/.
#pragma once

#include <cstdint>
#include <vector>

#include "core/backend.h"

namespace mnemo::cuda {

// One function per op of core/backend_ops.def, with that op's parameters. Each is defined in
// the cuda/ file of its family: copy.cpp (copy's host transfers), memory.cu (fill, arange),
// elementwise_unary.cu, elementwise_binary.cu, elementwise_where.cu, matmul.cpp (cuBLASLt),
// index.cu (index_select, index_add, gather, scatter_add), norm.cu (rms_norm, layer_norm),
// optim.cu (adamw), random.cu and random_multinomial.cu, and for the rest the op's own name
// (reduce.cu, arg_reduce.cu, cumsum.cu, topk.cu, softmax.cu, cross_entropy.cu, attention.cu,
// scan.cu), each backward beside its forward. matmul_segment_sum, a composed op, has none:
// CUDA runs Backend's composition of matmul and add.
static_assert(size_t(BackendOp::count) == 31, "a new op needs a CUDA function (or a composition)");
#define MNEMO_BACKEND_OP(NAME, CATEGORY, PARAMETERS, ...) void NAME PARAMETERS;
#define MNEMO_COMPOSED_OP(...)
#include "core/backend_ops.def"

// dst = src converted to dst's dtype; both on the same GPU, any strides (src may broadcast).
// The kernel behind copy (copy.cpp) and every conversion on a GPU (memory.cu).
void copy_on_device(const Tensor& src, const Tensor& dst);

}  // namespace mnemo::cuda

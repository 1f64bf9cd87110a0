// The CPU backend: the complete reference implementation of every op.
//
// Eigen does the matrix products, OpenMP spreads elementwise work and reductions over cores,
// and inner loops are written so that the compiler vectorises them. bf16/f16 are loaded as
// f32, computed in f32 and rounded on store.
#pragma once

#include "core/backend.h"

namespace mnemo::cpu {

class CpuBackend final : public Backend {
 public:
  std::string_view name() const override { return "cpu"; }
  Allocator* allocator(Device device) override;

  // Every op of core/backend_ops.def, the composed matmul_segment_sum included (fused).
  // Each is defined in core/cpu/<stem>.cpp, the stem of its family: memory.cpp (copy, fill,
  // arange), elementwise.cpp (unary, binary, where), index.cpp (index_select, index_add,
  // gather, scatter_add), norm.cpp (rms_norm, layer_norm), optim.cpp (adamw), random.cpp
  // (random, multinomial), and for the rest the op's own name (reduce.cpp, arg_reduce.cpp,
  // cumsum.cpp, topk.cpp, matmul.cpp, softmax.cpp, cross_entropy.cpp, attention.cpp,
  // scan.cpp), each backward beside its forward.
  static_assert(size_t(BackendOp::count) == 31, "the CPU backend implements every op");
#define MNEMO_BACKEND_OP(NAME, CATEGORY, PARAMETERS, ...) void NAME PARAMETERS override;
#include "core/backend_ops.def"
};

CpuBackend& backend();

}  // namespace mnemo::cpu

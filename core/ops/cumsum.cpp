// cumsum along one dim (reverse: from the end): argument checks and output allocation, then
// one backend call. Integers and bools are summed in i64; floating inputs keep their dtype
// (the CPU kernel accumulates in f64).
#include "core/backend.h"
#include "core/ops/reduce.h"
#include "core/ops/view.h"

namespace mnemo::core {

Tensor cumsum(const Tensor& x, int64_t dim, bool reverse) {
  MNEMO_CHECK(x.defined(), "cumsum: undefined input");
  if (x.dim() == 0) return clone(x);
  int64_t d = normalize_dim(dim, x.dim(), "cumsum");
  DType dtype = is_floating(x.dtype()) ? x.dtype() : DType::i64;
  Tensor out = Tensor::empty(x.shape(), dtype, x.device());
  if (out.numel() > 0) backend_for(x.device()).cumsum(to(x, dtype), d, reverse, out);
  return out;
}

}  // namespace mnemo::core

// topk: the k largest (or smallest) entries along one dim, sorted, with their i64 indices:
// argument checks and output allocation, then one backend call.
#include "core/backend.h"
#include "core/ops/reduce.h"

namespace mnemo::core {

TopK topk(const Tensor& x, int64_t k, int64_t dim, bool largest) {
  MNEMO_CHECK(x.defined(), "topk: undefined input");
  MNEMO_CHECK(x.dim() > 0, "topk: expected a tensor with at least one dim");
  int64_t d = normalize_dim(dim, x.dim(), "topk");
  MNEMO_CHECK(k >= 0 && k <= x.shape()[d], "topk: k = {} out of range for dim {} of size {}", k, d,
              x.shape()[d]);
  Shape shape = x.shape();
  shape[d] = k;
  TopK out{Tensor::empty(shape, x.dtype(), x.device()),
           Tensor::empty(shape, DType::i64, x.device())};
  if (out.values.numel() > 0) {
    backend_for(x.device()).topk(x, k, d, largest, out.values, out.indices);
  }
  return out;
}

}  // namespace mnemo::core

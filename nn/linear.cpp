// Linear and Embedding (linear.h).
#include "nn/linear.h"

#include "autograd/ops.h"
#include "core/error.h"

namespace mnemo::nn {

Linear::Linear(int64_t in, int64_t out, bool has_bias, Generator* gen, double init_std)
    : in_features(in), out_features(out) {
  MNEMO_CHECK(in > 0 && out > 0, "Linear: sizes must be positive, got in={} out={}", in, out);
  weight = register_parameter("weight", normal({out, in}, 0, init_std, {}, gen));
  if (has_bias) bias = register_parameter("bias", zeros({out}));
}

Tensor Linear::forward(const Tensor& x) const {
  return linear(x, weight, bias);
}

Embedding::Embedding(int64_t num, int64_t dim, Generator* gen, double init_std)
    : num_embeddings(num), embedding_dim(dim) {
  MNEMO_CHECK(num > 0 && dim > 0, "Embedding: sizes must be positive, got num={} dim={}", num, dim);
  weight = register_parameter("weight", normal({num, dim}, 0, init_std, {}, gen));
}

Tensor Embedding::forward(const Tensor& ids) const {
  return embedding(weight, ids);
}

}  // namespace mnemo::nn

// Linear and Embedding: the two weight-matrix layers.
//
// Linear(in, out): y = x @ W^T + b with W (out, in), b (out,) — PyTorch's layout, so HF
// checkpoints load as they are. Embedding(num, dim): row lookup into W (num, dim).
// Both initialise W from normal(0, std) (std 0.02 by default, the Llama/GPT-2 convention),
// drawn from gen, or from the process-wide generator (mnemo::manual_seed) when gen is null.
#pragma once

#include "core/ops/random.h"
#include "nn/module.h"

namespace mnemo::nn {

class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true, Generator* gen = nullptr,
         double init_std = 0.02);
  // x (..., in) -> (..., out)
  Tensor forward(const Tensor& x) const;

  int64_t in_features, out_features;
  Tensor weight;  // (out, in)
  Tensor bias;    // (out,), undefined without bias
};

class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t embedding_dim, Generator* gen = nullptr,
            double init_std = 0.02);
  // ids (...) integer in [0, num) -> (..., dim)
  Tensor forward(const Tensor& ids) const;

  int64_t num_embeddings, embedding_dim;
  Tensor weight;  // (num, dim)
};

}  // namespace mnemo::nn

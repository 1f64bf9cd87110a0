// TransformerBlock: the pre-norm decoder layer of HF Llama (LlamaDecoderLayer).
//
//   h = x + self_attn(input_layernorm(x))
//   y = h + mlp(post_attention_layernorm(h))
// with RMSNorm and the SwiGLU MLP; parameter names follow HF.
#pragma once

#include <memory>

#include "nn/attention.h"
#include "nn/mlp.h"
#include "nn/norm.h"

namespace mnemo::nn {

class TransformerBlock : public Module {
 public:
  TransformerBlock(int64_t hidden_size, int64_t num_heads, int64_t num_kv_heads,
                   int64_t intermediate_size, double rms_norm_eps = 1e-6, Generator* gen = nullptr,
                   double init_std = 0.02);
  // x (B, T, C) -> (B, T, C); the other arguments go to self_attn (attention.h).
  Tensor forward(const Tensor& x, const RopeTables& rope, LayerKV* cache = nullptr,
                 const LayerKV* extra = nullptr, const Tensor& attn_bias = {}) const;

  std::shared_ptr<RMSNorm> input_layernorm;
  std::shared_ptr<CausalSelfAttention> self_attn;
  std::shared_ptr<RMSNorm> post_attention_layernorm;
  std::shared_ptr<SwiGLU> mlp;
};

}  // namespace mnemo::nn

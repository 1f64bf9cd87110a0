// TransformerBlock (transformer.h).
#include "nn/transformer.h"

#include "autograd/ops.h"

namespace mnemo::nn {

TransformerBlock::TransformerBlock(int64_t C, int64_t H, int64_t Hkv, int64_t I, double eps,
                                   Generator* gen, double init_std) {
  // Registration order = HF's state_dict order.
  self_attn =
      register_module("self_attn", std::make_shared<CausalSelfAttention>(C, H, Hkv, gen, init_std));
  mlp = register_module("mlp", std::make_shared<SwiGLU>(C, I, gen, init_std));
  input_layernorm = register_module("input_layernorm", std::make_shared<RMSNorm>(C, eps));
  post_attention_layernorm =
      register_module("post_attention_layernorm", std::make_shared<RMSNorm>(C, eps));
}

Tensor TransformerBlock::forward(const Tensor& x, const RopeTables& rope, LayerKV* cache,
                                 const LayerKV* extra, const Tensor& attn_bias) const {
  const Tensor h =
      x + self_attn->forward(input_layernorm->forward(x), rope, cache, extra, attn_bias);
  return h + mlp->forward(post_attention_layernorm->forward(h));
}

}  // namespace mnemo::nn

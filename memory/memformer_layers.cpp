// MemformerBlock and MemoryWriter (memformer_layers.h).
#include "memory/memformer_layers.h"

#include <limits>
#include <vector>

#include "autograd/ops.h"
#include "core/error.h"

namespace mnemo::memory {

MemformerBlock::MemformerBlock(int64_t C, int64_t H, int64_t Hkv, int64_t I, double eps,
                               Generator* gen, double init_std, double cross_init_std) {
  input_layernorm = register_module("input_layernorm", std::make_shared<nn::RMSNorm>(C, eps));
  self_attn = register_module("self_attn",
                              std::make_shared<nn::CausalSelfAttention>(C, H, Hkv, gen, init_std));
  cross_attn_layernorm =
      register_module("cross_attn_layernorm", std::make_shared<nn::RMSNorm>(C, eps));
  cross_attn = register_module(
      "cross_attn", std::make_shared<nn::CrossAttention>(C, C, H, Hkv, gen, cross_init_std));
  post_attention_layernorm =
      register_module("post_attention_layernorm", std::make_shared<nn::RMSNorm>(C, eps));
  mlp = register_module("mlp", std::make_shared<nn::SwiGLU>(C, I, gen, init_std));
}

Tensor MemformerBlock::forward(const Tensor& x, const nn::RopeTables& rope, const Tensor& memory,
                               const Tensor& query_position) const {
  Tensor h = add(x, self_attn->forward(input_layernorm->forward(x), rope));
  Tensor query = cross_attn_layernorm->forward(h);  // (B, T, C)
  if (query_position.defined()) query = add(query, unsqueeze(query_position, 0));
  h = add(h, cross_attn->forward(query, memory));
  return add(h, mlp->forward(post_attention_layernorm->forward(h)));
}

MemoryWriter::MemoryWriter(int64_t C, int64_t H, int64_t ff_size, double eps, Generator* gen,
                           double init_std, int64_t positions, double position_std)
    : hidden_size(C), max_tokens(positions) {
  MNEMO_CHECK(positions >= 0, "MemoryWriter: max_tokens must be >= 0, got {}", positions);
  if (positions > 0) {
    token_position =
        register_parameter("token_position", normal({positions, C}, 0.0, position_std, {}, gen));
  }
  slot_norm = register_module("slot_norm", std::make_shared<nn::RMSNorm>(C, eps));
  token_norm = register_module("token_norm", std::make_shared<nn::RMSNorm>(C, eps));
  attn = register_module("attn", std::make_shared<nn::CrossAttention>(C, C, H, H, gen, init_std));
  gru = register_module("gru", std::make_shared<nn::GRUCell>(C, C, true, gen));
  ff_norm = register_module("ff_norm", std::make_shared<nn::RMSNorm>(C, eps));
  ff = register_module("ff", std::make_shared<nn::SwiGLU>(C, ff_size, gen, init_std));
  out_norm = register_module("out_norm", std::make_shared<nn::RMSNorm>(C, eps));
}

Tensor MemoryWriter::slot_bias(int64_t K, int64_t T, const Tensor& like) {
  const double hidden = -std::numeric_limits<double>::infinity();
  std::vector<double> bias(size_t(K * (K + T)), 0.0);
  for (int64_t i = 0; i < K; ++i) {
    for (int64_t j = 0; j < K; ++j) {
      if (j != i) bias[size_t(i * (K + T) + j)] = hidden;
    }
  }
  return from_vector(bias, {1, 1, K, K + T}, {like.dtype(), like.device()});
}

Tensor MemoryWriter::forward(const Tensor& memory, const Tensor& hidden) const {
  MNEMO_CHECK(memory.dim() == 3 && memory.size(2) == hidden_size,
              "MemoryWriter: memory must be (B, K, {}), got {}", hidden_size,
              shape_str(memory.shape()));
  MNEMO_CHECK(
      hidden.dim() == 3 && hidden.size(0) == memory.size(0) && hidden.size(2) == hidden_size,
      "MemoryWriter: hidden must be (B={}, T, {}), got {}", memory.size(0), hidden_size,
      shape_str(hidden.shape()));
  const int64_t B = memory.size(0), K = memory.size(1), T = hidden.size(1), C = hidden_size;
  const Tensor slots = slot_norm->forward(memory);  // (B, K, C)
  Tensor tokens = token_norm->forward(hidden);      // (B, T, C)
  if (max_tokens > 0) {
    MNEMO_CHECK(T <= max_tokens, "MemoryWriter: a segment of {} tokens, the positions hold {}", T,
                max_tokens);
    tokens = add(tokens, unsqueeze(narrow(token_position, 0, 0, T), 0));
  }
  const Tensor z = concat({slots, tokens}, 1);                        // (B, K + T, C)
  const Tensor u = attn->forward(slots, z, slot_bias(K, T, memory));  // (B, K, C)
  const Tensor g = gru->forward(reshape(u, {B * K, C}), reshape(memory, {B * K, C}));  // (BK, C)
  const Tensor out = out_norm->forward(add(g, ff->forward(ff_norm->forward(g))));
  return reshape(out, {B, K, C});
}

}  // namespace mnemo::memory

// The two layers of Memformer (Wu et al., 2020; memformer.h has the model): the decoder block
// that reads the memory slots, and the writer that updates them after a segment.
//
// MemformerBlock, a pre-norm Llama block with a cross-attention to the memory between the
// self-attention and the feed-forward. x (B, T, C), memory m (B, K, C) already normalised:
//   h = x + self_attn(input_layernorm(x))              causal, RoPE, within the segment
//   h = h + cross_attn(cross_attn_layernorm(h) + Q, m) every token sees every slot; Q (T, C)
//                                                      optional learned query positions (so
//                                                      the t-th token can ask for the slot
//                                                      that kept position t), else 0
//   y = h + mlp(post_attention_layernorm(h))           SwiGLU
//
// MemoryWriter, slot-wise attention over [memory; segment], a GRU and a residual feed-forward.
// m (B, K, C) the slots before the segment, h (B, T, C) the segment's final hidden states:
//   z  = [slot_norm(m); token_norm(h) + P[0:T]]        (B, K + T, C); P (max_tokens, C) learned
//        token positions (when max_tokens > 0; else no P): the decoder's RoPE gives the
//        hidden states only relative positions, and a slot that is to keep "the t-th token"
//        needs to find it by position
//   u  = attend(q = slot_norm(m), keys/values = z, bias)  (B, K, C), H heads of size C / H;
//        bias[i, j] = 0 where j == i (the slot itself) or j >= K (a token), -inf otherwise,
//        so slot i reads itself and the tokens, never another slot
//   g  = GRUCell(x = u, h = m)                         row by row over the B * K slots
//   m' = out_norm(g + ff(ff_norm(g)))                  SwiGLU, then RMSNorm
// The final norm keeps the slots at a fixed scale from segment to segment: without it the
// residual feed-forward adds to them every segment, training grows them without bound (rms 1
// -> 47 in 200 steps of copy-far), the GRU's gates saturate on the huge previous value and the
// tokens' share of the new slots, and with it every gradient to the writer, vanishes (the
// Memformer stayed exactly on the ln 16 plateau of copy-far). Reads go through their own
// norm (memory_norm, slot_norm), so only the GRU sees the slots' raw scale.
#pragma once

#include <memory>

#include "nn/attention.h"
#include "nn/gru.h"
#include "nn/mlp.h"
#include "nn/norm.h"

namespace mnemo::memory {

class MemformerBlock : public nn::Module {
 public:
  MemformerBlock(int64_t hidden_size, int64_t num_heads, int64_t num_kv_heads,
                 int64_t intermediate_size, double rms_norm_eps, Generator* gen, double init_std,
                 double cross_init_std);
  // x (B, T, C), rope tables for T positions, memory (B, K, C) normalised, query_position
  // (T, C) or undefined -> (B, T, C)
  Tensor forward(const Tensor& x, const nn::RopeTables& rope, const Tensor& memory,
                 const Tensor& query_position = {}) const;

  std::shared_ptr<nn::RMSNorm> input_layernorm;
  std::shared_ptr<nn::CausalSelfAttention> self_attn;
  std::shared_ptr<nn::RMSNorm> cross_attn_layernorm;
  std::shared_ptr<nn::CrossAttention> cross_attn;
  std::shared_ptr<nn::RMSNorm> post_attention_layernorm;
  std::shared_ptr<nn::SwiGLU> mlp;
};

class MemoryWriter : public nn::Module {
 public:
  // max_tokens: the longest segment, the rows of the learned token positions P (0 = none),
  // initialised ~ normal(0, position_std).
  MemoryWriter(int64_t hidden_size, int64_t num_heads, int64_t ff_size, double rms_norm_eps,
               Generator* gen, double init_std, int64_t max_tokens = 0, double position_std = 1.0);
  // memory (B, K, C) before the segment, hidden (B, T, C), T <= max_tokens when positions
  // are on -> memory after it (B, K, C)
  Tensor forward(const Tensor& memory, const Tensor& hidden) const;
  // The additive bias (1, 1, K, K + T) in `like`'s dtype and device (see the header).
  static Tensor slot_bias(int64_t K, int64_t T, const Tensor& like);

  int64_t hidden_size, max_tokens;
  Tensor token_position;  // P (max_tokens, C); undefined when max_tokens == 0
  std::shared_ptr<nn::RMSNorm> slot_norm;
  std::shared_ptr<nn::RMSNorm> token_norm;
  std::shared_ptr<nn::CrossAttention> attn;
  std::shared_ptr<nn::GRUCell> gru;
  std::shared_ptr<nn::RMSNorm> ff_norm;
  std::shared_ptr<nn::SwiGLU> ff;
  std::shared_ptr<nn::RMSNorm> out_norm;
};

}  // namespace mnemo::memory

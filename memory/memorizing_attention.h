// KnnAttention: the Memorizing Transformer's kNN-augmented attention layer (Wu et al., ICLR
// 2022), and MemorizingBlock, the pre-norm decoder layer built on it.
//
// x (B, T, C), H query heads, Hkv key/value heads of size D (G = H / Hkv), memory of N slots:
//   q|k|v  = x @ [W_q; W_k; W_v]^T                        (B, H|Hkv|Hkv, T, D), one GEMM
//   local  = attention(rope(q), [xl_k; rope(k)], [xl_v; v], causal)     (B, H, T, D)
//   retrieved: each query's top-K memory slots by cosine similarity of q with the stored keys
//            (KnnMemory::search): k_mem, v_mem (B, H, T, K, D), constants (no gradient)
//   s_mem  = q . k_mem / sqrt(D)                          (B, H, T, K), invalid slots masked
// then, gate "sigmoid" (the paper):
//   mem    = softmax(s_mem) @ v_mem                        (B, H, T, D); 0 with nothing valid
//   o      = g_h * mem + (1 - g_h) * local,   g_h = sigmoid(b_h), b (H,) learned
// or gate "joint": one softmax over [retrieved; local] logits, the retrieved ones scaled by a
// learned per-head temperature exp(tau_h) (tau (H,), starting at 0):
//   p      = softmax([exp(tau_h) s_mem ; s_local])        o = p_mem @ v_mem + p_local @ v_local
// and y = o @ W_o^T (B, T, C).
//
// Memory keys and queries carry no position: the memory stores the layer's k before RoPE and
// is searched and read with q before RoPE (the paper adds no position to retrieved memories).
// The XL cache (extra) is in the current segment's RoPE frame (memorizing.h shifts it).
// After the layer, the caller appends this segment's (k, v) (before RoPE) to the memory: the
// memory holds only earlier segments, so reading it needs no causal mask.
// Parameter names: self_attn.{q,k,v,o}_proj.weight as in HF Llama, plus self_attn.gate_bias
// (sigmoid) or self_attn.memory_log_temperature (joint).
#pragma once

#include <memory>
#include <string>

#include "memory/knn_memory.h"
#include "nn/attention.h"
#include "nn/mlp.h"
#include "nn/norm.h"

namespace mnemo::memory {

enum class MemoryGate { sigmoid, joint };
MemoryGate parse_memory_gate(const std::string& name, const std::string& key = "gate");

struct KnnAttentionOutput {
  Tensor y;       // (B, T, C)
  Tensor k;       // (B, Hkv, T, D) this segment's keys before RoPE (for the kNN memory)
  Tensor v;       // (B, Hkv, T, D)
  Tensor k_rope;  // (B, Hkv, T, D) after RoPE (for an XL cache)
};

class KnnAttention : public nn::Module {
 public:
  KnnAttention(int64_t hidden_size, int64_t num_heads, int64_t num_kv_heads, KnnMemory memory,
               int64_t top_k, MemoryGate gate, Generator* gen = nullptr, double init_std = 0.02,
               double gate_init = 0.0);

  // x (B, T, C); rope tables for T positions; memory: the kNN state to read (B streams);
  // extra: optional XL k/v (B, Hkv, S, D) fully visible; attn_bias: optional additive bias
  // broadcastable to (B, H, T, S + T) over [extra; local].
  KnnAttentionOutput forward(const Tensor& x, const nn::RopeTables& rope,
                             const KnnMemoryState& memory, const nn::LayerKV* extra = nullptr,
                             const Tensor& attn_bias = {}) const;

  int64_t hidden_size, num_heads, num_kv_heads, head_dim, top_k;
  KnnMemory memory;
  MemoryGate gate;
  std::shared_ptr<nn::Linear> q_proj, k_proj, v_proj, o_proj;
  Tensor gate_bias;               // (H,) sigmoid gate: g = sigmoid(gate_bias)
  Tensor memory_log_temperature;  // (H,) joint softmax: retrieved logits * exp(.)
};

// The pre-norm decoder layer of nn::TransformerBlock with KnnAttention as self_attn:
//   a = self_attn(input_layernorm(x)),  h = x + a.y,  y = h + mlp(post_attention_layernorm(h))
class MemorizingBlock : public nn::Module {
 public:
  MemorizingBlock(int64_t hidden_size, int64_t num_heads, int64_t num_kv_heads,
                  int64_t intermediate_size, double rms_norm_eps, KnnMemory memory, int64_t top_k,
                  MemoryGate gate, Generator* gen = nullptr, double init_std = 0.02,
                  double gate_init = 0.0);
  // x (B, T, C) -> y (B, T, C) in .y, with the attention's k/v.
  KnnAttentionOutput forward(const Tensor& x, const nn::RopeTables& rope,
                             const KnnMemoryState& memory, const nn::LayerKV* extra = nullptr,
                             const Tensor& attn_bias = {}) const;

  std::shared_ptr<KnnAttention> self_attn;
  std::shared_ptr<nn::SwiGLU> mlp;
  std::shared_ptr<nn::RMSNorm> input_layernorm, post_attention_layernorm;
};

}  // namespace mnemo::memory

// Multi-head attention layers: causal self-attention (HF LlamaAttention) and cross-attention.
//
// Self-attention, x (B, T, C) with H query heads and Hkv key/value heads of size D = C / H
// (Hkv < H is grouped-query attention: query head h reads kv head h / (H / Hkv)):
//   q|k|v = x @ [W_q; W_k; W_v]^T        ONE GEMM (fused_linear.h), three column views
//   q, k = rope(q), rope(k)              (B, H, T, D), (B, Hkv, T, D)
//   k, v = concat(extra, cache, k/v)     optional: see below
//   o = attention(q, k, v, causal)       the fused op (flash-style on the CPU)
//   y = o @ W_o^T                        (B, T, C)
// The HF parameters q_proj, k_proj, v_proj, o_proj keep their names and shapes.
//
// Causal with more keys than queries is aligned bottom-right (query i sees key j iff
// j <= i + Tk - Tq). That one rule covers both extras:
//   - a KV cache (generation): past keys come first, so a new token sees all of them;
//   - extra key/values (an XL cache of the previous segment, retrieved memories, persistent
//     tokens): prepended, they are fully visible to every query while the local part stays
//     causal. The caller applies (or not) its own position encoding to them.
#pragma once

#include <memory>
#include <vector>

#include "nn/linear.h"
#include "nn/rotary.h"

namespace mnemo::nn {

// One layer's keys and values after RoPE. k (B, Hkv, T, D), v (B, Hkv, T, D).
struct LayerKV {
  Tensor k;
  Tensor v;
};

// Keys/values of every layer for the tokens seen so far (generation). forward appends. Run
// generation under NoGradGuard: with grad mode on, the cached tensors keep the tape alive.
struct KVCache {
  std::vector<LayerKV> layers;
  int64_t length() const;  // cached positions (0 when empty)
  void clear();
};

class CausalSelfAttention : public Module {
 public:
  CausalSelfAttention(int64_t hidden_size, int64_t num_heads, int64_t num_kv_heads,
                      Generator* gen = nullptr, double init_std = 0.02);

  // x (B, T, C); rope: tables for x's T positions (undefined cos = no RoPE); cache: appended
  // to (and read) when given; extra: fully visible k/v (B, Hkv, M, D) prepended; attn_bias:
  // optional additive bias broadcastable to (B, H, T, Tk). -> (B, T, C)
  Tensor forward(const Tensor& x, const RopeTables& rope, LayerKV* cache = nullptr,
                 const LayerKV* extra = nullptr, const Tensor& attn_bias = {}) const;

  int64_t hidden_size, num_heads, num_kv_heads, head_dim;
  bool causal = true;
  std::shared_ptr<Linear> q_proj, k_proj, v_proj, o_proj;
};

// Queries from x (B, T, C), keys/values from memory (B, M, Cm); every query sees every
// memory slot (no mask unless given), no position encoding. k_proj and v_proj run as one GEMM.
class CrossAttention : public Module {
 public:
  CrossAttention(int64_t hidden_size, int64_t memory_size, int64_t num_heads, int64_t num_kv_heads,
                 Generator* gen = nullptr, double init_std = 0.02);
  // x (B, T, C), memory (B, M, Cm), attn_bias broadcastable to (B, H, T, M) -> (B, T, C)
  Tensor forward(const Tensor& x, const Tensor& memory, const Tensor& attn_bias = {}) const;

  int64_t hidden_size, memory_size, num_heads, num_kv_heads, head_dim;
  std::shared_ptr<Linear> q_proj, k_proj, v_proj, o_proj;
};

}  // namespace mnemo::nn

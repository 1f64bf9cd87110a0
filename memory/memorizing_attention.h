// KnnAttention: the Memorizing Transformer's kNN-augmented attention layer (Wu et al., ICLR
// 2022), and MemorizingBlock, the pre-norm decoder layer built on it.
//
// x (B, T, C), H query heads, Hkv key/value heads of size D (G = H / Hkv), memory of N slots:
//   q|k|v  = x @ [W_q; W_k; W_v]^T                        (B, H|Hkv|Hkv, T, D), one GEMM
//   local  = attention(rope(q), [xl_k; rope(k)], [xl_v; v], causal)     (B, H, T, D)
// or, with position "alibi", no rotation and a learned linear relative-position bias:
//   local  = softmax(q [xl_k; k]^T / sqrt(D) - m_h (i - j), causal) [xl_v; v]
//            m (H,) learned, starting at ALiBi's slopes 2^(-8 (h + 1) / H); i - j the
//            distance from query i back to key j (the XL cache sits at positions -S .. -1).
// "alibi" makes the local lookup score q . k exactly as the memory search and read do (no
// rotation on either side), so what an in-window lookup teaches W_q and W_k addresses the
// memory too; with RoPE the local lookup is trained in the rotated frame only.
//   retrieved: each query's top-K memory slots by cosine similarity of q with the stored keys
//            (KnnMemory::search): k_mem, v_mem (B, H, T, K, D), constants (no gradient)
//   s_mem  = q . k_mem / sqrt(D)                          (B, H, T, K), invalid slots masked
// (with exact search the read is dense, `dense_read`: s_mem = q . k^T over all n searched
// slots (B, H, T, n), the slots outside the query's top-K masked, and the values read with a
// batched GEMM per kv head; the same function as the gathered (B, H, T, K, D) form, without
// the gathers, which cost more than the read.)
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
// (sigmoid) or self_attn.memory_log_temperature (joint), and self_attn.alibi_slopes (alibi).
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
// How the layer's local attention sees positions.
enum class LocalPosition { rope, alibi };
LocalPosition parse_local_position(const std::string& name, const std::string& key = "position");

struct KnnAttentionOutput {
  Tensor y;              // (B, T, C)
  Tensor k;              // (B, Hkv, T, D) this segment's keys before RoPE (for the kNN memory)
  Tensor v;              // (B, Hkv, T, D)
  Tensor k_rope;         // (B, Hkv, T, D) after RoPE (for an XL cache); = k with "alibi"
  KnnLookup lookup;      // what each query retrieved (diagnostics)
  Tensor memory_logits;  // (B, H, T, K) q . k_mem / sqrt(D), detached, if keep_memory_logits
};

class KnnAttention : public nn::Module {
 public:
  KnnAttention(int64_t hidden_size, int64_t num_heads, int64_t num_kv_heads, KnnMemory memory,
               int64_t top_k, MemoryGate gate, Generator* gen = nullptr, double init_std = 0.02,
               double gate_init = 0.0, LocalPosition position = LocalPosition::rope);

  // x (B, T, C); rope tables for T positions; memory: the kNN state to read (B streams);
  // extra: optional XL k/v (B, Hkv, S, D) fully visible; attn_bias: optional additive bias
  // broadcastable to (B, H, T, S + T) over [extra; local]; memory_visible: optional (B, T)
  // bool, false where a query must not read the memory (its document began after the
  // memory's entries were written): such a query reads 0, as from an empty memory.
  KnnAttentionOutput forward(const Tensor& x, const nn::RopeTables& rope,
                             const KnnMemoryState& memory, const nn::LayerKV* extra = nullptr,
                             const Tensor& attn_bias = {}, const Tensor& memory_visible = {}) const;

  int64_t hidden_size, num_heads, num_kv_heads, head_dim, top_k;
  KnnMemory memory;
  MemoryGate gate;
  LocalPosition position;
  // Read the searched slots densely (KnnResult::mask; the default with exact search) or the
  // gathered top-K entries per query (the default with faiss, whose memories are large).
  bool dense_read;
  bool keep_memory_logits = false;  // fill KnnAttentionOutput::memory_logits (diagnostics)
  std::shared_ptr<nn::Linear> q_proj, k_proj, v_proj, o_proj;
  Tensor gate_bias;               // (H,) sigmoid gate: g = sigmoid(gate_bias)
  Tensor memory_log_temperature;  // (H,) joint softmax: retrieved logits * exp(.)
  Tensor alibi_slopes;            // (H,) "alibi": the local logits' bias -m_h (i - j)
};

// The pre-norm decoder layer of nn::TransformerBlock with KnnAttention as self_attn:
//   a = self_attn(input_layernorm(x)),  h = x + a.y,  y = h + mlp(post_attention_layernorm(h))
class MemorizingBlock : public nn::Module {
 public:
  MemorizingBlock(int64_t hidden_size, int64_t num_heads, int64_t num_kv_heads,
                  int64_t intermediate_size, double rms_norm_eps, KnnMemory memory, int64_t top_k,
                  MemoryGate gate, Generator* gen = nullptr, double init_std = 0.02,
                  double gate_init = 0.0, LocalPosition position = LocalPosition::rope);
  // x (B, T, C) -> y (B, T, C) in .y, with the attention's k/v.
  KnnAttentionOutput forward(const Tensor& x, const nn::RopeTables& rope,
                             const KnnMemoryState& memory, const nn::LayerKV* extra = nullptr,
                             const Tensor& attn_bias = {}, const Tensor& memory_visible = {}) const;

  std::shared_ptr<KnnAttention> self_attn;
  std::shared_ptr<nn::SwiGLU> mlp;
  std::shared_ptr<nn::RMSNorm> input_layernorm, post_attention_layernorm;
};

}  // namespace mnemo::memory

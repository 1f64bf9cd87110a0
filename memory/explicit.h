// ExplicitLM: a decoder whose chosen layers read one entry of an explicit memory bank
// (memory/explicit_bank.h) at every position — knowledge kept as readable token sequences
// outside the weights, found by a router and mixed in by a gated fusion (the ExplicitLM
// design: an explicit bank, product-key routing, Gumbel selection, a shortcut gate).
//
// Shapes: B streams, T tokens, C width, N = n * n bank entries of L tokens, K candidates,
// dk the key width, E the LM's embedding table (V, C).
//
//   x = embed(ids)                                 (B, T, C)
//   each layer: h = x + attn(norm1(x)); then on a memory layer
//     z = norm2(h)                                 (B, T, C)   the router's and fusion's input
//     candidates, scores = route(z)                (B, T, K)   entry ids and router scores
//     rep_e = sum_l w_el E[tok_el]                 the entry's representation: the mean of its
//                                                  token embeddings (the seed's), from the LM's
//                                                  own table, so it moves with training
//     logits_k = scores_k + cos(z, rep_k)          (B, T, K)   selection logits
//     y = onehot(argmax(logits + g)) straight-through softmax((logits + g) / tau)   training,
//         g Gumbel noise; onehot(argmax(logits))                                    evaluation
//     m = sum_k y_k rep_k                          (B, T, C)   the selected entry
//     out = W_down(silu(W_gate [z; m]) * W_up [z; m])          the gated fusion (SwiGLU)
//     alpha = clamp(sigmoid(MLP(mean_k cos(z, rep_k))) + b, 0, 1)   (B, T, 1)  the shortcut
//     y = h + alpha * out  (+ mlp(z) when keep_mlp)
//   otherwise a Llama block; logits = lm_head(norm(x)).
//
// Routing (route), two kinds of keys:
//   keys = "learned"   product keys (Lample et al. 2019): q = W_q z (B, T, dk) split in halves
//                      q1, q2; two sub-key tables K1, K2 (n, dk/2); s1 = q1 K1^T, s2 = q2 K2^T;
//                      the top-K of each half, the K*K sums s1_i + s2_j, their top-K: entry
//                      i * n + j with score s1_i + s2_j. O(n) per token instead of O(N).
//   keys = "content"   each entry's key is computed from its own tokens: k_e = W_c pool(e),
//                      pool(e) = sum_l w_el (E[tok_el] * (1 + P_l)) with learned per-position
//                      scales P (L, C) — the mean of the embeddings cannot tell "a b" from
//                      "b a", and two-syllable subjects differ only by order; q = W_q z; the
//                      top-K of q . k_e over all N entries (O(N) per token). An entry written
//                      at run time gets a key at once, so it can be found without retraining.
// The selection logits include the router scores, so the LM loss reaches W_q and the keys
// (tests/memory/test_explicit.cpp checks the gradient).
//
// Router training signals (forward_backward; weights in ExplicitConfig):
//   the LM loss through the selection; the reference's auxiliary terms, similarity
//   (-mean cos(z, rep_selected)) and diversity (mean squared cosine between the K candidates'
//   representations); and, where the data says which entry a position should read
//   (set_router_targets), a supervised term: learned keys, the cross-entropy of s1 over the n
//   rows against the entry's row plus that of s2 against its column; content keys, the
//   cross-entropy of q . k over all N entries against the entry.
//
// The bank is shared by all streams, so the state between segments is empty. Its tokens are a
// persistent buffer, "bank.tokens" (N, L) i32 with -1 padding, with "bank.written" and
// "bank.last_used" (N) i64 and "bank.clock" (1) i64: a checkpoint holds the bank. After
// loading a state dict, or to edit, use `bank()` / `set_bank()`: the host MemoryBank is the
// truth, the buffers follow it. The forward pass never changes the bank (nor last_used: a
// caller that wants lru bookkeeping records last_retrieval() with bank().record_use).
//
// The Gumbel noise of training forward number s is drawn from Generator(seed, 64 s), with
// [seed, s] kept in the persistent buffer "noise_state", so a resumed run draws what the
// uninterrupted one would have.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "memory/explicit_bank.h"
#include "memory/explicit_memory.h"
#include "memory/segment_lm.h"
#include "nn/llama.h"

namespace mnemo::memory {

// The "memory" section of a config for mechanism "explicit". JSON keys are the field names.
struct ExplicitConfig {
  std::vector<int64_t> layers = {-1};  // memory layers; negative counts from the end
  int64_t bank_entries = 4096;         // N, a perfect square n * n
  int64_t entry_length = 16;           // L
  int64_t key_dim = 128;               // dk (even: two halves of dk / 2 for product keys)
  int64_t candidates = 4;              // K
  std::string keys = "learned";        // "learned" | "content"
  double gumbel_temperature = 1.0;     // tau
  double router_weight = 1.0;          // the supervised router term (where targets are given)
  double similarity_weight = 0.0;      // the reference's auxiliary terms
  double diversity_weight = 0.0;
  int64_t fusion_hidden = 0;     // the fusion's SwiGLU width; 0 = intermediate_size
  double alpha_bias = 0.0;       // b at init
  bool keep_mlp = false;         // false: the memory block replaces the layer's MLP
  bool freeze_backbone = false;  // train only the router, fusion and norms
  double freeze_ratio = 0.2;     // the bank's base part that `add` never replaces
  std::string bank;              // a bank file (safetensors) or a text file of
                                 // entries, one per line; loaded by the trainer
  int64_t segment_length = 64;   // the local window (<= max_position_embeddings)

  static ExplicitConfig from_json(const nlohmann::json& j);
  nlohmann::json to_json() const;
  // Throws mnemo::Error naming the key of a bad value.
  void validate(const nn::LlamaConfig& model) const;
};

// What one memory layer did on the last forward, for diagnostics and --show-retrieval.
struct Retrieval {
  Tensor selected;    // (B, T) i64 on the CPU: the entry each position read
  Tensor candidates;  // (B, T, K) i64 on the CPU
  Tensor alpha;       // (B, T) f32 on the CPU: the shortcut gate
};

class ExplicitLM : public SegmentLM {
 public:
  ExplicitLM(const nn::LlamaConfig& model, const ExplicitConfig& cfg, Generator* gen = nullptr);

  std::string mechanism() const override { return "explicit"; }
  MemoryState initial_state(int64_t batch) const override;  // empty: the bank is shared
  // ids (B, T), 1 <= T <= segment_length -> logits (B, T, V); the state stays empty.
  SegmentOutput forward_segment(const Tensor& ids, const MemoryState& state) override;
  int64_t segment_length() const override { return config.segment_length; }

  // The LM loss plus the router terms above. Router targets given by set_router_targets are
  // used by this call and then dropped.
  double forward_backward(const std::vector<Tensor>& ids, const std::vector<Tensor>& targets,
                          const MemoryState& initial, MemoryState* final_state = nullptr,
                          double grad_scale = 1.0) override;

  // For the next forward_backward: targets[s] (B, T) integer, the bank entry position t of
  // segment s should read, -1 where the data does not say.
  void set_router_targets(std::vector<Tensor> targets);

  // The bank (host truth). set_bank replaces it (its N and L must be the config's); after
  // editing bank() in place, call bank_changed() so the buffers and device mirror follow.
  const MemoryBank& bank() const { return bank_; }
  MemoryBank& bank() { return bank_; }
  void set_bank(MemoryBank bank);
  void bank_changed();
  // Rebuilds the host bank from the "bank.*" buffers (load_state_dict calls it).
  void bank_from_buffers();
  void after_load_state_dict() override { bank_from_buffers(); }

  // Representations (M, C) of token lists as the model sees entries (the mean of their
  // embeddings), and of bank entries by index; no grad. For the `similar` policy and tools.
  Tensor represent(const std::vector<std::vector<int32_t>>& entries) const;
  Tensor represent_entries(const std::vector<int64_t>& entries) const;

  // One per memory layer, from the last forward_segment.
  const std::vector<Retrieval>& last_retrieval() const { return retrieval_; }
  // The router's loss terms of the last forward_backward (0 where not used).
  double last_router_loss = 0, last_similarity_loss = 0, last_diversity_loss = 0;

  nn::LlamaConfig model_config;
  ExplicitConfig config;          // layers resolved to 0 .. L-1, sorted
  std::shared_ptr<Module> model;  // "model": embed_tokens, layers, norm, rotary_emb
  std::shared_ptr<nn::Embedding> embed_tokens;
  std::vector<std::shared_ptr<nn::TransformerBlock>> blocks;        // null on memory layers
  std::vector<std::shared_ptr<ExplicitMemoryBlock>> memory_blocks;  // null elsewhere
  std::shared_ptr<nn::RMSNorm> norm;
  std::shared_ptr<nn::RotaryEmbedding> rotary_emb;
  std::shared_ptr<nn::Linear> lm_head;  // null when tie_word_embeddings

 private:
  struct RouterLosses {
    double router = 0, similarity = 0, diversity = 0;
  };
  BankView bank_view() const;
  // forward_segment, keeping each memory layer's trace (for the router's loss terms).
  SegmentOutput forward_traced(const Tensor& ids, const MemoryState& state,
                               std::vector<ExplicitTrace>* traces);
  // The weighted router terms of one segment (undefined when none applies); target (B, T)
  // entry ids or -1, undefined when the data gives none.
  Tensor router_terms(const std::vector<ExplicitTrace>& traces, const Tensor& target,
                      RouterLosses& sums) const;

  MemoryBank bank_;
  Tensor bank_tokens_, bank_written_, bank_last_used_, bank_clock_;  // persistent buffers
  Tensor noise_state_;    // (2) i64 persistent: [seed, training forwards so far]
  Tensor entry_ids_;      // (N, L) i64 on the model's device: tokens with -1 -> 0
  Tensor entry_weights_;  // (N, L) f32: 1 / count on the tokens, 0 on the padding
  Tensor free_bias_;      // (N) f32: -1e9 on free entries
  std::vector<Tensor> router_targets_;
  std::vector<Retrieval> retrieval_;
};

}  // namespace mnemo::memory

// ExplicitLM's layer (memory/explicit.h): the router over the bank, the Gumbel selection and
// the gated fusion (ExplicitMemory), and the decoder layer that uses them in place of its MLP
// (ExplicitMemoryBlock). Shapes: M = B * T positions, C width, K candidates, N = n * n
// entries of L tokens, dk the key width.
#pragma once

#include <memory>
#include <vector>

#include "core/ops/random.h"
#include "nn/attention.h"
#include "nn/linear.h"
#include "nn/mlp.h"
#include "nn/norm.h"
#include "nn/rotary.h"

namespace mnemo::memory {

struct ExplicitConfig;

// The bank as the layer reads it (all on the model's device).
struct BankView {
  Tensor embedding;  // (V, C) the LM's token embeddings: entries are represented with them
  Tensor ids;        // (N, L) i64, padding replaced by 0
  Tensor weights;    // (N, L) f32: 1 / (tokens in the entry) on tokens, 0 on the padding
  Tensor free_bias;  // (N) f32: -1e9 on free entries, 0 elsewhere (content keys skip them)
  int64_t side = 0;  // n
};

// The selection (M, K) over K candidates' logits (M, K): forward, exactly one_hot(argmax(logits
// + gumbel)); backward, the gradient of softmax((logits + gumbel) / temperature) — the hard
// Gumbel-softmax with the straight-through estimator. gumbel undefined: no noise (evaluation).
// hard = false returns the soft weights themselves. *pick (if given) receives the argmax (M).
Tensor gumbel_select(const Tensor& logits, const Tensor& gumbel, double temperature,
                     bool hard = true, Tensor* pick = nullptr);
// Standard Gumbel noise -log(-log(u)) (M, K), drawn from `gen`.
Tensor gumbel_noise(int64_t M, int64_t K, TensorOptions options, Generator* gen);

// Route, select, fuse. Returns alpha * out (M, C); fills `trace` when given.
struct ExplicitTrace {
  Tensor candidates;  // (M, K) i64 entry ids
  Tensor selected;    // (M) i64
  Tensor alpha;       // (M, 1)
  // For the router's loss terms (differentiable):
  Tensor row_scores, col_scores;  // learned keys: (M, n) each
  Tensor entry_scores;            // content keys: (M, N)
  Tensor similarity;              // (M) cos(z, rep_selected)
  Tensor diversity;               // (M) mean squared cosine between candidate pairs
};

class ExplicitMemory : public nn::Module {
 public:
  ExplicitMemory(int64_t hidden, const ExplicitConfig& cfg, int64_t fusion_hidden, Generator* gen,
                 double init_std);

  // z (M, C) normed hidden states -> alpha * fusion([z; m]) (M, C). `noise` draws the Gumbel
  // noise in training (undefined generator state = evaluation: argmax).
  Tensor forward(const Tensor& z, const BankView& bank, Generator* noise,
                 ExplicitTrace* trace) const;

  // (M, K) router scores and entry ids of the top-K candidates (and the full score tables
  // into `trace`).
  void route(const Tensor& q, const BankView& bank, Tensor& scores, Tensor& entries,
             ExplicitTrace* trace) const;
  // Representations (P, C) of entries (P) i64: the mean of their token embeddings.
  static Tensor represent(const BankView& bank, const Tensor& entries);

  bool content_keys;
  int64_t candidates, key_dim;
  double temperature;
  std::shared_ptr<nn::Linear> q_proj;                         // C -> dk
  Tensor row_keys, col_keys;                                  // learned: (n, dk / 2) each
  Tensor position_scale;                                      // content: (L, C), P in pool(e)
  std::shared_ptr<nn::Linear> key_proj;                       // content: C -> dk
  std::shared_ptr<nn::Linear> gate_proj, up_proj, down_proj;  // fusion: 2C -> F, 2C -> F, F -> C
  std::shared_ptr<nn::Linear> alpha_in, alpha_out;            // 1 -> 16 -> 1
  Tensor alpha_bias;                                          // (1) b
};

// A decoder layer whose MLP is the memory (or, with keep_mlp, is kept beside it):
//   h = x + attn(norm1(x));  z = norm2(h);  y = h + memory(z) (+ mlp(z))
// Parameter names follow HF Llama's layer (self_attn, mlp, input_layernorm,
// post_attention_layernorm) plus "memory.*".
class ExplicitMemoryBlock : public nn::Module {
 public:
  ExplicitMemoryBlock(int64_t hidden, int64_t heads, int64_t kv_heads, int64_t intermediate,
                      double eps, const ExplicitConfig& cfg, Generator* gen, double init_std);

  // x (B, T, C) -> (B, T, C)
  Tensor forward(const Tensor& x, const nn::RopeTables& rope, const BankView& bank,
                 Generator* noise, ExplicitTrace* trace) const;

  std::shared_ptr<nn::CausalSelfAttention> self_attn;
  std::shared_ptr<nn::SwiGLU> mlp;  // null unless keep_mlp
  std::shared_ptr<nn::RMSNorm> input_layernorm, post_attention_layernorm;
  std::shared_ptr<ExplicitMemory> memory;
};

}  // namespace mnemo::memory

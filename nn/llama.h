// LlamaForCausalLM: a decoder-only language model with HF transformers' Llama architecture,
// config keys and tensor names, so a state_dict saved from here loads there unchanged.
//
//   ids (B, T) -> embed_tokens -> [TransformerBlock] x L -> norm -> lm_head -> logits (B, T, V)
//
// state_dict names (exactly HF's): model.embed_tokens.weight,
//   model.layers.{i}.self_attn.{q,k,v,o}_proj.weight, model.layers.{i}.mlp.{gate,up,down}_proj
//   .weight, model.layers.{i}.input_layernorm.weight, model.layers.{i}.post_attention_layernorm
//   .weight, model.norm.weight, and lm_head.weight only when the embeddings are untied (tied:
//   the output projection is the embedding matrix itself, one parameter).
// The RoPE tables are non-persistent buffers of model.rotary_emb (not in state_dict).
//
// The hooks later users need (docs/design.md): token ids or input embeddings, optional position
// ids, an additive attention bias, a KV cache, and every layer's hidden states.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "nn/attention.h"
#include "nn/linear.h"
#include "nn/norm.h"
#include "nn/rotary.h"
#include "nn/transformer.h"

namespace mnemo::nn {

// The model part of an HF Llama config.json (same keys, same meaning).
struct LlamaConfig {
  int64_t vocab_size = 32000;
  int64_t hidden_size = 4096;
  int64_t intermediate_size = 11008;
  int64_t num_hidden_layers = 32;
  int64_t num_attention_heads = 32;
  int64_t num_key_value_heads = 32;
  std::string hidden_act = "silu";
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000;
  int64_t max_position_embeddings = 2048;
  bool tie_word_embeddings = false;
  double initializer_range = 0.02;

  int64_t head_dim() const { return hidden_size / num_attention_heads; }
  // Throws mnemo::Error naming the field that is out of range or inconsistent.
  void validate() const;
};

struct LMInput {
  Tensor input_ids;          // (B, T) integer token ids, or
  Tensor inputs_embeds;      // (B, T, hidden) instead of ids
  Tensor position_ids;       // optional (B, T) or (T,); default past_len + arange(T)
  Tensor attention_bias;     // optional additive, broadcastable to (B, H, T, past + T)
  KVCache* cache = nullptr;  // read and appended to when given
  bool output_hidden_states = false;
};

struct LMOutput {
  Tensor logits;                      // (B, T, vocab)
  Tensor last_hidden;                 // (B, T, hidden) after the final norm
  std::vector<Tensor> hidden_states;  // when asked, L + 1 of (B, T, hidden): the embeddings,
                                      // then each layer's output (before the final norm; HF
                                      // puts last_hidden in the last slot instead)
};

// HF's LlamaModel (the "model." prefix): everything but the output projection.
class LlamaModel : public Module {
 public:
  explicit LlamaModel(const LlamaConfig& config, Generator* gen = nullptr);
  // -> last hidden state (B, T, C) after the final norm; fills hidden_states if non-null.
  Tensor forward(const LMInput& input, std::vector<Tensor>* hidden_states = nullptr) const;

  LlamaConfig config;
  std::shared_ptr<Embedding> embed_tokens;
  std::shared_ptr<ModuleList> layer_list;  // registered as "layers"
  std::vector<std::shared_ptr<TransformerBlock>> layers;
  std::shared_ptr<RMSNorm> norm;
  std::shared_ptr<RotaryEmbedding> rotary_emb;
};

class LlamaForCausalLM : public Module {
 public:
  // Validates config; weights from normal(0, initializer_range) drawn from gen (or the
  // process-wide generator), norms at 1.
  explicit LlamaForCausalLM(const LlamaConfig& config, Generator* gen = nullptr);

  LMOutput forward(const LMInput& input) const;
  // Training fast path: the mean (or sum) next-token cross-entropy over targets != -100.
  // input_ids (B, T), targets (B, T) integer -> scalar. Only the (B*T, V) logits are made.
  Tensor loss(const Tensor& input_ids, const Tensor& targets,
              Reduction reduction = Reduction::mean) const;
  // An empty cache with one slot per layer.
  KVCache make_cache() const;
  // The output projection (V, C): lm_head.weight, or the embedding matrix when tied.
  const Tensor& output_weight() const;

  LlamaConfig config;
  std::shared_ptr<LlamaModel> model;
  std::shared_ptr<Linear> lm_head;  // null when tie_word_embeddings
};

}  // namespace mnemo::nn

// LlamaConfig, LlamaModel and LlamaForCausalLM (llama.h).
//
// Speed notes (the training step is what `mnemo train` spends its time in): activations stay
// (B*T, C) rows for every projection (views, no copies), q/k/v and gate/up are one GEMM each
// (attention.h, mlp.h), RoPE slices precomputed tables, and the loss goes straight from the
// (B*T, V) logits into the fused cross_entropy.
#include "nn/llama.h"

#include "autograd/ops.h"
#include "core/error.h"

namespace mnemo::nn {

void LlamaConfig::validate() const {
  auto positive = [](int64_t value, const char* field) {
    MNEMO_CHECK(value > 0, "LlamaConfig: {} must be positive, got {}", field, value);
  };
  positive(vocab_size, "vocab_size");
  positive(hidden_size, "hidden_size");
  positive(intermediate_size, "intermediate_size");
  positive(num_hidden_layers, "num_hidden_layers");
  positive(num_attention_heads, "num_attention_heads");
  positive(num_key_value_heads, "num_key_value_heads");
  positive(max_position_embeddings, "max_position_embeddings");
  MNEMO_CHECK(hidden_size % num_attention_heads == 0,
              "LlamaConfig: hidden_size {} is not divisible by num_attention_heads {}", hidden_size,
              num_attention_heads);
  MNEMO_CHECK(num_attention_heads % num_key_value_heads == 0,
              "LlamaConfig: num_attention_heads {} is not divisible by num_key_value_heads {}",
              num_attention_heads, num_key_value_heads);
  MNEMO_CHECK(head_dim() % 2 == 0,
              "LlamaConfig: head dim hidden_size / num_attention_heads = {} must be even (RoPE)",
              head_dim());
  MNEMO_CHECK(hidden_act == "silu", "LlamaConfig: hidden_act '{}' is not supported (only 'silu')",
              hidden_act);
  MNEMO_CHECK(rms_norm_eps > 0, "LlamaConfig: rms_norm_eps must be positive, got {}", rms_norm_eps);
  MNEMO_CHECK(rope_theta > 0, "LlamaConfig: rope_theta must be positive, got {}", rope_theta);
  MNEMO_CHECK(initializer_range >= 0, "LlamaConfig: initializer_range must be >= 0, got {}",
              initializer_range);
}

LlamaModel::LlamaModel(const LlamaConfig& c, Generator* gen) : config(c) {
  config.validate();
  const double std = c.initializer_range;
  embed_tokens = register_module(
      "embed_tokens", std::make_shared<Embedding>(c.vocab_size, c.hidden_size, gen, std));
  layer_list = register_module("layers", std::make_shared<ModuleList>());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    layers.push_back(layer_list->append(std::make_shared<TransformerBlock>(
        c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.intermediate_size,
        c.rms_norm_eps, gen, std)));
  }
  norm = register_module("norm", std::make_shared<RMSNorm>(c.hidden_size, c.rms_norm_eps));
  rotary_emb = register_module(
      "rotary_emb",
      std::make_shared<RotaryEmbedding>(c.head_dim(), c.max_position_embeddings, c.rope_theta));
}

Tensor LlamaModel::forward(const LMInput& in, std::vector<Tensor>* hidden_states) const {
  MNEMO_CHECK(in.input_ids.defined() != in.inputs_embeds.defined(),
              "LlamaModel: give exactly one of input_ids and inputs_embeds");
  Tensor h;  // (B, T, C)
  if (in.input_ids.defined()) {
    MNEMO_CHECK(in.input_ids.dim() == 2 && is_integral(in.input_ids.dtype()),
                "LlamaModel: input_ids must be integer (B, T), got {} {}", in.input_ids.dtype(),
                shape_str(in.input_ids.shape()));
    h = embed_tokens->forward(in.input_ids);
  } else {
    MNEMO_CHECK(in.inputs_embeds.dim() == 3 && in.inputs_embeds.size(2) == config.hidden_size,
                "LlamaModel: inputs_embeds must be (B, T, {}), got {}", config.hidden_size,
                shape_str(in.inputs_embeds.shape()));
    h = in.inputs_embeds;
  }
  const int64_t T = h.size(1);
  const int64_t L = int64_t(layers.size());
  if (in.cache != nullptr) {
    if (in.cache->layers.empty()) in.cache->layers.resize(size_t(L));
    MNEMO_CHECK(int64_t(in.cache->layers.size()) == L,
                "LlamaModel: KV cache has {} layers, the model {}", in.cache->layers.size(), L);
  }
  const int64_t past = in.cache != nullptr ? in.cache->length() : 0;
  const RopeTables rope = rotary_emb->tables(in.position_ids, past, T);
  if (hidden_states != nullptr) hidden_states->assign(1, h);
  for (int64_t i = 0; i < L; ++i) {
    LayerKV* layer_cache = in.cache != nullptr ? &in.cache->layers[size_t(i)] : nullptr;
    h = layers[size_t(i)]->forward(h, rope, layer_cache, nullptr, in.attention_bias);
    if (hidden_states != nullptr) hidden_states->push_back(h);
  }
  return norm->forward(h);
}

LlamaForCausalLM::LlamaForCausalLM(const LlamaConfig& c, Generator* gen) : config(c) {
  model = register_module("model", std::make_shared<LlamaModel>(c, gen));
  if (!c.tie_word_embeddings) {
    lm_head = register_module("lm_head", std::make_shared<Linear>(c.hidden_size, c.vocab_size,
                                                                  false, gen, c.initializer_range));
  }
}

const Tensor& LlamaForCausalLM::output_weight() const {
  return lm_head ? lm_head->weight : model->embed_tokens->weight;
}

LMOutput LlamaForCausalLM::forward(const LMInput& input) const {
  LMOutput out;
  out.last_hidden =
      model->forward(input, input.output_hidden_states ? &out.hidden_states : nullptr);
  const int64_t B = out.last_hidden.size(0), T = out.last_hidden.size(1);
  const Tensor rows = reshape(out.last_hidden, {B * T, config.hidden_size});
  out.logits = view(linear(rows, output_weight()), {B, T, config.vocab_size});
  return out;
}

Tensor LlamaForCausalLM::loss(const Tensor& input_ids, const Tensor& targets,
                              Reduction reduction) const {
  MNEMO_CHECK(
      targets.defined() && targets.shape() == input_ids.shape() && is_integral(targets.dtype()),
      "LlamaForCausalLM::loss: targets must be integer with the shape of input_ids {}, "
      "got {} {}",
      shape_str(input_ids.shape()), targets.dtype(), shape_str(targets.shape()));
  LMInput input;
  input.input_ids = input_ids;
  const Tensor h = model->forward(input);  // (B, T, C)
  const int64_t N = h.size(0) * h.size(1);
  const Tensor logits = linear(reshape(h, {N, config.hidden_size}), output_weight());  // (N, V)
  return cross_entropy(logits, reshape(targets, {N}), -100, 0, reduction);
}

KVCache LlamaForCausalLM::make_cache() const {
  KVCache cache;
  cache.layers.resize(size_t(config.num_hidden_layers));
  return cache;
}

}  // namespace mnemo::nn

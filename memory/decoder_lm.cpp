// DecoderLM (decoder_lm.h): the shared Llama skeleton of the memory mechanisms.
#include "memory/decoder_lm.h"

#include "autograd/ops.h"

namespace mnemo::memory {

DecoderLM::DecoderLM(const nn::LlamaConfig& m, Generator* gen) : model_config(m) {
  m.validate();
  model = register_module("model", std::make_shared<nn::Module>());
  embed_tokens = model->register_module(
      "embed_tokens",
      std::make_shared<nn::Embedding>(m.vocab_size, m.hidden_size, gen, m.initializer_range));
  layer_list = model->register_module("layers", std::make_shared<nn::ModuleList>());
}

std::shared_ptr<nn::TransformerBlock> DecoderLM::append_llama_block(Generator* gen) {
  const nn::LlamaConfig& m = model_config;
  return layer_list->append(std::make_shared<nn::TransformerBlock>(
      m.hidden_size, m.num_attention_heads, m.num_key_value_heads, m.intermediate_size,
      m.rms_norm_eps, gen, m.initializer_range));
}

void DecoderLM::finish_decoder(Generator* gen) {
  const nn::LlamaConfig& m = model_config;
  norm =
      model->register_module("norm", std::make_shared<nn::RMSNorm>(m.hidden_size, m.rms_norm_eps));
  rotary_emb = model->register_module(
      "rotary_emb",
      std::make_shared<nn::RotaryEmbedding>(m.head_dim(), m.max_position_embeddings, m.rope_theta));
  if (!m.tie_word_embeddings) {
    lm_head = register_module(
        "lm_head",
        std::make_shared<nn::Linear>(m.hidden_size, m.vocab_size, false, gen, m.initializer_range));
  }
}

Tensor DecoderLM::output_logits(const Tensor& x) const {
  const int64_t B = x.size(0), T = x.size(1);
  const Tensor h = norm->forward(x);
  const Tensor& w = lm_head ? lm_head->weight : embed_tokens->weight;
  return view(linear(reshape(h, {B * T, model_config.hidden_size}), w),
              {B, T, model_config.vocab_size});
}

}  // namespace mnemo::memory

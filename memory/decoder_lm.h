// DecoderLM: the Llama skeleton that the Memorizing Transformer, Titans and ExplicitLM build
// their memory layers into, so each mechanism writes only what differs.
//
//   model.embed_tokens   (V, C)                    registered by the constructor
//   model.layers.{i}     Llama blocks or the mechanism's memory blocks, appended in order
//   model.norm, model.rotary_emb, lm_head (unless tied)   registered by finish_decoder()
//
// Names are HF Llama's, so a plain Llama checkpoint's layers load by name. A mechanism's
// constructor calls DecoderLM(model, gen), appends one module per layer (append_llama_block
// for the plain ones), then finish_decoder(gen): the random init draws in the order embed,
// layers, head, as nn::LlamaForCausalLM's does.
#pragma once

#include <memory>

#include "memory/segment_lm.h"
#include "nn/llama.h"

namespace mnemo::memory {

class DecoderLM : public SegmentLM {
 public:
  // x (B, T, C) after the last layer -> logits (B, T, V): the final norm, then lm_head (or the
  // tied embedding).
  Tensor output_logits(const Tensor& x) const;

  nn::LlamaConfig model_config;
  std::shared_ptr<Module> model;  // "model": embed_tokens, layers, norm, rotary_emb
  std::shared_ptr<nn::Embedding> embed_tokens;
  std::shared_ptr<nn::ModuleList> layer_list;  // "model.layers"
  std::shared_ptr<nn::RMSNorm> norm;
  std::shared_ptr<nn::RotaryEmbedding> rotary_emb;
  std::shared_ptr<nn::Linear> lm_head;  // null when tie_word_embeddings

 protected:
  DecoderLM(const nn::LlamaConfig& model, Generator* gen);  // validates the config
  // Appends a plain Llama block (nn/transformer.h) as the next layer.
  std::shared_ptr<nn::TransformerBlock> append_llama_block(Generator* gen);
  // After the layers: norm, rotary tables and lm_head.
  void finish_decoder(Generator* gen);
};

}  // namespace mnemo::memory

// The tiny Llama configurations the tests build models from (header-only, so that tests/cuda
// may use it too). By default: two layers of hidden size 16, 32 tokens, 64 positions. Sizes
// left at 0 follow hidden_size: heads of dim 4, two query heads per key/value head, a SwiGLU
// 1.5 times as wide. A test names only what it changes, in the order of the fields below
// (designated initializers):
//
//   nn::LlamaConfig c = test::tiny_llama();  // 16 wide: 4 heads on 2 kv heads, SwiGLU 24
//   nn::LlamaConfig c = test::tiny_llama({.vocab_size = 11, .hidden_size = 8});  // 2 on 1, 12
#pragma once

#include <cstdint>

#include "nn/llama.h"

namespace mnemo::test {

struct TinyLlama {
  int64_t vocab_size = 32;
  int64_t hidden_size = 16;
  int64_t intermediate_size = 0;  // 0: hidden_size * 3 / 2
  int64_t num_hidden_layers = 2;
  int64_t num_attention_heads = 0;  // 0: hidden_size / 4
  int64_t num_key_value_heads = 0;  // 0: half the query heads
  int64_t max_position_embeddings = 64;
  bool tie_word_embeddings = false;
  double initializer_range = 0.02;  // nn::LlamaConfig's default
};

inline nn::LlamaConfig tiny_llama(const TinyLlama& t = {}) {
  nn::LlamaConfig c;
  c.vocab_size = t.vocab_size;
  c.hidden_size = t.hidden_size;
  c.intermediate_size = t.intermediate_size ? t.intermediate_size : t.hidden_size * 3 / 2;
  c.num_hidden_layers = t.num_hidden_layers;
  c.num_attention_heads = t.num_attention_heads ? t.num_attention_heads : t.hidden_size / 4;
  c.num_key_value_heads = t.num_key_value_heads ? t.num_key_value_heads : c.num_attention_heads / 2;
  c.max_position_embeddings = t.max_position_embeddings;
  c.tie_word_embeddings = t.tie_word_embeddings;
  c.initializer_range = t.initializer_range;
  return c;
}

}  // namespace mnemo::test

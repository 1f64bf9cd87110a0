// The tiny MemGen set-up that tests/memory/test_memgen.cpp and tests/train/test_memgen_rl.cpp
// share: a micro reasoner (memory_test_util.h) with token 3 as the delimiter and 10 as eos,
// and a one-layer weaver of width 8 with 3 prompt and 2 inference latents.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "memory/memgen.h"
#include "memory/memory_test_util.h"

namespace mnemo::memory::test {

inline constexpr int64_t kMemGenDelimiter = 3, kMemGenEos = 10;

inline std::shared_ptr<nn::LlamaForCausalLM> memgen_reasoner(uint64_t seed = 1) {
  Generator gen(seed);
  return std::make_shared<nn::LlamaForCausalLM>(micro_llama(2), &gen);
}

// A reasoner that writes delimiters often: the micro Llama with the delimiter's output row
// raised.
inline std::shared_ptr<nn::LlamaForCausalLM> chatty_reasoner() {
  auto reasoner = memgen_reasoner(7);
  NoGradGuard no_grad;
  const Tensor row = select(reasoner->output_weight(), 0, kMemGenDelimiter);
  copy_(row, row * 4.0);
  return reasoner;
}

inline MemGenConfig memgen_config(const std::string& source = "weaver") {
  MemGenConfig c;
  c.source = source;
  c.weaver = mnemo::test::tiny_llama({.vocab_size = 1,
                                      .hidden_size = 8,
                                      .num_hidden_layers = 1,
                                      .num_attention_heads = 2,
                                      .num_key_value_heads = 2,
                                      .max_position_embeddings = 80,
                                      .initializer_range = 0.3});
  c.prompt_latents = 3;
  c.inference_latents = 2;
  c.delimiters = {kMemGenDelimiter};
  c.max_inference_aug = 2;
  return c;
}

}  // namespace mnemo::memory::test

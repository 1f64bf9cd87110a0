// Generation loop (see generate.h).
#include "train/lib/generate.h"

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"

namespace mnemo::train {

namespace {

// The logits of the last position: (1, T, V) -> (V,).
Tensor last_logits(const Tensor& logits) {
  return select(select(logits, 0, 0), 0, -1);
}

// (1, T) ids on the model's device.
Tensor ids_tensor(std::span<const int32_t> ids, Device device) {
  return to(from_vector(std::vector<int64_t>(ids.begin(), ids.end()), {1, int64_t(ids.size())}),
            device);
}

}  // namespace

nn::Sampled next_token(const Tensor& logits, const GenerateOptions& options, Generator& gen) {
  MNEMO_CHECK(options.vocab_limit >= 0, "generate: vocab_limit must be >= 0, got {}",
              options.vocab_limit);
  const int64_t V = logits.size(-1);
  if (options.vocab_limit == 0 || options.vocab_limit >= V) {
    return nn::sample_token(logits, options.sampling, gen);
  }
  return nn::sample_token(narrow(logits, -1, 0, options.vocab_limit), options.sampling, gen);
}

Generated generate(nn::LlamaForCausalLM& model, std::span<const int32_t> prompt,
                   const GenerateOptions& options) {
  MNEMO_CHECK(!prompt.empty(), "generate: the prompt must hold at least one token");
  const Device device = model.parameters().front().device();
  MNEMO_CHECK(options.max_new_tokens >= 0, "generate: max_new_tokens must be >= 0, got {}",
              options.max_new_tokens);
  const int64_t limit = model.config.max_position_embeddings;
  MNEMO_CHECK(int64_t(prompt.size()) <= limit,
              "generate: the prompt has {} tokens, the model's context is {}", prompt.size(),
              limit);
  const bool was_training = model.is_training();
  model.eval();
  NoGradGuard no_grad;
  Generator gen(options.seed);
  Generated out;
  std::vector<int32_t> sequence(prompt.begin(), prompt.end());
  nn::KVCache cache = model.make_cache();

  Tensor logits;
  {
    nn::LMInput input;
    input.input_ids = ids_tensor(sequence, device);
    if (options.use_cache) input.cache = &cache;
    logits = last_logits(model.forward(input).logits);
  }
  for (int64_t step = 0; step < options.max_new_tokens; ++step) {
    if (int64_t(sequence.size()) >= limit) {
      out.hit_context_limit = true;
      break;
    }
    const nn::Sampled next = next_token(logits, options, gen);
    out.tokens.push_back(int32_t(next.token));
    out.logprobs.push_back(next.logprob);
    sequence.push_back(int32_t(next.token));
    if (next.token == options.eos_id) break;
    if (step + 1 == options.max_new_tokens) break;
    nn::LMInput input;
    if (options.use_cache) {
      input.input_ids = ids_tensor(std::span(sequence).last(1), device);
      input.cache = &cache;
    } else {
      input.input_ids = ids_tensor(sequence, device);
    }
    logits = last_logits(model.forward(input).logits);
  }
  model.train(was_training);
  return out;
}

}  // namespace mnemo::train

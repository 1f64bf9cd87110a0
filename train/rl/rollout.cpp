// Rollouts: batched sampling through the KV cache, and the training view of the batch
// (see rollout.h).
#include "train/rl/rollout.h"

#include <algorithm>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "nn/sampling.h"

namespace mnemo::rl {

namespace {

constexpr double kMaskedKey = -1e9;  // the attention bias of a pad key: finite, so no NaN

// (B, T) ids of columns [first, first + T) of every row.
Tensor columns_tensor(const Rollouts& r, int64_t first, int64_t T, Device device) {
  std::vector<int64_t> ids(size_t(r.rows * T));
  for (int64_t row = 0; row < r.rows; ++row) {
    for (int64_t c = 0; c < T; ++c) {
      ids[size_t(row * T + c)] = r.tokens[size_t(row * r.columns + first + c)];
    }
  }
  return to(from_vector(ids, {r.rows, T}), device);
}

// Position ids (B, T) of columns [first, first + T): the column less the row's pads.
Tensor positions_tensor(std::span<const int64_t> pads, int64_t first, int64_t T, Device device) {
  const int64_t B = int64_t(pads.size());
  std::vector<int64_t> pos(size_t(B * T));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t c = 0; c < T; ++c) {
      pos[size_t(b * T + c)] = std::max<int64_t>(0, first + c - pads[size_t(b)]);
    }
  }
  return to(from_vector(pos, {B, T}), device);
}

// Additive bias (B, 1, 1, K) over keys [0, K): -1e9 on each row's pads.
Tensor pad_bias(std::span<const int64_t> pads, int64_t K, Device device) {
  const int64_t B = int64_t(pads.size());
  std::vector<float> bias(size_t(B * K), 0.0f);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t k = 0; k < std::min(K, pads[size_t(b)]); ++k) {
      bias[size_t(b * K + k)] = float(kMaskedKey);
    }
  }
  return to(from_vector(bias, {B, 1, 1, K}), device);
}

}  // namespace

std::vector<int32_t> Rollouts::answer(int64_t row, int64_t eos_id) const {
  std::vector<int32_t> out;
  for (int64_t c = prompt_columns; c < columns; ++c) {
    const size_t at = size_t(row * columns + c);
    if (kind[at] != Column::response) break;
    if (tokens[at] == eos_id) break;
    out.push_back(tokens[at]);
  }
  return out;
}

std::vector<float> Rollouts::action_mask() const {
  const int64_t A = actions_per_row();
  std::vector<float> mask(size_t(rows * A), 0.0f);
  for (int64_t row = 0; row < rows; ++row) {
    for (int64_t c = 0; c < A; ++c) mask[size_t(row * A + c)] = is_action(row, c) ? 1.0f : 0.0f;
  }
  return mask;
}

bool Rollouts::padded() const {
  return std::any_of(pads.begin(), pads.end(), [](int64_t p) { return p > 0; });
}

Rollouts sample_rollouts(const nn::LlamaForCausalLM& model,
                         const std::vector<std::vector<int32_t>>& prompts,
                         std::span<const uint64_t> seeds, const RolloutOptions& o) {
  MNEMO_CHECK(!prompts.empty(), "rollouts: no prompts");
  MNEMO_CHECK(seeds.size() == prompts.size(), "rollouts: {} prompts but {} seeds", prompts.size(),
              seeds.size());
  MNEMO_CHECK(o.group_size >= 1 && o.max_new_tokens >= 1,
              "rollouts: group_size ({}) and max_new_tokens ({}) must be positive", o.group_size,
              o.max_new_tokens);
  MNEMO_CHECK(o.eos_id >= 0 && o.eos_id < model.config.vocab_size,
              "rollouts: eos_id {} is not an id of the model's vocabulary ({})", o.eos_id,
              model.config.vocab_size);
  nn::SamplingOptions sampling;
  sampling.temperature = o.temperature;
  nn::validate(sampling);

  const int64_t P = int64_t(prompts.size()), G = o.group_size, N = P * G;
  int64_t Lp = 0;
  for (const auto& prompt : prompts) {
    MNEMO_CHECK(!prompt.empty(), "rollouts: an empty prompt (it needs at least one token)");
    Lp = std::max<int64_t>(Lp, int64_t(prompt.size()));
  }
  const int64_t L = Lp + o.max_new_tokens;
  MNEMO_CHECK(L <= model.config.max_position_embeddings,
              "rollouts: prompts of {} tokens and {} new tokens exceed the model's {} positions",
              Lp, o.max_new_tokens, model.config.max_position_embeddings);

  Rollouts r;
  r.rows = N;
  r.group_size = G;
  r.prompt_columns = Lp;
  r.columns = L;
  r.temperature = o.temperature;
  r.tokens.assign(size_t(N * L), int32_t(o.eos_id));
  r.kind.assign(size_t(N * L), Column::after_eos);
  r.pads.assign(size_t(N), 0);
  r.lengths.assign(size_t(N), 0);
  r.finished.assign(size_t(N), 0);
  r.logprobs.assign(size_t(N * (L - 1)), 0.0f);
  for (int64_t row = 0; row < N; ++row) {
    const std::vector<int32_t>& prompt = prompts[size_t(row / G)];
    const int64_t pad = Lp - int64_t(prompt.size());
    r.pads[size_t(row)] = pad;
    for (int64_t c = 0; c < Lp; ++c) {
      const size_t at = size_t(row * L + c);
      r.kind[at] = c < pad ? Column::pad : Column::prompt;
      if (c >= pad) r.tokens[at] = prompt[size_t(c - pad)];
    }
  }

  const Device device = model.parameters().front().device();
  const bool padded = r.padded();
  NoGradGuard no_grad;
  std::vector<Generator> generators;
  for (uint64_t seed : seeds) generators.emplace_back(seed);
  nn::KVCache cache = model.make_cache();
  const int64_t V = model.config.vocab_size;
  const int64_t drawn = o.vocab_limit > 0 ? std::min(o.vocab_limit, V) : V;

  // Prefill: the prompts (N, Lp), then one column per step.
  nn::LMInput input;
  input.input_ids = columns_tensor(r, 0, Lp, device);
  input.cache = &cache;
  if (padded) {
    input.position_ids = positions_tensor(r.pads, 0, Lp, device);
    input.attention_bias = pad_bias(r.pads, Lp, device);
  }
  Tensor logits = model.forward(input).logits;  // (N, T, V)
  std::vector<uint8_t> done(size_t(N), 0);
  for (int64_t step = 0; step < o.max_new_tokens; ++step) {
    const int64_t c = Lp + step;  // the column being written
    const Tensor last = narrow(select(logits, 1, logits.size(1) - 1), 1, 0, drawn);  // (N, V')
    for (int64_t p = 0; p < P; ++p) {
      const std::vector<nn::Sampled> s =
          nn::sample_tokens(narrow(last, 0, p * G, G), sampling, generators[size_t(p)]);
      for (int64_t g = 0; g < G; ++g) {
        const int64_t row = p * G + g;
        if (done[size_t(row)]) continue;
        const size_t at = size_t(row * L + c);
        r.tokens[at] = int32_t(s[size_t(g)].token);
        r.kind[at] = Column::response;
        r.logprobs[size_t(row * (L - 1) + c - 1)] = float(s[size_t(g)].logprob);
        ++r.lengths[size_t(row)];
        if (s[size_t(g)].token == o.eos_id) {
          done[size_t(row)] = 1;
          r.finished[size_t(row)] = 1;
        }
      }
    }
    const bool all_done = std::all_of(done.begin(), done.end(), [](uint8_t d) { return d != 0; });
    if (all_done || step + 1 == o.max_new_tokens) break;
    nn::LMInput next;
    next.input_ids = columns_tensor(r, c, 1, device);
    next.cache = &cache;
    if (padded) {
      next.position_ids = positions_tensor(r.pads, c, 1, device);
      next.attention_bias = pad_bias(r.pads, c + 1, device);
    }
    logits = model.forward(next).logits;
  }
  return r;
}

ActionBatch action_batch(const Rollouts& r, std::span<const int64_t> rows, Device device) {
  const int64_t R = int64_t(rows.size()), A = r.actions_per_row();
  MNEMO_CHECK(R > 0, "action_batch: no rows");
  std::vector<int64_t> inputs(size_t(R * A)), targets(static_cast<size_t>(R * A)),
      pads(static_cast<size_t>(R));
  std::vector<float> mask(size_t(R * A));
  for (int64_t i = 0; i < R; ++i) {
    const int64_t row = rows[size_t(i)];
    MNEMO_ASSERT(row >= 0 && row < r.rows, "action_batch: row {} of {}", row, r.rows);
    pads[size_t(i)] = r.pads[size_t(row)];
    for (int64_t c = 0; c < A; ++c) {
      const size_t at = size_t(i * A + c);
      const bool action = r.is_action(row, c);
      inputs[at] = r.tokens[size_t(row * r.columns + c)];
      targets[at] = action ? r.tokens[size_t(row * r.columns + c + 1)] : -100;
      mask[at] = action ? 1.0f : 0.0f;
    }
  }
  ActionBatch b;
  b.rows = R;
  b.columns = A;
  b.input_ids = to(from_vector(inputs, {R, A}), device);
  b.targets = to(from_vector(targets, {R, A}), device);
  b.mask = to(from_vector(mask, {R, A}), device);
  if (std::any_of(pads.begin(), pads.end(), [](int64_t p) { return p > 0; })) {
    b.position_ids = positions_tensor(pads, 0, A, device);
    b.attention_bias = pad_bias(pads, A, device);
  }
  return b;
}

// log pi(target) = -cross_entropy(logits / temperature, target): the fused op's per-row loss
// (0 where the target is -100), so the (R * T, V) log-softmax is never materialised.
PolicyOutput policy_forward(const nn::LlamaForCausalLM& model, const ActionBatch& b,
                            double temperature, int64_t vocab_limit) {
  nn::LMInput input;
  input.input_ids = b.input_ids;
  input.position_ids = b.position_ids;
  input.attention_bias = b.attention_bias;
  PolicyOutput out;
  const nn::LMOutput lm = model.forward(input);
  out.last_hidden = lm.last_hidden;
  const int64_t V = model.config.vocab_size;
  Tensor logits = reshape(lm.logits, {b.rows * b.columns, V});
  if (vocab_limit > 0 && vocab_limit < V) logits = narrow(logits, 1, 0, vocab_limit);
  if (temperature > 0 && temperature != 1) logits = logits * (1.0 / temperature);
  out.logits = logits;
  const Tensor nll =
      cross_entropy(logits, reshape(b.targets, {b.rows * b.columns}), -100, 0, Reduction::none);
  out.logprobs = reshape(-nll, {b.rows, b.columns});
  return out;
}

// H = -sum_v p_v log p_v, p = softmax(z).
Tensor token_entropy(const Tensor& logits, int64_t rows, int64_t columns) {
  const Tensor logp = log_softmax(logits, -1);
  return reshape(-sum(exp(logp) * logp, {-1}), {rows, columns});
}

}  // namespace mnemo::rl

// Generation with insertions (memgen_generate.h).
#include "memory/memgen_generate.h"

#include <algorithm>
#include <cmath>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "core/splitmix64.h"

namespace mnemo::memory {

namespace {

constexpr float kAbsent = -1e9f;

// The uniform in [0, 1) of row r's k-th decision.
double decision_uniform(uint64_t seed, int64_t row, int64_t k) {
  return double(splitmix64_at(seed + uint64_t(row), uint64_t(k)) >> 11) * 0x1.0p-53;
}

// Host rows of a (N, T, X) tensor's last column: (N, X) floats.
std::vector<float> last_column(const Tensor& x) {
  const Tensor last = select(x, 1, x.size(1) - 1);
  return to(contiguous(last), Device::cpu()).to_vector<float>();
}

// What the batch has decided at one point, and the bookkeeping every mode shares.
class Decoder {
 public:
  Decoder(const MemGenLM& lm, const MemGenTrigger* trigger, const MemGenGenerateOptions& o,
          int64_t rows)
      : lm_(lm), trigger_(trigger), o_(o), gen_(o.seed), n_(rows) {
    out_.tokens.resize(size_t(rows));
    out_.logprobs.resize(size_t(rows));
    out_.ended.assign(size_t(rows), 0);
    out_.inserted.resize(size_t(rows));
    inference_count_.assign(size_t(rows), 0);
    decisions_.assign(size_t(rows), 0);
  }

  // Which rows insert after token column `after` (the prompt's end when `prompt`), given
  // the reasoner's last hidden state at that token (N, C, host).
  std::vector<uint8_t> decide(int64_t after, bool prompt, const std::vector<float>& hidden,
                              const std::vector<int64_t>& last_tokens) {
    std::vector<uint8_t> insert(size_t(n_), 0);
    const auto& c = lm_.config();
    const int64_t C = lm_.reasoner().config.hidden_size;
    std::vector<int64_t> asked;  // rows whose trigger decides here (mode trigger)
    for (int64_t r = 0; r < n_; ++r) {
      if (out_.ended[size_t(r)]) continue;
      const bool point = prompt ? c.max_prompt_aug > 0
                                : lm_.is_delimiter(last_tokens[size_t(r)]) &&
                                      inference_count_[size_t(r)] < c.max_inference_aug;
      if (!point) continue;
      switch (o_.mode) {
        case InsertMode::none: break;
        case InsertMode::prompt: insert[size_t(r)] = prompt; break;
        case InsertMode::delimiters: insert[size_t(r)] = 1; break;
        case InsertMode::trigger:
          // The trigger decides at delimiters; the prompt's end always gets latents.
          if (prompt) {
            insert[size_t(r)] = 1;
          } else {
            asked.push_back(r);
          }
          break;
      }
    }
    if (!asked.empty()) {  // one pass of the trigger over the rows it decides for
      const int64_t R = int64_t(asked.size());
      std::vector<float> features(size_t(R * C));
      for (int64_t i = 0; i < R; ++i) {
        std::copy_n(hidden.begin() + asked[size_t(i)] * C, C, features.begin() + i * C);
      }
      const std::vector<float> z =
          trigger_->logits(from_vector(features, {R, C})).to_vector<float>();
      for (int64_t i = 0; i < R; ++i) {
        const int64_t r = asked[size_t(i)];
        TriggerDecision d;
        d.row = r;
        d.after = after;
        d.feature.assign(features.begin() + i * C, features.begin() + (i + 1) * C);
        d.p_insert = float(1 / (1 + std::exp(-double(z[size_t(i)]))));
        const int64_t k = decisions_[size_t(r)]++;  // the row's decisions so far
        d.insert =
            o_.sample_decisions ? decision_uniform(o_.seed, r, k) < d.p_insert : d.p_insert >= 0.5f;
        insert[size_t(r)] = d.insert;
        out_.decisions.push_back(std::move(d));
      }
    }
    for (int64_t r = 0; r < n_; ++r) {
      if (insert[size_t(r)]) {
        out_.inserted[size_t(r)].push_back({after, prompt});
        if (!prompt) ++inference_count_[size_t(r)];
      }
    }
    return insert;
  }

  // The next token of every row from its logits (N, V, host); finished rows get eos.
  std::vector<int64_t> next_tokens(const std::vector<float>& logits, int64_t V) {
    const int64_t limit = o_.vocab_limit > 0 ? std::min(o_.vocab_limit, V) : V;
    Tensor rows = from_vector(logits, {n_, V});
    if (limit < V) rows = contiguous(narrow(rows, 1, 0, limit));
    const std::vector<nn::Sampled> drawn = nn::sample_tokens(rows, o_.sampling, gen_);
    std::vector<int64_t> next(static_cast<size_t>(n_));
    for (int64_t r = 0; r < n_; ++r) {
      if (out_.ended[size_t(r)]) {
        next[size_t(r)] = o_.eos_id;
        continue;
      }
      next[size_t(r)] = drawn[size_t(r)].token;
      out_.tokens[size_t(r)].push_back(int32_t(next[size_t(r)]));
      out_.logprobs[size_t(r)].push_back(float(drawn[size_t(r)].logprob));
      if (next[size_t(r)] == o_.eos_id) out_.ended[size_t(r)] = 1;
    }
    return next;
  }

  bool all_ended() const {
    return std::all_of(out_.ended.begin(), out_.ended.end(), [](uint8_t e) { return e != 0; });
  }
  MemGenGenerated& result() { return out_; }

 private:
  const MemGenLM& lm_;
  const MemGenTrigger* trigger_;
  const MemGenGenerateOptions& o_;
  Generator gen_;
  int64_t n_;
  MemGenGenerated out_;
  std::vector<int64_t> inference_count_;
  std::vector<int64_t> decisions_;  // per row: the trigger's decisions so far
};

// ---- with the KV cache

MemGenGenerated generate_cached(const MemGenLM& lm, const MemGenTrigger* trigger,
                                const std::vector<std::vector<int32_t>>& prompts,
                                const MemGenGenerateOptions& o) {
  const nn::LlamaForCausalLM& reasoner = lm.reasoner();
  const int64_t N = int64_t(prompts.size()), P = int64_t(prompts[0].size());
  const int64_t V = reasoner.config.vocab_size;
  const Device device = reasoner.model->embed_tokens->weight.device();
  Decoder dec(lm, trigger, o, N);
  nn::KVCache cache = reasoner.make_cache();
  std::vector<std::vector<int64_t>> ids(static_cast<size_t>(N));  // every row's tokens so far
  std::vector<float> bias;  // (N, columns) row-major, rebuilt per feed
  int64_t columns = 0;
  std::vector<std::vector<float>> row_bias(static_cast<size_t>(N));
  std::vector<float> logits, hidden;  // (N, V), (N, C) at each row's last column

  // Feeds (N, K, C) embeddings (or token ids) at `position`, each row's new columns with its
  // biases; returns the outputs' last column.
  auto feed = [&](const nn::LMInput& input_base, int64_t K, const std::vector<int64_t>& positions,
                  const std::vector<std::vector<float>>& new_bias) {
    for (int64_t r = 0; r < N; ++r) {
      auto& b = row_bias[size_t(r)];
      b.insert(b.end(), new_bias[size_t(r)].begin(), new_bias[size_t(r)].end());
    }
    columns += K;
    bias.assign(size_t(N * columns), 0);
    for (int64_t r = 0; r < N; ++r) {
      std::copy(row_bias[size_t(r)].begin(), row_bias[size_t(r)].end(), bias.begin() + r * columns);
    }
    nn::LMInput in = input_base;
    in.cache = &cache;
    in.position_ids = from_vector(positions, {N, K}, {DType::i64, device});
    in.attention_bias = from_vector(bias, {N, 1, 1, columns}, {DType::f32, device});
    const nn::LMOutput out = reasoner.forward(in);
    return std::make_pair(last_column(out.logits), last_column(out.last_hidden));
  };
  auto ids_tensor = [&] {
    std::vector<int64_t> flat;
    for (const auto& row : ids) flat.insert(flat.end(), row.begin(), row.end());
    return from_vector(flat, {N, int64_t(ids[0].size())}, {DType::i64, device});
  };
  // Inserts after token column `after` in the rows that `insert` marks.
  auto insert_latents = [&](int64_t after, bool prompt, const std::vector<uint8_t>& insert) {
    if (std::none_of(insert.begin(), insert.end(), [](uint8_t i) { return i != 0; })) return;
    const InsertionPoint point{after, prompt};
    const int64_t K = lm.latents_at(point);
    const InsertionPlan plan(size_t(N), {point});
    std::vector<float> keep(static_cast<size_t>(N));
    for (int64_t r = 0; r < N; ++r) keep[size_t(r)] = insert[size_t(r)] ? 1.0f : 0.0f;
    const Tensor latents = lm.make_latents(ids_tensor(), plan) *
                           from_vector(keep, {N, 1, 1}, {DType::f32, device});  // (N, K, C)
    const std::vector<float> presence = lm.presence_bias(latents);
    std::vector<std::vector<float>> new_bias(static_cast<size_t>(N));
    for (int64_t r = 0; r < N; ++r) {
      for (int64_t k = 0; k < K; ++k) {
        new_bias[size_t(r)].push_back(insert[size_t(r)] ? presence[size_t(r * K + k)] : kAbsent);
      }
    }
    nn::LMInput in;
    in.inputs_embeds = latents;
    const auto [l, h] = feed(in, K, std::vector<int64_t>(size_t(N * K), after), new_bias);
    for (int64_t r = 0; r < N; ++r) {
      if (!insert[size_t(r)]) continue;
      std::copy(l.begin() + r * V, l.begin() + (r + 1) * V, logits.begin() + r * V);
    }
  };

  // The prompt.
  {
    std::vector<int64_t> flat, positions;
    for (int64_t r = 0; r < N; ++r) {
      ids[size_t(r)].assign(prompts[size_t(r)].begin(), prompts[size_t(r)].end());
      flat.insert(flat.end(), ids[size_t(r)].begin(), ids[size_t(r)].end());
      for (int64_t t = 0; t < P; ++t) positions.push_back(t);
    }
    nn::LMInput in;
    in.input_ids = from_vector(flat, {N, P}, {DType::i64, device});
    std::tie(logits, hidden) =
        feed(in, P, positions,
             std::vector<std::vector<float>>(size_t(N), std::vector<float>(size_t(P), 0)));
    std::vector<int64_t> last(static_cast<size_t>(N));
    for (int64_t r = 0; r < N; ++r) last[size_t(r)] = ids[size_t(r)].back();
    insert_latents(P - 1, true, dec.decide(P - 1, true, hidden, last));
  }
  for (int64_t i = 0; i < o.max_new_tokens; ++i) {
    const std::vector<int64_t> next = dec.next_tokens(logits, V);
    if (dec.all_ended() || i == o.max_new_tokens - 1) break;
    const int64_t t = P + i;  // the new token's column
    for (int64_t r = 0; r < N; ++r) ids[size_t(r)].push_back(next[size_t(r)]);
    nn::LMInput in;
    in.input_ids = from_vector(next, {N, 1}, {DType::i64, device});
    std::tie(logits, hidden) = feed(in, 1, std::vector<int64_t>(size_t(N), t),
                                    std::vector<std::vector<float>>(size_t(N), {0.0f}));
    insert_latents(t, false, dec.decide(t, false, hidden, next));
  }
  return std::move(dec.result());
}

// ---- without the cache: MemGenLM::forward on the whole sequence at every step

MemGenGenerated generate_uncached(const MemGenLM& lm, const MemGenTrigger* trigger,
                                  const std::vector<std::vector<int32_t>>& prompts,
                                  const MemGenGenerateOptions& o) {
  const int64_t N = int64_t(prompts.size()), P = int64_t(prompts[0].size());
  const int64_t V = lm.reasoner().config.vocab_size;
  const Device device = lm.reasoner().model->embed_tokens->weight.device();
  Decoder dec(lm, trigger, o, N);
  std::vector<std::vector<int64_t>> ids(static_cast<size_t>(N));
  for (int64_t r = 0; r < N; ++r)
    ids[size_t(r)].assign(prompts[size_t(r)].begin(), prompts[size_t(r)].end());
  // The logits and hidden state at the last token, with the insertions made so far.
  auto run = [&](std::vector<float>& logits, std::vector<float>& hidden) {
    std::vector<int64_t> flat;
    for (const auto& row : ids) flat.insert(flat.end(), row.begin(), row.end());
    const MemGenOutput out =
        lm.forward(from_vector(flat, {N, int64_t(ids[0].size())}, {DType::i64, device}),
                   dec.result().inserted);
    logits = last_column(out.logits);
    hidden = last_column(out.hidden);
  };
  std::vector<float> logits, hidden;
  auto step = [&](int64_t t, bool prompt, const std::vector<int64_t>& last) {
    run(logits, hidden);
    const std::vector<uint8_t> insert = dec.decide(t, prompt, hidden, last);
    if (std::any_of(insert.begin(), insert.end(), [](uint8_t i) { return i != 0; })) {
      std::vector<float> with, unused;
      run(with, unused);
      for (int64_t r = 0; r < N; ++r) {
        if (insert[size_t(r)])
          std::copy(with.begin() + r * V, with.begin() + (r + 1) * V, logits.begin() + r * V);
      }
    }
  };
  std::vector<int64_t> last(static_cast<size_t>(N));
  for (int64_t r = 0; r < N; ++r) last[size_t(r)] = ids[size_t(r)].back();
  step(P - 1, true, last);
  for (int64_t i = 0; i < o.max_new_tokens; ++i) {
    const std::vector<int64_t> next = dec.next_tokens(logits, V);
    if (dec.all_ended() || i == o.max_new_tokens - 1) break;
    for (int64_t r = 0; r < N; ++r) ids[size_t(r)].push_back(next[size_t(r)]);
    step(P + i, false, next);
  }
  return std::move(dec.result());
}

}  // namespace

InsertMode parse_insert_mode(std::string_view name) {
  if (name == "none") return InsertMode::none;
  if (name == "prompt") return InsertMode::prompt;
  if (name == "delimiters") return InsertMode::delimiters;
  if (name == "trigger") return InsertMode::trigger;
  fail("memgen: unknown insertion mode '{}' (none, prompt, delimiters or trigger)", name);
}

const char* insert_mode_name(InsertMode mode) {
  switch (mode) {
    case InsertMode::none: return "none";
    case InsertMode::prompt: return "prompt";
    case InsertMode::delimiters: return "delimiters";
    case InsertMode::trigger: return "trigger";
  }
  return "?";
}

MemGenGenerated memgen_generate(const MemGenLM& lm, const MemGenTrigger* trigger,
                                const std::vector<std::vector<int32_t>>& prompts,
                                const MemGenGenerateOptions& o) {
  MNEMO_CHECK(!prompts.empty() && !prompts[0].empty(), "memgen generate: no prompt given");
  for (const auto& p : prompts) {
    MNEMO_CHECK(p.size() == prompts[0].size(),
                "memgen generate: the prompts of a batch must have one length, got {} and {}",
                prompts[0].size(), p.size());
  }
  MNEMO_CHECK(o.eos_id >= 0, "memgen generate: eos_id must be set");
  MNEMO_CHECK(o.max_new_tokens >= 1, "memgen generate: max_new_tokens must be >= 1, got {}",
              o.max_new_tokens);
  MNEMO_CHECK(o.mode != InsertMode::trigger || trigger != nullptr,
              "memgen generate: mode trigger needs a trigger");
  MNEMO_CHECK(
      o.mode == InsertMode::none || o.mode == InsertMode::prompt || lm.config().source == "weaver",
      "memgen generate: a soft prompt inserts at the prompt's end only (mode prompt)");
  const int64_t positions = lm.reasoner().config.max_position_embeddings;
  MNEMO_CHECK(int64_t(prompts[0].size()) + o.max_new_tokens <= positions,
              "memgen generate: prompt {} + max_new_tokens {} exceed the reasoner's {} positions",
              prompts[0].size(), o.max_new_tokens, positions);
  nn::validate(o.sampling);
  NoGradGuard no_grad;
  return o.use_cache ? generate_cached(lm, trigger, prompts, o)
                     : generate_uncached(lm, trigger, prompts, o);
}

}  // namespace mnemo::memory

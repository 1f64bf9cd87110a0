// MemGen's weaver and insertion (memgen.h).
#include "memory/memgen.h"

#include <algorithm>
#include <cmath>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "core/ops/random.h"
#include "memory/config_keys.h"

namespace mnemo::memory {

using nlohmann::json;

namespace {

constexpr float kAbsent = -1e9f;  // bias of a column nobody may read
constexpr const char* kWhat = "memgen";

nn::LlamaConfig default_weaver() {
  nn::LlamaConfig w;
  w.vocab_size = 1;  // the weaver reads embeddings; its token table is never used
  w.hidden_size = 64;
  w.intermediate_size = 192;
  w.num_hidden_layers = 2;
  w.num_attention_heads = 4;
  w.num_key_value_heads = 4;
  w.max_position_embeddings = 256;
  w.rms_norm_eps = 1e-6;
  return w;
}

// Sum of K over a row's points.
int64_t row_latents(const MemGenLM& lm, const std::vector<InsertionPoint>& points) {
  int64_t n = 0;
  for (const InsertionPoint& p : points) n += lm.latents_at(p);
  return n;
}

}  // namespace

// ---- config

void MemGenConfig::validate() const {
  MNEMO_CHECK(source == "weaver" || source == "soft_prompt",
              "memgen config: 'source' must be weaver or soft_prompt, got '{}'", source);
  MNEMO_CHECK(prompt_latents >= 1 && prompt_latents <= 256,
              "memgen config: 'prompt_latents' must be in [1, 256], got {}", prompt_latents);
  MNEMO_CHECK(inference_latents >= 1 && inference_latents <= 256,
              "memgen config: 'inference_latents' must be in [1, 256], got {}", inference_latents);
  MNEMO_CHECK(max_prompt_aug == 0 || max_prompt_aug == 1,
              "memgen config: 'max_prompt_aug' must be 0 or 1, got {}", max_prompt_aug);
  MNEMO_CHECK(max_inference_aug >= 0, "memgen config: 'max_inference_aug' must be >= 0, got {}",
              max_inference_aug);
  MNEMO_CHECK(latent_rms > 0, "memgen config: 'latent_rms' must be positive, got {}", latent_rms);
  MNEMO_CHECK(trigger_init > 0 && trigger_init < 1,
              "memgen config: 'trigger_init' must be in (0, 1), got {}", trigger_init);
  for (int64_t d : delimiters) {
    MNEMO_CHECK(d >= 0, "memgen config: 'delimiters' holds a negative token id {}", d);
  }
  weaver.validate();
}

json MemGenConfig::to_json() const {
  return {{"source", source},
          {"prompt_latents", prompt_latents},
          {"inference_latents", inference_latents},
          {"delimiters", delimiters},
          {"max_prompt_aug", max_prompt_aug},
          {"max_inference_aug", max_inference_aug},
          {"latent_rms", latent_rms},
          {"trigger_init", trigger_init},
          {"weaver",
           {{"hidden_size", weaver.hidden_size},
            {"intermediate_size", weaver.intermediate_size},
            {"num_hidden_layers", weaver.num_hidden_layers},
            {"num_attention_heads", weaver.num_attention_heads},
            {"num_key_value_heads", weaver.num_key_value_heads},
            {"max_position_embeddings", weaver.max_position_embeddings},
            {"rope_theta", weaver.rope_theta},
            {"rms_norm_eps", weaver.rms_norm_eps},
            {"initializer_range", weaver.initializer_range}}}};
}

MemGenConfig MemGenConfig::from_json(const json& j) {
  MNEMO_CHECK(j.is_object(), "memgen config: must be a JSON object, got {}", j.dump());
  MemGenConfig c;
  c.weaver = default_weaver();
  for (const auto& [key, v] : j.items()) {
    if (key == "source") {
      c.source = string_key(v, kWhat, key);
    } else if (key == "prompt_latents") {
      c.prompt_latents = int_key(v, kWhat, key);
    } else if (key == "inference_latents") {
      c.inference_latents = int_key(v, kWhat, key);
    } else if (key == "delimiters") {
      MNEMO_CHECK(v.is_array(), "memgen config: 'delimiters' must be a list of token ids");
      c.delimiters.clear();
      for (const json& d : v) c.delimiters.push_back(int_key(d, kWhat, key));
    } else if (key == "max_prompt_aug") {
      c.max_prompt_aug = int_key(v, kWhat, key);
    } else if (key == "max_inference_aug") {
      c.max_inference_aug = int_key(v, kWhat, key);
    } else if (key == "latent_rms") {
      c.latent_rms = number_key(v, kWhat, key);
    } else if (key == "trigger_init") {
      c.trigger_init = number_key(v, kWhat, key);
    } else if (key == "weaver") {
      MNEMO_CHECK(v.is_object(), "memgen config: 'weaver' must be an object");
      for (const auto& [wkey, wv] : v.items()) {
        const std::string name = "weaver." + wkey;
        if (wkey == "hidden_size")
          c.weaver.hidden_size = int_key(wv, kWhat, name);
        else if (wkey == "intermediate_size")
          c.weaver.intermediate_size = int_key(wv, kWhat, name);
        else if (wkey == "num_hidden_layers")
          c.weaver.num_hidden_layers = int_key(wv, kWhat, name);
        else if (wkey == "num_attention_heads")
          c.weaver.num_attention_heads = int_key(wv, kWhat, name);
        else if (wkey == "num_key_value_heads")
          c.weaver.num_key_value_heads = int_key(wv, kWhat, name);
        else if (wkey == "max_position_embeddings")
          c.weaver.max_position_embeddings = int_key(wv, kWhat, name);
        else if (wkey == "rope_theta")
          c.weaver.rope_theta = number_key(wv, kWhat, name);
        else if (wkey == "rms_norm_eps")
          c.weaver.rms_norm_eps = number_key(wv, kWhat, name);
        else if (wkey == "initializer_range")
          c.weaver.initializer_range = number_key(wv, kWhat, name);
        else
          fail("memgen config: unknown key '{}'", name);
      }
    } else {
      fail("memgen config: unknown key '{}'", key);
    }
  }
  c.validate();
  return c;
}

// ---- the model

MemGenLM::MemGenLM(std::shared_ptr<nn::LlamaForCausalLM> reasoner, const MemGenConfig& config,
                   Generator* gen)
    : reasoner_(std::move(reasoner)), config_(config) {
  MNEMO_CHECK(reasoner_ != nullptr, "MemGenLM: no reasoner given");
  config_.validate();
  for (Tensor& p : reasoner_->parameters()) p.set_requires_grad(false);
  const Tensor& table = reasoner_->model->embed_tokens->weight;  // (V, Cr)
  {
    NoGradGuard no_grad;
    token_rms_ = std::sqrt(mean(table * table).item());
  }
  const int64_t Cr = reasoner_->config.hidden_size;
  const TensorOptions opts{table.dtype(), table.device()};
  if (config_.source == "soft_prompt") {
    soft_prompt = register_parameter(
        "soft_prompt",
        normal({config_.prompt_latents, Cr}, 0, config_.latent_rms * token_rms_, opts, gen));
    return;
  }
  const int64_t Cw = config_.weaver.hidden_size;
  MNEMO_CHECK(config_.weaver.max_position_embeddings >=
                  reasoner_->config.max_position_embeddings + config_.prompt_latents,
              "memgen config: 'weaver.max_position_embeddings' {} must cover the reasoner's {} "
              "positions plus prompt_latents {}",
              config_.weaver.max_position_embeddings, reasoner_->config.max_position_embeddings,
              config_.prompt_latents);
  weaver = register_module("weaver", std::make_shared<nn::LlamaModel>(config_.weaver, gen));
  reasoner_to_weaver = register_module(
      "reasoner_to_weaver",
      std::make_shared<nn::Linear>(Cr, Cw, true, gen, config_.weaver.initializer_range));
  // The weaver's output is RMS-normed (its final norm), so this std makes the latents'
  // RMS latent_rms * c at the start.
  weaver_to_reasoner = register_module(
      "weaver_to_reasoner",
      std::make_shared<nn::Linear>(Cw, Cr, true, gen,
                                   config_.latent_rms * token_rms_ / std::sqrt(double(Cw))));
  prompt_latents =
      register_parameter("prompt_latents", normal({config_.prompt_latents, Cw}, 0, 1, opts, gen));
  inference_latents = register_parameter("inference_latents",
                                         normal({config_.inference_latents, Cw}, 0, 1, opts, gen));
  latent_norm = register_module("latent_norm", std::make_shared<nn::RMSNorm>(Cw));
  latent_scale = register_parameter("latent_scale", full({}, 1.0, opts));
}

bool MemGenLM::is_delimiter(int64_t token) const {
  return std::find(config_.delimiters.begin(), config_.delimiters.end(), token) !=
         config_.delimiters.end();
}

std::vector<InsertionPoint> MemGenLM::points(const std::vector<int64_t>& row_ids,
                                             int64_t prompt_length, int64_t end, bool at_prompt,
                                             bool at_delimiters) const {
  MNEMO_CHECK(prompt_length >= 1 && prompt_length <= end && end <= int64_t(row_ids.size()),
              "memgen: prompt length {} and end {} do not fit a row of {} tokens", prompt_length,
              end, row_ids.size());
  std::vector<InsertionPoint> out;
  if (at_prompt && config_.max_prompt_aug > 0) out.push_back({prompt_length - 1, true});
  if (!at_delimiters) return out;
  int64_t inserted = 0;
  for (int64_t t = prompt_length; t < end && inserted < config_.max_inference_aug; ++t) {
    if (is_delimiter(row_ids[size_t(t)])) {
      out.push_back({t, false});
      ++inserted;
    }
  }
  return out;
}

std::vector<float> MemGenLM::presence_bias(const Tensor& latents) const {
  NoGradGuard no_grad;
  const Tensor d = detach(latents);
  const std::vector<double> ms = mnemo::to(mean(d * d, {2}), Device::cpu()).to_vector<double>();
  std::vector<float> bias(ms.size());
  for (size_t i = 0; i < ms.size(); ++i) bias[i] = ms[i] == 0 ? kAbsent : 0.0f;
  return bias;
}

Tensor MemGenLM::soft_latents(const InsertionPlan& plan, int64_t B, int64_t L) const {
  const int64_t K = config_.prompt_latents;
  std::vector<int64_t> index(size_t(B * L), K);  // row K: the zero row
  for (int64_t b = 0; b < B; ++b) {
    int64_t j = 0;
    for (const InsertionPoint& p : plan[size_t(b)]) {
      MNEMO_CHECK(p.prompt,
                  "memgen: a soft prompt goes at the prompt's end only, not after "
                  "token column {}",
                  p.after);
      for (int64_t k = 0; k < K; ++k) index[size_t(b * L + j++)] = k;
    }
  }
  const Tensor source =
      concat({soft_prompt, zeros({1, soft_prompt.size(1)}, options_of(soft_prompt))});
  return reshape(
      index_select(source, 0, from_vector(index, {B * L}, {DType::i64, source.device()})),
      {B, L, soft_prompt.size(1)});
}

// The weaver's one pass over every point of every row (the stream and mask of memgen.h).
Tensor MemGenLM::weave(const Tensor& ids, const InsertionPlan& plan, int64_t L) const {
  const int64_t B = ids.size(0), T = ids.size(1), Sw = T + L;
  const int64_t Cw = config_.weaver.hidden_size, Kp = config_.prompt_latents;
  const Device device = prompt_latents.device();
  // Host layout: for each weaver column its source row in [mapped tokens (B*T) | prompt
  // queries (Kp) | inference queries (Ki)], its position, and the mask rows of query blocks.
  std::vector<int64_t> source(size_t(B * Sw)), position(size_t(B * Sw));
  std::vector<float> mask(size_t(B * Sw * Sw), 0.0f);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t) {
      source[size_t(b * Sw + t)] = b * T + t;
      position[size_t(b * Sw + t)] = t;
    }
    int64_t col = T;
    auto block = [&](int64_t first, int64_t K, int64_t after, int64_t query_row) {
      for (int64_t k = 0; k < K; ++k) {
        const int64_t c = first + k;
        source[size_t(b * Sw + c)] = query_row + k;
        position[size_t(b * Sw + c)] = after + 1 + k;
        float* row = &mask[size_t((b * Sw + c) * Sw)];
        for (int64_t j = 0; j < Sw; ++j) {
          const bool readable = j <= after || (j >= first && j < first + K);
          if (!readable) row[j] = kAbsent;
        }
      }
    };
    for (const InsertionPoint& p : plan[size_t(b)]) {
      const int64_t K = latents_at(p);
      block(col, K, p.after, B * T + (p.prompt ? 0 : Kp));
      col += K;
    }
    // Unused slots (a row with fewer latents than L): read token 0 only; never inserted.
    for (; col < Sw; ++col) block(col, 1, 0, B * T);
  }
  const Tensor embeds = reasoner_->model->embed_tokens->forward(ids);  // (B, T, Cr)
  const Tensor mapped = reshape(reasoner_to_weaver->forward(embeds), {B * T, Cw});
  const Tensor qp = latent_scale * latent_norm->forward(prompt_latents);  // (Kp, Cw)
  const Tensor qi = latent_scale * latent_norm->forward(inference_latents);
  const Tensor rows = concat({mapped, qp, qi});
  nn::LMInput in;
  in.inputs_embeds = reshape(
      index_select(rows, 0, from_vector(source, {B * Sw}, {DType::i64, device})), {B, Sw, Cw});
  in.position_ids = from_vector(position, {B, Sw}, {DType::i64, device});
  in.attention_bias = from_vector(mask, {B, 1, Sw, Sw}, {prompt_latents.dtype(), device});
  const Tensor h = weaver->forward(in);  // (B, Sw, Cw)
  return weaver_to_reasoner->forward(narrow(h, 1, T, L));
}

Tensor MemGenLM::make_latents(const Tensor& ids, const InsertionPlan& plan) const {
  MNEMO_CHECK(ids.dim() == 2 && is_integral(ids.dtype()) && int64_t(plan.size()) == ids.size(0),
              "memgen: ids must be integer (B, T) with one plan per row, got {} {} and {} plans",
              ids.dtype(), shape_str(ids.shape()), plan.size());
  const int64_t B = ids.size(0);
  int64_t L = 0;
  for (const auto& row : plan) L = std::max(L, row_latents(*this, row));
  MNEMO_CHECK(L > 0, "memgen: make_latents needs at least one insertion point");
  return config_.source == "soft_prompt" ? soft_latents(plan, B, L) : weave(ids, plan, L);
}

MemGenOutput MemGenLM::forward(const Tensor& ids, const InsertionPlan& plan) const {
  MNEMO_CHECK(ids.dim() == 2 && is_integral(ids.dtype()) && int64_t(plan.size()) == ids.size(0),
              "memgen: ids must be integer (B, T) with one plan per row, got {} {} and {} plans",
              ids.dtype(), shape_str(ids.shape()), plan.size());
  const int64_t B = ids.size(0), T = ids.size(1);
  const int64_t Cr = reasoner_->config.hidden_size, V = reasoner_->config.vocab_size;
  int64_t L = 0;
  for (const auto& row : plan) {
    for (size_t i = 0; i < row.size(); ++i) {
      MNEMO_CHECK(
          row[i].after >= 0 && row[i].after < T && (i == 0 || row[i].after > row[i - 1].after),
          "memgen: insertion points must be ascending token columns in [0, {}), got {}", T,
          row[i].after);
    }
    L = std::max(L, row_latents(*this, row));
  }
  MemGenOutput out;
  if (L == 0) {
    nn::LMInput in;
    in.input_ids = ids;
    const nn::LMOutput o = reasoner_->forward(in);
    out.logits = o.logits;
    out.hidden = detach(o.last_hidden);
    return out;
  }
  out.latents = make_latents(ids, plan);  // (B, L, Cr)
  const std::vector<float> presence = presence_bias(out.latents);
  // The reasoner's stream: each row's tokens with its latents after their points (a zero,
  // absent latent takes no column at all), padded with absent columns to the longest row.
  int64_t S = 0;
  for (int64_t b = 0; b < B; ++b) {
    int64_t present = 0;
    for (int64_t j = 0; j < L; ++j) present += presence[size_t(b * L + j)] == 0;
    S = std::max(S, T + present);
  }
  const int64_t zero_row = B * T + B * L;
  std::vector<int64_t> source(size_t(B * S), zero_row), position(size_t(B * S), T - 1);
  std::vector<float> bias(size_t(B * S), kAbsent);
  std::vector<int64_t> predict_from(size_t(B * T)), token_at(size_t(B * T));
  for (int64_t b = 0; b < B; ++b) {
    const auto& row = plan[size_t(b)];
    size_t next = 0;
    int64_t col = 0, j = 0;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t at = b * S + col++;
      source[size_t(at)] = b * T + t;
      position[size_t(at)] = t;
      bias[size_t(at)] = 0;
      token_at[size_t(b * T + t)] = at;
      if (next < row.size() && row[next].after == t) {
        for (int64_t k = 0; k < latents_at(row[next]); ++k, ++j) {
          if (presence[size_t(b * L + j)] != 0) continue;
          const int64_t c = b * S + col++;
          source[size_t(c)] = B * T + b * L + j;
          position[size_t(c)] = t;  // the position of the token it follows
          bias[size_t(c)] = 0;
        }
        ++next;
      }
      predict_from[size_t(b * T + t)] = b * S + col - 1;
    }
  }
  const Device device = out.latents.device();
  const auto index = [&](const std::vector<int64_t>& v) {
    return from_vector(v, {int64_t(v.size())}, {DType::i64, device});
  };
  const Tensor embeds = reasoner_->model->embed_tokens->forward(ids);  // (B, T, Cr), no grad
  const Tensor rows = concat({reshape(embeds, {B * T, Cr}), reshape(out.latents, {B * L, Cr}),
                              zeros({1, Cr}, options_of(out.latents))});
  nn::LMInput in;
  in.inputs_embeds = reshape(index_select(rows, 0, index(source)), {B, S, Cr});
  in.position_ids = from_vector(position, {B, S}, {DType::i64, device});
  in.attention_bias = from_vector(bias, {B, 1, 1, S}, {out.latents.dtype(), device});
  const nn::LMOutput o = reasoner_->forward(in);
  out.logits =
      reshape(index_select(reshape(o.logits, {B * S, V}), 0, index(predict_from)), {B, T, V});
  out.hidden = detach(
      reshape(index_select(reshape(o.last_hidden, {B * S, Cr}), 0, index(token_at)), {B, T, Cr}));
  return out;
}

Tensor MemGenLM::loss(const MemGenOutput& out, const Tensor& targets) {
  const int64_t N = out.logits.size(0) * out.logits.size(1);
  return cross_entropy(reshape(out.logits, {N, out.logits.size(2)}), reshape(targets, {N}));
}

}  // namespace mnemo::memory

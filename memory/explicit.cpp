// ExplicitConfig and ExplicitLM (explicit.h).
#include "memory/explicit.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "memory/config_keys.h"
#include "memory/explicit_memory.h"

namespace mnemo::memory {

namespace {

using nlohmann::json;

constexpr const char* kWhat = "explicit";  // names the mechanism in config errors

int64_t side_of(int64_t entries) {
  int64_t n = int64_t(std::llround(std::sqrt(double(entries))));
  return n * n == entries ? n : -1;
}

// The Gumbel noise of training forward number `step` (a pure function of the seed and the
// step, so a resumed run draws what the uninterrupted one did).
constexpr uint64_t kNoiseOpsPerForward = 64;

// Padded entry rows (E, L) (-1 after the tokens) as the layer reads them: ids with the padding
// replaced by 0, weights 1 / (tokens in the row) on the tokens and 0 on the padding, and a
// bias of -1e9 on empty rows. A token outside the vocabulary is an error naming its row.
struct EntryRows {
  std::vector<int64_t> ids;
  std::vector<float> weights, free_bias;
};
EntryRows entry_rows(const std::vector<int32_t>& tokens, int64_t L, int64_t vocab) {
  const size_t E = tokens.size() / size_t(L);
  EntryRows r;
  r.ids.resize(tokens.size());
  r.weights.resize(tokens.size());
  r.free_bias.resize(E);
  for (size_t e = 0; e < E; ++e) {
    const int32_t* row = tokens.data() + e * size_t(L);
    int64_t count = 0;
    for (int64_t l = 0; l < L; ++l) {
      MNEMO_CHECK(row[l] < vocab,
                  "ExplicitLM: entry {} holds token {}, outside the vocabulary of {}", e, row[l],
                  vocab);
      count += row[l] >= 0;
    }
    for (int64_t l = 0; l < L; ++l) {
      r.ids[e * size_t(L) + size_t(l)] = row[l] >= 0 ? row[l] : 0;
      r.weights[e * size_t(L) + size_t(l)] = row[l] >= 0 ? float(1.0 / double(count)) : 0.0f;
    }
    r.free_bias[e] = count == 0 ? -1e9f : 0.0f;
  }
  return r;
}

}  // namespace

ExplicitConfig ExplicitConfig::from_json(const json& j) {
  ExplicitConfig c;
  if (j.is_null()) return c;
  MNEMO_CHECK(j.is_object(), "explicit config: the memory section must be an object, got {}",
              j.dump());
  for (const auto& [key, v] : j.items()) {
    if (key == "layers") {
      MNEMO_CHECK(v.is_array() && !v.empty(),
                  "explicit config: 'layers' must be a non-empty list of layer indices, got {}",
                  v.dump());
      c.layers.clear();
      for (const auto& layer : v) c.layers.push_back(int_key(layer, kWhat, "layers"));
    } else if (key == "bank_entries") {
      c.bank_entries = int_key(v, kWhat, key);
    } else if (key == "entry_length") {
      c.entry_length = int_key(v, kWhat, key);
    } else if (key == "key_dim") {
      c.key_dim = int_key(v, kWhat, key);
    } else if (key == "candidates") {
      c.candidates = int_key(v, kWhat, key);
    } else if (key == "keys") {
      c.keys = string_key(v, kWhat, key);
    } else if (key == "gumbel_temperature") {
      c.gumbel_temperature = number_key(v, kWhat, key);
    } else if (key == "router_weight") {
      c.router_weight = number_key(v, kWhat, key);
    } else if (key == "similarity_weight") {
      c.similarity_weight = number_key(v, kWhat, key);
    } else if (key == "diversity_weight") {
      c.diversity_weight = number_key(v, kWhat, key);
    } else if (key == "fusion_hidden") {
      c.fusion_hidden = int_key(v, kWhat, key);
    } else if (key == "alpha_bias") {
      c.alpha_bias = number_key(v, kWhat, key);
    } else if (key == "keep_mlp") {
      c.keep_mlp = bool_key(v, kWhat, key);
    } else if (key == "freeze_backbone") {
      c.freeze_backbone = bool_key(v, kWhat, key);
    } else if (key == "freeze_ratio") {
      c.freeze_ratio = number_key(v, kWhat, key);
    } else if (key == "bank") {
      c.bank = string_key(v, kWhat, key);
    } else if (key == "segment_length") {
      c.segment_length = int_key(v, kWhat, key);
    } else if (key != "mechanism") {
      fail(
          "explicit config: unknown key '{}' (known: layers, bank_entries, entry_length, "
          "key_dim, candidates, keys, gumbel_temperature, router_weight, similarity_weight, "
          "diversity_weight, fusion_hidden, alpha_bias, keep_mlp, freeze_backbone, freeze_ratio, "
          "bank, segment_length)",
          key);
    }
  }
  return c;
}

json ExplicitConfig::to_json() const {
  return json{{"mechanism", "explicit"},
              {"layers", layers},
              {"bank_entries", bank_entries},
              {"entry_length", entry_length},
              {"key_dim", key_dim},
              {"candidates", candidates},
              {"keys", keys},
              {"gumbel_temperature", gumbel_temperature},
              {"router_weight", router_weight},
              {"similarity_weight", similarity_weight},
              {"diversity_weight", diversity_weight},
              {"fusion_hidden", fusion_hidden},
              {"alpha_bias", alpha_bias},
              {"keep_mlp", keep_mlp},
              {"freeze_backbone", freeze_backbone},
              {"freeze_ratio", freeze_ratio},
              {"bank", bank},
              {"segment_length", segment_length}};
}

void ExplicitConfig::validate(const nn::LlamaConfig& model) const {
  const int64_t L = model.num_hidden_layers;
  std::set<int64_t> seen;
  for (int64_t layer : layers) {
    MNEMO_CHECK(layer >= -L && layer < L,
                "explicit config: 'layers' entry {} is out of range for {} layers", layer, L);
    MNEMO_CHECK(seen.insert((layer + L) % L).second,
                "explicit config: 'layers' lists layer {} twice", (layer + L) % L);
  }
  MNEMO_CHECK(bank_entries >= 1 && side_of(bank_entries) > 0,
              "explicit config: 'bank_entries' must be a perfect square n * n (product keys), "
              "got {}",
              bank_entries);
  MNEMO_CHECK(side_of(bank_entries) <= 32768, "explicit config: 'bank_entries' {} is too large",
              bank_entries);
  MNEMO_CHECK(entry_length >= 1, "explicit config: 'entry_length' must be >= 1, got {}",
              entry_length);
  MNEMO_CHECK(key_dim >= 2 && key_dim % 2 == 0,
              "explicit config: 'key_dim' must be even and >= 2, got {}", key_dim);
  MNEMO_CHECK(candidates >= 1 && candidates <= bank_entries,
              "explicit config: 'candidates' must be in [1, bank_entries = {}], got {}",
              bank_entries, candidates);
  MNEMO_CHECK(keys == "learned" || keys == "content",
              "explicit config: 'keys' must be \"learned\" or \"content\", got \"{}\"", keys);
  MNEMO_CHECK(gumbel_temperature > 0, "explicit config: 'gumbel_temperature' must be > 0, got {}",
              gumbel_temperature);
  MNEMO_CHECK(router_weight >= 0 && similarity_weight >= 0 && diversity_weight >= 0,
              "explicit config: 'router_weight', 'similarity_weight' and 'diversity_weight' must "
              "not be negative");
  MNEMO_CHECK(fusion_hidden >= 0, "explicit config: 'fusion_hidden' must be >= 0, got {}",
              fusion_hidden);
  MNEMO_CHECK(std::isfinite(alpha_bias), "explicit config: 'alpha_bias' must be finite");
  MNEMO_CHECK(freeze_ratio >= 0 && freeze_ratio <= 1,
              "explicit config: 'freeze_ratio' must be in [0, 1], got {}", freeze_ratio);
  MNEMO_CHECK(segment_length >= 1 && segment_length <= model.max_position_embeddings,
              "explicit config: 'segment_length' {} must be in [1, max_position_embeddings = {}]",
              segment_length, model.max_position_embeddings);
}

ExplicitLM::ExplicitLM(const nn::LlamaConfig& m, const ExplicitConfig& cfg, Generator* gen)
    : DecoderLM(m, gen), config(cfg) {
  cfg.validate(m);
  const int64_t L = m.num_hidden_layers;
  for (int64_t& layer : config.layers) layer = (layer + L) % L;
  std::sort(config.layers.begin(), config.layers.end());
  const double std = m.initializer_range;
  for (int64_t i = 0; i < L; ++i) {
    if (std::find(config.layers.begin(), config.layers.end(), i) != config.layers.end()) {
      memory_blocks.push_back(layer_list->append(std::make_shared<ExplicitMemoryBlock>(
          m.hidden_size, m.num_attention_heads, m.num_key_value_heads, m.intermediate_size,
          m.rms_norm_eps, config, gen, std)));
      blocks.push_back(nullptr);
    } else {
      blocks.push_back(append_llama_block(gen));
      memory_blocks.push_back(nullptr);
    }
  }
  finish_decoder(gen);

  // The bank: persistent buffers (a checkpoint holds it) and the device mirror the layers read.
  const int64_t n = side_of(config.bank_entries), N = config.bank_entries, Le = config.entry_length;
  bank_ = MemoryBank(n, Le, config.freeze_ratio);
  auto bank_module = register_module("bank", std::make_shared<nn::Module>());
  bank_tokens_ = bank_module->register_buffer("tokens", full({N, Le}, -1, {DType::i32}));
  bank_written_ = bank_module->register_buffer("written", zeros({N}, {DType::i64}));
  bank_last_used_ = bank_module->register_buffer("last_used", zeros({N}, {DType::i64}));
  bank_clock_ = bank_module->register_buffer("clock", zeros({1}, {DType::i64}));
  // [seed, training forwards so far]: the Gumbel noise's stream (explicit.h).
  noise_state_ = register_buffer(
      "noise_state", from_vector(std::vector<int64_t>{int64_t(gen ? gen->seed() : 0), 0}, {2}));
  entry_ids_ = register_buffer("entry_ids", zeros({N, Le}, {DType::i64}), /*persistent=*/false);
  entry_weights_ = register_buffer("entry_weights", zeros({N, Le}), /*persistent=*/false);
  free_bias_ = register_buffer("free_bias", zeros({N}), /*persistent=*/false);
  bank_changed();

  if (config.freeze_backbone) {
    // Train only the memory layers' router, fusion and gate, and the norms.
    for (auto [name, p] : named_parameters()) {
      const bool trainable =
          name.find(".memory.") != std::string::npos || name.find("norm") != std::string::npos;
      if (!trainable) p.set_requires_grad(false);
    }
  }
}

MemoryState ExplicitLM::initial_state(int64_t batch) const {
  MNEMO_CHECK(batch >= 1, "ExplicitLM: batch must be positive, got {}", batch);
  return {};
}

void ExplicitLM::set_bank(MemoryBank bank) {
  MNEMO_CHECK(bank.entries() == config.bank_entries && bank.length() == config.entry_length,
              "ExplicitLM: a bank of {} entries x {} tokens does not fit 'bank_entries' {} and "
              "'entry_length' {}",
              bank.entries(), bank.length(), config.bank_entries, config.entry_length);
  for (int32_t tok : bank.tokens()) {
    MNEMO_CHECK(tok < model_config.vocab_size,
                "ExplicitLM: the bank holds token {}, outside the vocabulary of {}", tok,
                model_config.vocab_size);
  }
  bank_ = std::move(bank);
  bank_changed();
}

void ExplicitLM::bank_changed() {
  const int64_t N = bank_.entries(), Le = bank_.length();
  const std::vector<int32_t>& tokens = bank_.tokens();
  const EntryRows rows = entry_rows(tokens, Le, model_config.vocab_size);
  NoGradGuard no_grad;
  copy_(bank_tokens_, from_vector(tokens, {N, Le}));
  copy_(bank_written_, from_vector(bank_.written(), {N}));
  copy_(bank_last_used_, from_vector(bank_.last_used(), {N}));
  copy_(bank_clock_, from_vector(std::vector<int64_t>{bank_.clock()}, {1}));
  copy_(entry_ids_, from_vector(rows.ids, {N, Le}));
  copy_(entry_weights_, mnemo::to(from_vector(rows.weights, {N, Le}), entry_weights_.dtype()));
  copy_(free_bias_, mnemo::to(from_vector(rows.free_bias, {N}), free_bias_.dtype()));
}

void ExplicitLM::bank_from_buffers() {
  const Tensor tokens = contiguous(mnemo::to(bank_tokens_, Device::cpu()));
  const Tensor written = contiguous(mnemo::to(bank_written_, Device::cpu()));
  const Tensor used = contiguous(mnemo::to(bank_last_used_, Device::cpu()));
  const Tensor clock = contiguous(mnemo::to(bank_clock_, Device::cpu()));
  const int32_t* t = tokens.data<int32_t>();
  const int64_t* w = written.data<int64_t>();
  const int64_t* u = used.data<int64_t>();
  const size_t N = size_t(config.bank_entries);
  MemoryBank bank = MemoryBank::from_rows(
      side_of(config.bank_entries), config.entry_length, config.freeze_ratio,
      std::vector<int32_t>(t, t + N * size_t(config.entry_length)), std::vector<int64_t>(w, w + N),
      std::vector<int64_t>(u, u + N), clock.data<int64_t>()[0], "ExplicitLM state 'bank.*'");
  set_bank(std::move(bank));
}

BankView ExplicitLM::bank_view() const {
  BankView v;
  v.embedding = embed_tokens->weight;
  v.ids = entry_ids_;
  v.weights = entry_weights_;
  v.free_bias = free_bias_;
  v.side = bank_.side();
  return v;
}

Tensor ExplicitLM::represent(const std::vector<std::vector<int32_t>>& entries) const {
  NoGradGuard no_grad;
  const int64_t P = int64_t(entries.size());
  if (P == 0) return zeros({0, model_config.hidden_size});
  // The entries as padded rows, read by the layer's own representation.
  int64_t L = 1;
  for (const auto& e : entries) L = std::max<int64_t>(L, int64_t(e.size()));
  std::vector<int32_t> tokens(size_t(P * L), -1);
  for (int64_t k = 0; k < P; ++k) {
    for (size_t l = 0; l < entries[size_t(k)].size(); ++l) {
      MNEMO_CHECK(entries[size_t(k)][l] >= 0, "ExplicitLM::represent: token {} is negative",
                  entries[size_t(k)][l]);
      tokens[size_t(k * L) + l] = entries[size_t(k)][l];
    }
  }
  const EntryRows rows = entry_rows(tokens, L, model_config.vocab_size);
  BankView view = bank_view();
  const Device device = entry_ids_.device();
  view.ids = mnemo::to(from_vector(rows.ids, {P, L}), device);
  view.weights =
      mnemo::to(mnemo::to(from_vector(rows.weights, {P, L}), entry_weights_.dtype()), device);
  const Tensor all = mnemo::to(arange(P), device);
  return mnemo::to(mnemo::to(ExplicitMemory::represent(view, all), DType::f32), Device::cpu());
}

Tensor ExplicitLM::represent_entries(const std::vector<int64_t>& entries) const {
  NoGradGuard no_grad;
  for (int64_t e : entries) {
    MNEMO_CHECK(e >= 0 && e < config.bank_entries,
                "ExplicitLM::represent_entries: entry {} is out of range [0, {})", e,
                config.bank_entries);
  }
  const Tensor index =
      mnemo::to(from_vector(entries, {int64_t(entries.size())}), entry_ids_.device());
  return mnemo::to(mnemo::to(ExplicitMemory::represent(bank_view(), index), DType::f32),
                   Device::cpu());
}

void ExplicitLM::set_router_targets(std::vector<Tensor> targets) {
  router_targets_ = std::move(targets);
}

SegmentOutput ExplicitLM::forward_segment(const Tensor& ids, const MemoryState& state) {
  return forward_traced(ids, state, nullptr);
}

SegmentOutput ExplicitLM::forward_traced(const Tensor& ids, const MemoryState& state,
                                         std::vector<ExplicitTrace>* traces) {
  MNEMO_CHECK(state.empty(),
              "ExplicitLM: the bank is shared, so the state is empty; got {} tensors",
              state.tensors.size());
  MNEMO_CHECK(ids.defined() && ids.dim() == 2 && is_integral(ids.dtype()),
              "ExplicitLM: ids must be integer (B, T), got {}",
              ids.defined() ? shape_str(ids.shape()) : std::string("undefined"));
  const int64_t B = ids.size(0), T = ids.size(1);
  MNEMO_CHECK(T >= 1 && T <= config.segment_length,
              "ExplicitLM: segment of {} tokens, want 1 .. segment_length {}", T,
              config.segment_length);
  // Training draws Gumbel noise from (seed, forward count); evaluation takes the argmax.
  Generator noise;
  Generator* noise_ptr = nullptr;
  if (is_training()) {
    const Tensor ns = contiguous(mnemo::to(noise_state_, Device::cpu()));
    const int64_t seed = ns.data<int64_t>()[0], step = ns.data<int64_t>()[1];
    noise.set_state(uint64_t(seed), uint64_t(step) * kNoiseOpsPerForward);
    noise_ptr = &noise;
    NoGradGuard no_grad;
    copy_(noise_state_, from_vector(std::vector<int64_t>{seed, step + 1}, {2}));
  }
  const BankView bank = bank_view();
  const nn::RopeTables rope = rotary_emb->tables({}, 0, T);
  std::vector<ExplicitTrace> local(memory_blocks.size());
  Tensor x = embed_tokens->forward(ids);  // (B, T, C)
  retrieval_.clear();
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (!memory_blocks[i]) {
      x = blocks[i]->forward(x, rope);
      continue;
    }
    ExplicitTrace& trace = local[i];
    x = memory_blocks[i]->forward(x, rope, bank, noise_ptr, &trace);
    Retrieval r;
    r.selected = view(mnemo::to(detach(trace.selected), Device::cpu()), {B, T});
    r.candidates =
        view(mnemo::to(detach(trace.candidates), Device::cpu()), {B, T, config.candidates});
    r.alpha = view(mnemo::to(mnemo::to(detach(trace.alpha), DType::f32), Device::cpu()), {B, T});
    retrieval_.push_back(std::move(r));
    if (traces) traces->push_back(std::move(trace));
  }
  SegmentOutput out;
  out.logits = output_logits(x);
  return out;
}

Tensor ExplicitLM::router_terms(const std::vector<ExplicitTrace>& traces, const Tensor& target,
                                RouterLosses& sums) const {
  Tensor total;
  auto accumulate = [&](const Tensor& t) { total = total.defined() ? total + t : t; };
  for (const ExplicitTrace& trace : traces) {
    const int64_t M = trace.selected.size(0);
    if (config.similarity_weight > 0) {
      const Tensor term = mean(trace.similarity) * -1.0;
      sums.similarity += term.item();
      accumulate(term * config.similarity_weight);
    }
    if (config.diversity_weight > 0 && trace.diversity.defined()) {
      const Tensor term = mean(trace.diversity);
      sums.diversity += term.item();
      accumulate(term * config.diversity_weight);
    }
    if (config.router_weight > 0 && target.defined()) {
      MNEMO_CHECK(target.numel() == M,
                  "ExplicitLM: router targets hold {} positions, the segment has {}",
                  target.numel(), M);
      const Tensor e = reshape(mnemo::to(target, DType::i64), {M});
      const int64_t given = int64_t(sum(ge(e, 0.0)).item());
      if (given == 0) continue;
      // -1 (no target) -> -100, cross_entropy's ignore index.
      const Tensor ignore = full({M}, -100, {DType::i64, e.device()});
      Tensor term;
      if (config.keys == "content") {
        term = cross_entropy(trace.entry_scores, where(ge(e, 0.0), e, ignore), -100, 0,
                             Reduction::sum);
      } else {
        const int64_t n = bank_.side();
        // Entry e = i * n + j: row i, column j (integer arithmetic on the host).
        const Tensor host = contiguous(mnemo::to(e, Device::cpu()));
        std::vector<int64_t> row(static_cast<size_t>(M)), col(static_cast<size_t>(M));
        for (int64_t p = 0; p < M; ++p) {
          const int64_t v = host.data<int64_t>()[p];
          MNEMO_CHECK(v < config.bank_entries,
                      "ExplicitLM: router target {} is outside the bank of {} entries", v,
                      config.bank_entries);
          row[size_t(p)] = v >= 0 ? v / n : -100;
          col[size_t(p)] = v >= 0 ? v % n : -100;
        }
        const Tensor r = mnemo::to(from_vector(row, {M}), e.device());
        const Tensor c = mnemo::to(from_vector(col, {M}), e.device());
        term = cross_entropy(trace.row_scores, r, -100, 0, Reduction::sum) +
               cross_entropy(trace.col_scores, c, -100, 0, Reduction::sum);
      }
      term = term * (1.0 / double(given));
      sums.router += term.item();
      accumulate(term * config.router_weight);
    }
  }
  return total;
}

double ExplicitLM::forward_backward(const std::vector<Tensor>& ids,
                                    const std::vector<Tensor>& targets, const MemoryState& initial,
                                    MemoryState* final_state, double grad_scale) {
  const int64_t count = scored_targets(ids, targets);
  std::vector<Tensor> router_targets = std::move(router_targets_);
  router_targets_.clear();
  MNEMO_CHECK(router_targets.empty() || router_targets.size() == ids.size(),
              "ExplicitLM: {} router target segments for {} segments", router_targets.size(),
              ids.size());
  Tensor lm_total, aux_total;
  RouterLosses sums;
  for (size_t s = 0; s < ids.size(); ++s) {
    std::vector<ExplicitTrace> traces;
    SegmentOutput out = forward_traced(ids[s], initial, &traces);
    SegmentLoss loss = segment_loss(out.logits, targets[s]);
    lm_total = lm_total.defined() ? lm_total + loss.sum : loss.sum;
    const Tensor aux =
        router_terms(traces, router_targets.empty() ? Tensor() : router_targets[s], sums);
    if (aux.defined()) aux_total = aux_total.defined() ? aux_total + aux : aux;
  }
  const double S = double(ids.size());
  last_router_loss = sums.router / S;
  last_similarity_loss = sums.similarity / S;
  last_diversity_loss = sums.diversity / S;
  const Tensor lm_mean = lm_total * (1.0 / double(count));
  const Tensor objective = aux_total.defined() ? lm_mean + aux_total * (1.0 / S) : lm_mean;
  backward(objective, full({}, grad_scale, options_of(objective)));
  if (final_state != nullptr) *final_state = {};
  return lm_mean.item();
}

}  // namespace mnemo::memory

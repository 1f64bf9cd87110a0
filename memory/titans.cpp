// TitansConfig, TitansBlock and TitansLM (titans.h).
#include "memory/titans.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "autograd/ops.h"
#include "core/error.h"
#include "memory/config_keys.h"

namespace mnemo::memory {

namespace {

using nlohmann::json;

constexpr const char* kWhat = "titans";  // names the mechanism in config errors

// The gate hold's loss rule (titans.h): the moving average of the training loss is an EMA
// over about this many steps, kept in millionths of a nat in an integer buffer.
constexpr double kLossAverageSteps = 25;
constexpr double kLossUnit = 1e-6;

NeuralMemoryOptions memory_options(const TitansConfig& c) {
  NeuralMemoryOptions o;
  o.heads = c.heads;
  o.chunk_size = c.chunk_size;
  o.update_batch = c.resolved_update_batch();
  o.model = parse_memory_model(c.memory_model, "'memory_model'");
  o.max_lr = c.max_lr;
  o.max_forget = c.max_forget;
  o.exp_step = c.step_size == "exp";
  o.conv_kernel = c.conv_kernel;
  o.read_batch = c.read_from == "batch";
  return o;
}

// (B, M, Hkv Dh) -> (B, Hkv, M, Dh)
Tensor to_heads(const Tensor& x, int64_t Hkv, int64_t Dh) {
  const int64_t B = x.size(0), M = x.size(1);
  return transpose(view(x, {B, M, Hkv, Dh}), 1, 2);
}

// The MAC mask over [persistent; read-outs; segment] (1, H, T, Np + 2T): read-out j is
// visible to query i iff j <= i (-inf otherwise); in the first `heads_with_bias` heads query
// i's own read-out gets `own` added to its score; persistent tokens are visible to all; the
// segment part is left to the causal rule.
Tensor readout_mask(int64_t Np, int64_t T, int64_t H, int64_t heads_with_bias, double own,
                    const Tensor& like) {
  const int64_t Tk = Np + 2 * T;
  std::vector<double> mask(size_t(H * T * Tk), 0.0);
  for (int64_t h = 0; h < H; ++h) {
    double* head = mask.data() + h * T * Tk;
    for (int64_t i = 0; i < T; ++i) {
      if (h < heads_with_bias) head[i * Tk + Np + i] = own;
      for (int64_t j = i + 1; j < T; ++j) {
        head[i * Tk + Np + j] = -std::numeric_limits<double>::infinity();
      }
    }
  }
  return mnemo::to(from_vector(mask, {1, H, T, Tk}, {like.dtype()}), like.device());
}

// The MAG sliding window over [persistent; segment] (1, 1, T, Np + T): query i sees the
// segment's keys j with i - window < j (-inf otherwise, and the causal rule for j > i);
// persistent tokens are visible to all.
Tensor window_mask(int64_t Np, int64_t T, int64_t window, const Tensor& like) {
  const int64_t Tk = Np + T;
  std::vector<double> mask(size_t(T * Tk), 0.0);
  for (int64_t i = 0; i < T; ++i) {
    for (int64_t j = 0; j <= i - window; ++j) {
      mask[size_t(i * Tk + Np + j)] = -std::numeric_limits<double>::infinity();
    }
  }
  return mnemo::to(from_vector(mask, {1, 1, T, Tk}, {like.dtype()}), like.device());
}

}  // namespace

// ---------------------------------------------------------------- TitansConfig

TitansConfig TitansConfig::from_json(const json& j) {
  TitansConfig c;
  if (j.is_null()) return c;
  MNEMO_CHECK(j.is_object(), "titans config: the memory section must be an object, got {}",
              j.dump());
  for (const auto& [key, v] : j.items()) {
    if (key == "layers") {
      MNEMO_CHECK(v.is_array() && !v.empty(),
                  "titans config: 'layers' must be a non-empty list of layer indices, got {}",
                  v.dump());
      c.layers.clear();
      for (const auto& layer : v) c.layers.push_back(int_key(layer, kWhat, "layers"));
    } else if (key == "heads") {
      c.heads = int_key(v, kWhat, key);
    } else if (key == "chunk_size") {
      c.chunk_size = int_key(v, kWhat, key);
    } else if (key == "update_batch") {
      c.update_batch = int_key(v, kWhat, key);
    } else if (key == "memory_model") {
      c.memory_model = string_key(v, kWhat, key);
    } else if (key == "max_lr") {
      c.max_lr = number_key(v, kWhat, key);
    } else if (key == "max_forget") {
      c.max_forget = number_key(v, kWhat, key);
    } else if (key == "step_size") {
      c.step_size = string_key(v, kWhat, key);
    } else if (key == "own_readout_bias") {
      MNEMO_CHECK(v.is_boolean(), "titans config: 'own_readout_bias' must be true or false, got {}",
                  v.dump());
      c.own_readout_bias = v.get<bool>();
    } else if (key == "conv_kernel") {
      c.conv_kernel = int_key(v, kWhat, key);
    } else if (key == "persistent_tokens") {
      c.persistent_tokens = int_key(v, kWhat, key);
    } else if (key == "memory_tokens") {
      c.memory_tokens = int_key(v, kWhat, key);
    } else if (key == "variant") {
      c.variant = string_key(v, kWhat, key);
    } else if (key == "gate_init") {
      c.gate_init = number_key(v, kWhat, key);
    } else if (key == "read_from") {
      c.read_from = string_key(v, kWhat, key);
    } else if (key == "window") {
      c.window = int_key(v, kWhat, key);
    } else if (key == "gate_hold_steps") {
      c.gate_hold_steps = int_key(v, kWhat, key);
    } else if (key == "gate_open_loss") {
      c.gate_open_loss = number_key(v, kWhat, key);
    } else if (key == "segment_length") {
      c.segment_length = int_key(v, kWhat, key);
    } else if (key != "mechanism") {
      fail(
          "titans config: unknown key '{}' (known: layers, heads, chunk_size, update_batch, "
          "memory_model, max_lr, max_forget, step_size, conv_kernel, persistent_tokens, "
          "memory_tokens, own_readout_bias, variant, gate_init, read_from, window, "
          "gate_hold_steps, gate_open_loss, segment_length)",
          key);
    }
  }
  return c;
}

void TitansConfig::validate(const nn::LlamaConfig& model) const {
  const int64_t L = model.num_hidden_layers;
  std::set<int64_t> seen;
  for (int64_t layer : layers) {
    MNEMO_CHECK(layer >= -L && layer < L,
                "titans config: 'layers' entry {} is out of range for {} layers", layer, L);
    MNEMO_CHECK(seen.insert((layer + L) % L).second, "titans config: 'layers' lists layer {} twice",
                (layer + L) % L);
  }
  MNEMO_CHECK(heads >= 1 && model.hidden_size % heads == 0,
              "titans config: 'heads' {} must be positive and divide hidden_size {}", heads,
              model.hidden_size);
  MNEMO_CHECK(chunk_size >= 1, "titans config: 'chunk_size' must be positive, got {}", chunk_size);
  MNEMO_CHECK(update_batch >= 0 && update_batch % chunk_size == 0,
              "titans config: 'update_batch' {} must be 0 (the segment) or a positive multiple "
              "of 'chunk_size' {}",
              update_batch, chunk_size);
  parse_memory_model(memory_model, "'memory_model'");
  MNEMO_CHECK(max_lr >= 0 && std::isfinite(max_lr),
              "titans config: 'max_lr' must be a finite number >= 0, got {}", max_lr);
  MNEMO_CHECK(max_forget >= 0 && max_forget <= 1,
              "titans config: 'max_forget' must lie in [0, 1], got {}", max_forget);
  MNEMO_CHECK(step_size == "token" || step_size == "exp",
              "titans config: 'step_size' must be \"token\" or \"exp\", got \"{}\"", step_size);
  MNEMO_CHECK(conv_kernel >= 1 && conv_kernel <= 16,
              "titans config: 'conv_kernel' must be in 1 .. 16, got {}", conv_kernel);
  MNEMO_CHECK(persistent_tokens >= 0, "titans config: 'persistent_tokens' must be >= 0, got {}",
              persistent_tokens);
  MNEMO_CHECK(memory_tokens >= 0, "titans config: 'memory_tokens' must be >= 0, got {}",
              memory_tokens);
  MNEMO_CHECK(variant == "mac" || variant == "mag",
              "titans config: 'variant' must be \"mac\" or \"mag\", got \"{}\"", variant);
  MNEMO_CHECK(variant == "mac" || memory_tokens == 0,
              "titans config: 'memory_tokens' applies to variant \"mac\" only");
  MNEMO_CHECK(read_from == "chunk" || read_from == "batch",
              "titans config: 'read_from' must be \"chunk\" or \"batch\", got \"{}\"", read_from);
  MNEMO_CHECK(variant == "mag" || read_from == "chunk",
              "titans config: 'read_from' applies to variant \"mag\" only");
  MNEMO_CHECK(window >= 0, "titans config: 'window' must be >= 0 (0 = the whole segment), got {}",
              window);
  MNEMO_CHECK(variant == "mag" || window == 0,
              "titans config: 'window' applies to variant \"mag\" only");
  MNEMO_CHECK(std::isfinite(gate_init),
              "titans config: 'gate_init' must be a finite number, got {}", gate_init);
  MNEMO_CHECK(gate_hold_steps >= 0, "titans config: 'gate_hold_steps' must be >= 0, got {}",
              gate_hold_steps);
  MNEMO_CHECK(variant == "mag" || gate_hold_steps == 0,
              "titans config: 'gate_hold_steps' applies to variant \"mag\" only");
  MNEMO_CHECK(gate_open_loss >= 0 && std::isfinite(gate_open_loss),
              "titans config: 'gate_open_loss' must be a finite number >= 0, got {}",
              gate_open_loss);
  MNEMO_CHECK(gate_open_loss == 0 || gate_hold_steps > 0,
              "titans config: 'gate_open_loss' ends a hold early and needs 'gate_hold_steps' > 0 "
              "(the longest hold)");
  MNEMO_CHECK(segment_length >= 1 && segment_length <= model.max_position_embeddings,
              "titans config: 'segment_length' {} must be in 1 .. max_position_embeddings ({})",
              segment_length, model.max_position_embeddings);
}

int64_t TitansConfig::resolved_update_batch() const {
  if (update_batch > 0) return update_batch;
  return (segment_length + chunk_size - 1) / chunk_size * chunk_size;
}

// ---------------------------------------------------------------- TitansBlock

TitansBlock::TitansBlock(const nn::LlamaConfig& m, const TitansConfig& cfg, Generator* gen)
    : mac(cfg.variant == "mac"), window(cfg.window) {
  const int64_t C = m.hidden_size;
  const double std = m.initializer_range;
  // The Llama block's pieces under its names (nn/transformer.h), in its order.
  self_attn =
      register_module("self_attn", std::make_shared<nn::CausalSelfAttention>(
                                       C, m.num_attention_heads, m.num_key_value_heads, gen, std));
  mlp = register_module("mlp", std::make_shared<nn::SwiGLU>(C, m.intermediate_size, gen, std));
  input_layernorm =
      register_module("input_layernorm", std::make_shared<nn::RMSNorm>(C, m.rms_norm_eps));
  post_attention_layernorm =
      register_module("post_attention_layernorm", std::make_shared<nn::RMSNorm>(C, m.rms_norm_eps));
  memory = register_module(
      "memory", std::make_shared<NeuralMemory>(C, memory_options(cfg), m.rms_norm_eps, gen));
  // Persistent tokens and learned queries at unit scale, like the normed rows they sit beside.
  if (cfg.persistent_tokens > 0) {
    persistent =
        register_parameter("persistent", normal({cfg.persistent_tokens, C}, 0.0, 1.0, {}, gen));
  }
  if (mac && cfg.memory_tokens > 0) {
    memory_queries =
        register_parameter("memory_queries", normal({cfg.memory_tokens, C}, 0.0, 1.0, {}, gen));
  }
  // log T: each query's own read-out weighs about as much as T other keys together, so the
  // memory's read-out is used from the first step (docs/memory-results.md).
  if (mac && cfg.memory_tokens == 0 && cfg.own_readout_bias) {
    own_bias = std::log(double(cfg.segment_length));
  }
  if (!mac) {
    memory_gate =
        register_module("memory_gate", std::make_shared<nn::Linear>(C, C, true, gen, std));
    fill_(memory_gate->bias, cfg.gate_init);
  }
}

nn::LayerKV TitansBlock::project(const Tensor& rows) const {
  const auto& a = *self_attn;
  const int64_t Dh = a.head_dim, Hkv = a.num_kv_heads;
  return {to_heads(a.k_proj->forward(rows), Hkv, Dh), to_heads(a.v_proj->forward(rows), Hkv, Dh)};
}

nn::LayerKV TitansBlock::extras(int64_t B, const Tensor& readout,
                                const nn::RopeTables* rope) const {
  nn::LayerKV r;
  if (readout.defined()) {
    r = project(readout);
    if (rope != nullptr) r.k = nn::apply_rotary(r.k, *rope);  // read-out t at position t
    if (!persistent.defined()) return r;
  }
  const nn::LayerKV p = project(unsqueeze(persistent, 0));  // (1, Hkv, Np, Dh)
  auto batch = [&](const Tensor& t) { return expand(t, {B, t.size(1), t.size(2), t.size(3)}); };
  if (!readout.defined()) return {batch(p.k), batch(p.v)};
  return {concat({batch(p.k), r.k}, 2), concat({batch(p.v), r.v}, 2)};
}

Tensor TitansBlock::forward(const Tensor& x, const nn::RopeTables& rope, const MemoryState& in,
                            const std::string& prefix, MemoryState& out, Tensor* readout) const {
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2);
  const Tensor normed = input_layernorm->forward(x);
  const int64_t Np = persistent.defined() ? persistent.size(0) : 0;
  if (mac) {
    Tensor h;
    if (memory_queries.defined()) {
      // Learned queries read the weights of earlier segments: visible to every query.
      const int64_t Nm = memory_queries.size(0);
      const Tensor readout =
          memory->read(expand(unsqueeze(memory_queries, 0), {B, Nm, C}), in, prefix);
      const nn::LayerKV extra = extras(B, readout, nullptr);
      h = x + self_attn->forward(normed, rope, nullptr, &extra);
    } else {
      // One read-out per token, token t's visible to the queries s >= t.
      const Tensor r = memory->read(x, in, prefix);  // (B, T, C)
      if (readout != nullptr) *readout = r;
      const nn::LayerKV extra = extras(B, r, &rope);
      // The bias on half the heads (rounded up): the others stay free for attention within
      // the segment, which a bias on every head drowns (docs/memory-results.md).
      const int64_t heads = self_attn->num_heads;
      h = x + self_attn->forward(normed, rope, nullptr, &extra,
                                 readout_mask(Np, T, heads, (heads + 1) / 2, own_bias, x));
    }
    const Tensor y = h + mlp->forward(post_attention_layernorm->forward(h));
    memory->forward(y, in, prefix, out, /*retrieve=*/false);  // store, for later segments
    return y;
  }
  // mag
  const Tensor mask = window > 0 && T > window ? window_mask(Np, T, window, x) : Tensor();
  Tensor a;
  if (Np > 0) {
    const nn::LayerKV extra = extras(B, Tensor(), nullptr);
    a = self_attn->forward(normed, rope, nullptr, &extra, mask);
  } else {
    a = self_attn->forward(normed, rope, nullptr, nullptr, mask);
  }
  // The gate hold (titans.h) leaves the read-out out: read only when the caller asks for it.
  const bool retrieve = !gate_held || readout != nullptr;
  const Tensor m = memory->forward(x, in, prefix, out, retrieve);  // (B, T, C) or undefined
  if (readout != nullptr) *readout = m;
  const Tensor h = gate_held ? x + a : x + a + sigmoid(memory_gate->forward(normed)) * m;
  return h + mlp->forward(post_attention_layernorm->forward(h));
}

// ---------------------------------------------------------------- TitansLM

TitansLM::TitansLM(const nn::LlamaConfig& m, const TitansConfig& cfg, Generator* gen)
    : DecoderLM(m, gen), config(cfg) {
  cfg.validate(m);
  const int64_t L = m.num_hidden_layers;
  for (int64_t& layer : config.layers) layer = (layer + L) % L;
  std::sort(config.layers.begin(), config.layers.end());
  for (int64_t i = 0; i < L; ++i) {
    const bool with_memory =
        std::find(config.layers.begin(), config.layers.end(), i) != config.layers.end();
    if (with_memory) {
      memory_blocks.push_back(layer_list->append(std::make_shared<TitansBlock>(m, config, gen)));
      blocks.push_back(nullptr);
    } else {
      blocks.push_back(append_llama_block(gen));
      memory_blocks.push_back(nullptr);
    }
  }
  finish_decoder(gen);
  if (config.gate_open_loss > 0) {
    gate_hold = register_buffer("gate_hold", from_vector(std::vector<int64_t>{0, -1}, {2}));
  }
}

std::string TitansLM::prefix(int64_t layer) {
  return "titans." + std::to_string(layer);
}

void TitansLM::set_training_step(int64_t step) {
  MNEMO_CHECK(step >= 0, "TitansLM: training step must be >= 0, got {}", step);
  const bool held = step < config.gate_hold_steps && !gate_opened_by_loss();
  for (const auto& block : memory_blocks) {
    if (block && !block->mac) block->gate_held = held;
  }
}

namespace {
// gate_hold's two values, read on the host.
std::vector<int64_t> hold_values(const Tensor& gate_hold) {
  return contiguous(mnemo::to(gate_hold, Device::cpu())).to_vector<int64_t>();
}
}  // namespace

bool TitansLM::gate_opened_by_loss() const {
  return gate_hold.defined() && hold_values(gate_hold)[0] == 1;
}

double TitansLM::gate_loss_average() const {
  const int64_t units = gate_hold.defined() ? hold_values(gate_hold)[1] : -1;
  return units < 0 ? std::numeric_limits<double>::quiet_NaN() : double(units) * kLossUnit;
}

// average <- average + (loss - average) / 25 (the first loss as it is), rounded to the buffer's
// millionths at every step, so that a run resumed from the buffer goes on exactly as one that
// never stopped; the gate opens once the average is at gate_open_loss or below.
void TitansLM::observe_training_loss(double loss) {
  MNEMO_CHECK(std::isfinite(loss) && loss >= 0,
              "TitansLM: the training loss must be finite and >= 0, got {}", loss);
  if (!gate_hold.defined()) return;
  const std::vector<int64_t> held = hold_values(gate_hold);  // one read: a sync on a GPU
  if (held[0] == 1) return;
  const double before = double(held[1]) * kLossUnit;  // -1: no loss yet
  const double average = held[1] < 0 ? loss : before + (loss - before) / kLossAverageSteps;
  const int64_t units = std::llround(average / kLossUnit);
  const int64_t opened = double(units) * kLossUnit <= config.gate_open_loss ? 1 : 0;
  copy_(gate_hold, from_vector(std::vector<int64_t>{opened, units}, {2}));
}

MemoryState TitansLM::initial_state(int64_t batch) const {
  MNEMO_CHECK(batch >= 1, "TitansLM: batch must be positive, got {}", batch);
  MemoryState state;
  for (int64_t layer : config.layers) {
    memory_blocks[size_t(layer)]->memory->initial_state(batch, prefix(layer), state);
  }
  return state;
}

SegmentOutput TitansLM::forward_segment(const Tensor& ids, const MemoryState& state) {
  return forward_with_readouts(ids, state, nullptr);
}

SegmentOutput TitansLM::forward_with_readouts(const Tensor& ids, const MemoryState& state,
                                              std::vector<Tensor>* readouts) {
  MNEMO_CHECK(ids.defined() && ids.dim() == 2 && is_integral(ids.dtype()),
              "TitansLM: ids must be integer (B, T), got {}",
              ids.defined() ? shape_str(ids.shape()) : std::string("undefined"));
  const int64_t T = ids.size(1);
  MNEMO_CHECK(T >= 1 && T <= config.segment_length,
              "TitansLM: segment of {} tokens, want 1 .. segment_length {}", T,
              config.segment_length);
  const nn::RopeTables rope = rotary_emb->tables({}, 0, T);
  SegmentOutput out;
  Tensor x = embed_tokens->forward(ids);  // (B, T, C)
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (memory_blocks[i]) {
      Tensor readout;
      x = memory_blocks[i]->forward(x, rope, state, prefix(int64_t(i)), out.state,
                                    readouts != nullptr ? &readout : nullptr);
      if (readouts != nullptr) readouts->push_back(readout);
    } else {
      x = blocks[i]->forward(x, rope);
    }
  }
  out.logits = output_logits(x);
  return out;
}

}  // namespace mnemo::memory

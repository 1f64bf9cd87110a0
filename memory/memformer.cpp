// MemformerConfig and MemformerLM (memformer.h): the config parser, the segment forward and
// memory replay back-propagation.
#include "memory/memformer.h"

#include <cmath>
#include <set>
#include <string>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "memory/config_keys.h"

namespace mnemo::memory {

namespace {

using nlohmann::json;

constexpr const char* kWhat = "memformer";  // names the mechanism in config errors

}  // namespace

MemformerConfig MemformerConfig::from_json(const json& j) {
  MemformerConfig c;
  if (j.is_null()) return c;
  MNEMO_CHECK(j.is_object(), "memformer config: the memory section must be an object, got {}",
              j.dump());
  static const std::set<std::string> known = {
      "mechanism",     "num_slots",        "segment_length", "mrbp",
      "writer_heads",  "writer_ff_size",   "slot_init_std",  "writer_init_std",
      "read_init_std", "writer_positions", "read_positions"};
  for (const auto& [key, value] : j.items()) {
    MNEMO_CHECK(known.count(key) == 1, "memformer config: unknown key '{}'", key);
  }
  read_key(j, "num_slots", kWhat, c.num_slots);
  read_key(j, "segment_length", kWhat, c.segment_length);
  read_key(j, "mrbp", kWhat, c.mrbp);
  read_key(j, "writer_heads", kWhat, c.writer_heads);
  read_key(j, "writer_ff_size", kWhat, c.writer_ff_size);
  read_key(j, "slot_init_std", kWhat, c.slot_init_std);
  read_key(j, "writer_init_std", kWhat, c.writer_init_std);
  read_key(j, "read_init_std", kWhat, c.read_init_std);
  read_key(j, "writer_positions", kWhat, c.writer_positions);
  read_key(j, "read_positions", kWhat, c.read_positions);
  c.validate();
  return c;
}

void MemformerConfig::validate() const {
  MNEMO_CHECK(num_slots > 0, "memformer config: 'num_slots' must be positive, got {}", num_slots);
  MNEMO_CHECK(segment_length > 0, "memformer config: 'segment_length' must be positive, got {}",
              segment_length);
  MNEMO_CHECK(writer_heads >= 0, "memformer config: 'writer_heads' must be >= 0, got {}",
              writer_heads);
  MNEMO_CHECK(writer_ff_size >= 0, "memformer config: 'writer_ff_size' must be >= 0, got {}",
              writer_ff_size);
  MNEMO_CHECK(slot_init_std >= 0, "memformer config: 'slot_init_std' must be >= 0, got {}",
              slot_init_std);
  MNEMO_CHECK(writer_init_std >= 0, "memformer config: 'writer_init_std' must be >= 0, got {}",
              writer_init_std);
  MNEMO_CHECK(read_init_std >= 0, "memformer config: 'read_init_std' must be >= 0, got {}",
              read_init_std);
}

MemformerLM::MemformerLM(const nn::LlamaConfig& m, const MemformerConfig& cfg, Generator* gen)
    : model_config(m), config(cfg) {
  m.validate();
  cfg.validate();
  MNEMO_CHECK(cfg.segment_length <= m.max_position_embeddings,
              "memformer config: 'segment_length' {} exceeds the model's "
              "max_position_embeddings {}",
              cfg.segment_length, m.max_position_embeddings);
  const int64_t C = m.hidden_size;
  const int64_t writer_heads = cfg.writer_heads > 0 ? cfg.writer_heads : m.num_attention_heads;
  MNEMO_CHECK(C % writer_heads == 0,
              "memformer config: 'writer_heads' {} does not divide hidden_size {}", writer_heads,
              C);
  const double std = m.initializer_range;
  const double linear_std = 1.0 / std::sqrt(double(C));
  const double writer_std = cfg.writer_init_std > 0 ? cfg.writer_init_std : linear_std;
  const double read_std = cfg.read_init_std > 0 ? cfg.read_init_std : linear_std;
  initial_slots = register_parameter("initial_slots",
                                     normal({cfg.num_slots, C}, 0.0, cfg.slot_init_std, {}, gen));
  if (cfg.read_positions) {
    read_position =
        register_parameter("read_position", normal({cfg.segment_length, C}, 0.0, 1.0, {}, gen));
  }
  embed_tokens =
      register_module("embed_tokens", std::make_shared<nn::Embedding>(m.vocab_size, C, gen, std));
  layer_list = register_module("layers", std::make_shared<nn::ModuleList>());
  for (int64_t i = 0; i < m.num_hidden_layers; ++i) {
    layers.push_back(layer_list->append(
        std::make_shared<MemformerBlock>(C, m.num_attention_heads, m.num_key_value_heads,
                                         m.intermediate_size, m.rms_norm_eps, gen, std, read_std)));
  }
  memory_norm = register_module("memory_norm", std::make_shared<nn::RMSNorm>(C, m.rms_norm_eps));
  norm = register_module("norm", std::make_shared<nn::RMSNorm>(C, m.rms_norm_eps));
  rotary_emb = register_module(
      "rotary_emb",
      std::make_shared<nn::RotaryEmbedding>(m.head_dim(), m.max_position_embeddings, m.rope_theta));
  const int64_t ff = cfg.writer_ff_size > 0 ? cfg.writer_ff_size : m.intermediate_size;
  writer = register_module(
      "writer", std::make_shared<MemoryWriter>(C, writer_heads, ff, m.rms_norm_eps, gen, writer_std,
                                               cfg.writer_positions ? cfg.segment_length : 0));
  if (!m.tie_word_embeddings) {
    lm_head = register_module(
        "lm_head", std::make_shared<nn::Linear>(C, m.vocab_size, false, gen, m.initializer_range));
  }
}

const Tensor& MemformerLM::output_weight() const {
  return lm_head ? lm_head->weight : embed_tokens->weight;
}

MemoryState MemformerLM::initial_state(int64_t batch) const {
  MNEMO_CHECK(batch > 0, "MemformerLM::initial_state: batch must be positive, got {}", batch);
  MemoryState state;
  state.set("slots", expand(unsqueeze(initial_slots, 0),
                            {batch, config.num_slots, model_config.hidden_size}));
  return state;
}

Tensor MemformerLM::hidden(const Tensor& ids, const Tensor& slots) const {
  MNEMO_CHECK(ids.defined() && ids.dim() == 2 && is_integral(ids.dtype()),
              "MemformerLM: ids must be integer (B, T), got {}",
              ids.defined() ? shape_str(ids.shape()) : std::string("undefined"));
  const int64_t B = ids.size(0), T = ids.size(1), C = model_config.hidden_size;
  MNEMO_CHECK(T >= 1 && T <= config.segment_length,
              "MemformerLM: segment of {} tokens, want 1 .. segment_length {}", T,
              config.segment_length);
  MNEMO_CHECK(slots.defined() && slots.dim() == 3 && slots.size(0) == B &&
                  slots.size(1) == config.num_slots && slots.size(2) == C,
              "MemformerLM: state 'slots' must be (B={}, K={}, C={}), got {}", B, config.num_slots,
              C, slots.defined() ? shape_str(slots.shape()) : "undefined");
  const nn::RopeTables rope = rotary_emb->tables({}, 0, T);
  const Tensor memory = memory_norm->forward(slots);  // (B, K, C)
  Tensor x = embed_tokens->forward(ids);              // (B, T, C)
  const Tensor query_position =
      read_position.defined() ? narrow(read_position, 0, 0, T) : Tensor();  // (T, C)
  for (const auto& layer : layers) x = layer->forward(x, rope, memory, query_position);
  return norm->forward(x);
}

SegmentOutput MemformerLM::forward_segment(const Tensor& ids, const MemoryState& state) {
  const Tensor& slots = state.at("slots");
  const Tensor h = hidden(ids, slots);  // (B, T, C)
  const int64_t B = h.size(0), T = h.size(1), C = h.size(2);
  SegmentOutput out;
  out.logits =
      view(linear(reshape(h, {B * T, C}), output_weight()), {B, T, model_config.vocab_size});
  out.state.set("slots", writer->forward(slots, h));
  return out;
}

double MemformerLM::forward_backward(const std::vector<Tensor>& ids,
                                     const std::vector<Tensor>& targets, const MemoryState& initial,
                                     MemoryState* final_state, double grad_scale) {
  if (!config.mrbp) {
    return SegmentLM::forward_backward(ids, targets, initial, final_state, grad_scale);
  }
  return forward_backward_mrbp(ids, targets, initial, final_state, grad_scale);
}

double MemformerLM::forward_backward_mrbp(const std::vector<Tensor>& ids,
                                          const std::vector<Tensor>& targets,
                                          const MemoryState& initial, MemoryState* final_state,
                                          double grad_scale) {
  const int64_t count = scored_targets(ids, targets);
  const size_t S = ids.size();
  const Tensor& slots_0 = initial.at("slots");

  // 1. Forward without a graph, keeping each segment's input slots m_s (B, K, C).
  std::vector<Tensor> inputs(S);
  MemoryState state;
  {
    NoGradGuard no_grad;
    Tensor m = slots_0;
    for (size_t s = 0; s < S; ++s) {
      inputs[s] = m;
      state.set("slots", m);
      m = forward_segment(ids[s], state).state.at("slots");
    }
    state.set("slots", m);
  }

  // 2. Backwards over the segments: recompute s from m_s, back-propagate its loss share plus
  //    the slots' gradient dL/dm_{s+1} from segment s+1, collect dL/dm_s for segment s-1.
  double total = 0;
  Tensor grad_next;  // dL/dm_{s+1} (B, K, C); undefined for the last segment
  for (size_t s = S; s-- > 0;) {
    // Segment 0 reads the caller's slots with their graph (to initial_slots); later segments
    // a fresh leaf whose .grad is the gradient to hand back.
    Tensor m_in = s == 0 ? slots_0 : detach(inputs[s]).set_requires_grad();
    MemoryState in;
    in.set("slots", m_in);
    const SegmentOutput out = forward_segment(ids[s], in);
    const SegmentLoss loss = segment_loss(out.logits, targets[s]);
    total += loss.sum.item();
    Tensor objective = mul(loss.sum, grad_scale / double(count));
    if (grad_next.defined()) {
      objective = add(objective, sum(mul(out.state.at("slots"), grad_next)));
    }
    if (objective.requires_grad()) backward(objective);
    // In the slots' dtype: with exact gradients (autograd/exact_grad.h) a leaf's is f64.
    grad_next = s > 0 && m_in.grad().defined() ? mnemo::to(m_in.grad(), m_in.dtype()) : Tensor();
  }
  if (final_state != nullptr) *final_state = state.detached();
  return total / double(count);
}

}  // namespace mnemo::memory

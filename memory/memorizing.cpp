// MemorizingConfig and MemorizingLM (memorizing.h).
#include "memory/memorizing.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"

namespace mnemo::memory {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

std::string knn_prefix(int64_t layer) {
  return "knn." + std::to_string(layer);
}
std::string xl_prefix(int64_t layer) {
  return "xl." + std::to_string(layer);
}

int64_t json_int(const nlohmann::json& v, const std::string& key) {
  MNEMO_CHECK(v.is_number_integer(), "memorizing config: '{}' must be an integer, got {}", key,
              v.dump());
  return v.get<int64_t>();
}
double json_number(const nlohmann::json& v, const std::string& key) {
  MNEMO_CHECK(v.is_number(), "memorizing config: '{}' must be a number, got {}", key, v.dump());
  return v.get<double>();
}
std::string json_string(const nlohmann::json& v, const std::string& key) {
  MNEMO_CHECK(v.is_string(), "memorizing config: '{}' must be a string, got {}", key, v.dump());
  return v.get<std::string>();
}

// Where documents end inside one segment (SegmentLM::document_end_id), ids (B, T):
struct DocumentEnds {
  Tensor visible;  // (B, T) bool: no document ended in this segment before t (t may read the
                   //        memory and the XL cache of earlier segments' entries)
  Tensor ended;    // (B,) bool: a document ended in this segment
  Tensor after;    // (B,) i64: tokens after the last end (the new document's so far)
};
DocumentEnds document_ends(const Tensor& ids, int64_t end_id) {
  NoGradGuard no_grad;
  const int64_t B = ids.size(0), T = ids.size(1);
  const Tensor ends = mnemo::to(eq(ids, double(end_id)), DType::f32);  // (B, T) 0 / 1
  const Tensor through = cumsum(ends, 1);                              // ends at t or before
  const Tensor total = narrow(through, 1, T - 1, 1);                   // (B, 1)
  DocumentEnds d;
  d.visible = eq(sub(through, ends), 0.0);
  d.ended = view(gt(total, 0.0), {B});
  // Positions from the last end on have through == total; minus the end token itself.
  d.after = mnemo::to(add(sum(mnemo::to(eq(through, total), DType::f32), {1}), -1.0), DType::i64);
  return d;
}

// A FIFO's count after a segment: where a document ended, only the entries after the last
// end (the segment's last `after` tokens, capped at the capacity N) stay valid.
Tensor count_after_segment(const Tensor& appended, const DocumentEnds* ends, int64_t N) {
  if (ends == nullptr) return appended;
  return where(ends->ended, clamp(ends->after, 0.0, double(N)), appended);
}

}  // namespace

void MemorizingConfig::validate(const nn::LlamaConfig& model) const {
  const int64_t L = model.num_hidden_layers;
  MNEMO_CHECK(memory_layer >= -L && memory_layer < L,
              "memorizing config: 'memory_layer' {} is out of range for {} layers", memory_layer,
              L);
  std::vector<int64_t> seen;
  for (int64_t layer : xl_layers) {
    MNEMO_CHECK(layer >= -L && layer < L,
                "memorizing config: 'xl_layers' entry {} is out of range for {} layers", layer, L);
    const int64_t resolved = (layer + L) % L;
    MNEMO_CHECK(std::find(seen.begin(), seen.end(), resolved) == seen.end(),
                "memorizing config: 'xl_layers' lists layer {} twice", resolved);
    seen.push_back(resolved);
  }
  MNEMO_CHECK(capacity > 0, "memorizing config: 'capacity' must be positive, got {}", capacity);
  MNEMO_CHECK(top_k > 0, "memorizing config: 'top_k' must be positive, got {}", top_k);
  MNEMO_CHECK(segment_length > 0 && segment_length <= model.max_position_embeddings,
              "memorizing config: 'segment_length' {} must be in 1 .. max_position_embeddings "
              "({})",
              segment_length, model.max_position_embeddings);
  parse_memory_gate(gate, "'gate'");
  parse_local_position(position, "'position'");
  const KnnSearch kind = parse_knn_search(search, "'search'");
  MNEMO_CHECK(kind != KnnSearch::faiss || knn_faiss_available(),
              "memorizing config: 'search' is \"faiss\" but mnemo was built without faiss "
              "(apt-get install libfaiss-dev and reconfigure, or use \"exact\")");
  MNEMO_CHECK(faiss_index == "hnsw" || faiss_index == "ivf",
              "memorizing config: 'faiss_index' must be \"hnsw\" or \"ivf\", got \"{}\"",
              faiss_index);
  MNEMO_CHECK(faiss_nprobe > 0, "memorizing config: 'faiss_nprobe' must be positive, got {}",
              faiss_nprobe);
}

MemorizingConfig MemorizingConfig::from_json(const nlohmann::json& j) {
  MNEMO_CHECK(j.is_object(), "memorizing config: expected a JSON object, got {}", j.dump());
  MemorizingConfig c;
  for (const auto& [key, v] : j.items()) {
    if (key == "memory_layer") {
      c.memory_layer = json_int(v, key);
    } else if (key == "capacity") {
      c.capacity = json_int(v, key);
    } else if (key == "top_k") {
      c.top_k = json_int(v, key);
    } else if (key == "segment_length") {
      c.segment_length = json_int(v, key);
    } else if (key == "faiss_nprobe") {
      c.faiss_nprobe = json_int(v, key);
    } else if (key == "gate_init") {
      c.gate_init = json_number(v, key);
    } else if (key == "gate") {
      c.gate = json_string(v, key);
    } else if (key == "position") {
      c.position = json_string(v, key);
    } else if (key == "search") {
      c.search = json_string(v, key);
    } else if (key == "faiss_index") {
      c.faiss_index = json_string(v, key);
    } else if (key == "xl_layers") {
      MNEMO_CHECK(v.is_array(), "memorizing config: 'xl_layers' must be a list of layer indices");
      c.xl_layers.clear();
      for (const auto& layer : v) c.xl_layers.push_back(json_int(layer, "xl_layers"));
    } else if (key != "mechanism") {
      fail(
          "memorizing config: unknown key '{}' (known: memory_layer, capacity, top_k, "
          "xl_layers, gate, gate_init, position, search, faiss_index, faiss_nprobe, "
          "segment_length)",
          key);
    }
  }
  return c;
}

MemorizingLM::MemorizingLM(const nn::LlamaConfig& m, const MemorizingConfig& cfg, Generator* gen)
    : DecoderLM(m, gen), config(cfg) {
  cfg.validate(m);
  const int64_t L = m.num_hidden_layers;
  config.memory_layer = (cfg.memory_layer + L) % L;
  for (int64_t& layer : config.xl_layers) layer = (layer + L) % L;
  const double std = m.initializer_range;
  FaissOptions faiss;
  faiss.index = config.faiss_index;
  faiss.nprobe = config.faiss_nprobe;
  KnnMemory knn(config.capacity, m.num_key_value_heads, m.head_dim(),
                parse_knn_search(config.search), faiss);
  for (int64_t i = 0; i < L; ++i) {
    if (i == config.memory_layer) {
      memory_block = layer_list->append(std::make_shared<MemorizingBlock>(
          m.hidden_size, m.num_attention_heads, m.num_key_value_heads, m.intermediate_size,
          m.rms_norm_eps, knn, config.top_k, parse_memory_gate(config.gate), gen, std,
          config.gate_init, parse_local_position(config.position)));
      blocks.push_back(nullptr);
    } else {
      blocks.push_back(append_llama_block(gen));
    }
  }
  finish_decoder(gen);
}

bool MemorizingLM::has_xl(int64_t layer) const {
  return std::find(config.xl_layers.begin(), config.xl_layers.end(), layer) !=
         config.xl_layers.end();
}

Tensor MemorizingLM::rope_shift(const Tensor& k, int64_t T) const {
  // Rotation by -T: cos(T w_i) and the signed sine table of position -T, [-sin(T w), sin(T w)].
  const int64_t D = k.size(-1), half = D / 2;
  std::vector<double> cos_table(static_cast<size_t>(D)), sin_signed(static_cast<size_t>(D));
  for (int64_t i = 0; i < half; ++i) {
    const double angle = double(T) / std::pow(model_config.rope_theta, double(2 * i) / double(D));
    cos_table[size_t(i)] = cos_table[size_t(i + half)] = std::cos(angle);
    sin_signed[size_t(i)] = -std::sin(angle);
    sin_signed[size_t(i + half)] = std::sin(angle);
  }
  auto table = [&](const std::vector<double>& values) {
    return mnemo::to(mnemo::to(from_vector(values, {D}, {DType::f64}), k.dtype()), k.device());
  };
  return nn::rope(k, table(cos_table), table(sin_signed));
}

MemoryState MemorizingLM::initial_state(int64_t B) const {
  const TensorOptions options = options_of(embed_tokens->weight);
  const auto& attn = *memory_block->self_attn;
  MemoryState state;
  attn.memory.save(attn.memory.initial(B, options), knn_prefix(config.memory_layer), state);
  const int64_t Hkv = model_config.num_key_value_heads, D = model_config.head_dim();
  const int64_t S = config.segment_length;
  for (int64_t layer : config.xl_layers) {
    state.set(xl_prefix(layer) + ".k", zeros({B, Hkv, S, D}, options));
    state.set(xl_prefix(layer) + ".v", zeros({B, Hkv, S, D}, options));
    state.set(xl_prefix(layer) + ".count", zeros({B}, {DType::i64, options.device}));
  }
  return state;
}

SegmentOutput MemorizingLM::forward_segment(const Tensor& ids, const MemoryState& state) {
  MNEMO_CHECK(ids.dim() == 2 && is_integral(ids.dtype()),
              "MemorizingLM: ids must be integer (B, T), got {} {}", ids.dtype(),
              shape_str(ids.shape()));
  const int64_t B = ids.size(0), T = ids.size(1), S = config.segment_length;
  const int64_t Hkv = model_config.num_key_value_heads, D = model_config.head_dim();
  MNEMO_CHECK(T > 0 && T <= S, "MemorizingLM: segment of {} tokens, segment_length is {}", T, S);
  const auto& memory = memory_block->self_attn->memory;
  const std::string knn_name = knn_prefix(config.memory_layer);
  const KnnMemoryState knn = memory.load(state, knn_name);
  MNEMO_CHECK(knn.keys.size(0) == B, "MemorizingLM: state for {} streams, ids for {}",
              knn.keys.size(0), B);

  std::optional<DocumentEnds> ends;
  if (document_end_id >= 0) ends = document_ends(ids, document_end_id);
  SegmentOutput out;
  Tensor h = embed_tokens->forward(ids);  // (B, T, C)
  const nn::RopeTables rope = rotary_emb->tables({}, 0, T);
  for (int64_t i = 0; i < int64_t(blocks.size()); ++i) {
    const bool xl = has_xl(i);
    nn::LayerKV extra, segment;  // XL cache in; this segment's rotated k/v out
    Tensor xl_count, bias;
    if (xl) {
      const std::string p = xl_prefix(i);
      extra = {state.at(p + ".k"), state.at(p + ".v")};
      xl_count = state.at(p + ".count");
      MNEMO_CHECK(extra.k.shape() == (Shape{B, Hkv, S, D}) && extra.v.shape() == extra.k.shape(),
                  "MemorizingLM: state '{}.k' has shape {}, expected {}", p,
                  shape_str(extra.k.shape()), shape_str(Shape{B, Hkv, S, D}));
      // (B, 1, 1, S + T): -inf on the cache slots this stream has not filled yet.
      const Tensor valid = fifo_valid_slots(xl_count, S, h.device());
      const TensorOptions options = options_of(h);
      bias = concat({where(valid, scalar_tensor(0.0, options), scalar_tensor(-kInf, options)),
                     zeros({B, 1, 1, T}, options)},
                    3);
    }
    if (i == config.memory_layer) {
      memory_block->self_attn->keep_memory_logits = record_reads;
      const KnnAttentionOutput a = memory_block->forward(h, rope, knn, xl ? &extra : nullptr, bias,
                                                         ends ? ends->visible : Tensor{});
      h = a.y;
      if (record_reads) last_read = {a.lookup, a.memory_logits, knn.count};
      KnnMemoryState next = memory.append(knn, a.k, a.v);
      next.count = count_after_segment(next.count, ends ? &*ends : nullptr, memory.capacity);
      memory.save(next, knn_name, out.state);
      segment = {a.k_rope, a.v};
    } else {
      h = blocks[size_t(i)]->forward(h, rope, xl ? &segment : nullptr, xl ? &extra : nullptr, bias);
    }
    if (xl) {
      const std::string p = xl_prefix(i);
      const Tensor cached = fifo_append(extra.k, detach(segment.k));
      const bool rotated = i != config.memory_layer || config.position == "rope";
      out.state.set(p + ".k", rotated ? rope_shift(cached, T) : cached);
      out.state.set(p + ".v", fifo_append(extra.v, detach(segment.v)));
      out.state.set(p + ".count",
                    count_after_segment(fifo_count(xl_count, T, S), ends ? &*ends : nullptr, S));
    }
  }
  out.logits = output_logits(h);  // (B, T, V)
  return out;
}

double MemorizingLM::forward_backward(const std::vector<Tensor>& ids,
                                      const std::vector<Tensor>& targets,
                                      const MemoryState& initial, MemoryState* final_state,
                                      double grad_scale) {
  const int64_t count = scored_targets(ids, targets);
  MemoryState state = initial.detached();
  double total = 0;
  for (size_t s = 0; s < ids.size(); ++s) {
    SegmentOutput out = forward_segment(ids[s], state);
    const SegmentLoss loss = segment_loss(out.logits, targets[s]);
    total += loss.sum.item();
    if (loss.count > 0) backward(mul(loss.sum, grad_scale / double(count)));
    state = out.state.detached();
  }
  if (final_state != nullptr) *final_state = state;
  return total / double(count);
}

}  // namespace mnemo::memory

// The Memorizing Transformer: KnnAttention against plain attention (closed gate / empty
// memory) and a naive reference of the retrieved attention, an f64 gradcheck of the gated
// layer with a non-empty memory; MemorizingLM's XL cache against full Llama attention with
// a sliding-window mask, per-stream reset, segment-wise training = one-graph BPTT, config.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "core/ops/random.h"
#include "memory/memorizing.h"
#include "memory/memory_test_util.h"

namespace mnemo::memory {
namespace {

using test::max_abs_diff;

// A memory of kv heads `Hkv`, size D, filled with `count[b]` random entries per stream.
KnnMemoryState filled(const KnnMemory& mem, const std::vector<int64_t>& count, Generator* gen) {
  const int64_t B = int64_t(count.size());
  KnnMemoryState m = mem.initial(B, {DType::f64});
  const int64_t most = *std::max_element(count.begin(), count.end());
  m = mem.append(m, randn({B, mem.heads, most, mem.head_dim}, {DType::f64}, gen),
                 randn({B, mem.heads, most, mem.head_dim}, {DType::f64}, gen));
  std::vector<int64_t> reset;
  for (int64_t b = 0; b < B; ++b) {
    if (count[size_t(b)] == 0) reset.push_back(b);
  }
  m = mem.reset(m, reset);
  // Streams with fewer entries: keep only their last count[b] (count is what reads see).
  std::vector<int64_t> c = count;
  m.count = from_vector(c, {B});
  return m;
}

Tensor eye(int64_t n) {
  std::vector<double> v(size_t(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) v[size_t(i * n + i)] = 1.0;
  return from_vector(v, {n, n}, {DType::f64});
}

// The RoPE tables rounded to f32 at construction, recomputed in f64 (so that rotating a cached
// key by -T equals rotating it at its shifted position to f64 rounding).
void exact_rope(nn::RotaryEmbedding& r) {
  double* c = r.cos_cached.data<double>();
  double* s = r.sin_cached.data<double>();
  const int64_t D = r.head_dim;
  for (int64_t p = 0; p < r.max_positions; ++p) {
    for (int64_t i = 0; i < D; ++i) {
      const double angle = double(p) / std::pow(r.theta, double(2 * (i % (D / 2))) / double(D));
      c[p * D + i] = std::cos(angle);
      s[p * D + i] = std::sin(angle);
    }
  }
}

void set_param(nn::Module& module, const std::string& name, const Tensor& value) {
  module.load_state_dict({{name, value}}, false);
}

// f64 RoPE tables for positions 0 .. T-1 of heads of dim D (a table of max_positions rows).
nn::RopeTables f64_rope(int64_t D, int64_t max_positions, int64_t T) {
  nn::RotaryEmbedding rotary(D, max_positions);
  rotary.to(DType::f64);
  return rotary.tables({}, 0, T);
}

}  // namespace

TEST_CASE("KnnAttention: a closed gate or an empty memory gives plain attention") {
  Generator gen(1);
  const int64_t B = 2, T = 5, C = 8, H = 4, Hkv = 2, D = C / H;
  const nn::RopeTables rope = f64_rope(D, 16, T);
  const Tensor x = randn({B, T, C}, {DType::f64}, &gen);
  const nn::LayerKV extra{randn({B, Hkv, 3, D}, {DType::f64}, &gen),
                          randn({B, Hkv, 3, D}, {DType::f64}, &gen)};
  const Tensor bias =
      from_vector(std::vector<double>{0, -1e300, 0, 0, 0, 0, 0, 0}, {1, 1, 1, 8}, {DType::f64});
  for (const MemoryGate gate : {MemoryGate::sigmoid, MemoryGate::joint}) {
    KnnMemory mem(6, Hkv, D);
    KnnAttention layer(C, H, Hkv, mem, 3, gate, &gen);
    layer.to(DType::f64);
    nn::CausalSelfAttention plain(C, H, Hkv, &gen);
    plain.to(DType::f64);
    plain.load_state_dict({{"q_proj.weight", layer.q_proj->weight},
                           {"k_proj.weight", layer.k_proj->weight},
                           {"v_proj.weight", layer.v_proj->weight},
                           {"o_proj.weight", layer.o_proj->weight}});
    const Tensor want = plain.forward(x, rope, nullptr, &extra, bias);
    // Empty memory: the joint softmax gives the retrieved part weight exactly 0; the sigmoid
    // gate at -1e4 is exactly 0 in f64, so with a full memory too the output is unchanged.
    const KnnMemoryState empty = mem.initial(B, {DType::f64});
    if (gate == MemoryGate::sigmoid) {
      set_param(layer, "gate_bias", full({H}, -1e4, {DType::f64}));
      CHECK(max_abs_diff(layer.forward(x, rope, empty, &extra, bias).y, want) == 0.0);
      const KnnMemoryState full_memory = filled(mem, {6, 4}, &gen);
      CHECK(max_abs_diff(layer.forward(x, rope, full_memory, &extra, bias).y, want) == 0.0);
      set_param(layer, "gate_bias", full({H}, 0.0, {DType::f64}));  // open: it changes
      CHECK(max_abs_diff(layer.forward(x, rope, full_memory, &extra, bias).y, want) > 1e-3);
    } else {
      CHECK(max_abs_diff(layer.forward(x, rope, empty, &extra, bias).y, want) < 1e-12);
      CHECK(max_abs_diff(layer.forward(x, rope, empty).y, plain.forward(x, rope)) < 1e-12);
    }
  }
}

TEST_CASE("KnnAttention: the retrieved attention equals a naive softmax over the memory") {
  Generator gen(2);
  const int64_t B = 2, T = 3, C = 8, H = 4, Hkv = 2, D = C / H, N = 5;
  KnnMemory mem(N, Hkv, D);
  const std::vector<int64_t> count = {5, 2};
  const KnnMemoryState m = filled(mem, count, &gen);
  const Tensor x = randn({B, T, C}, {DType::f64}, &gen);
  for (const MemoryGate gate : {MemoryGate::sigmoid, MemoryGate::joint}) {
    KnnAttention layer(C, H, Hkv, mem, N, gate, &gen);  // top_k = N: every valid entry
    layer.to(DType::f64);
    set_param(layer, "o_proj.weight", eye(C));
    Tensor y;
    if (gate == MemoryGate::sigmoid) {
      set_param(layer, "gate_bias", full({H}, 1e4, {DType::f64}));  // g = 1: memory only
      y = layer.forward(x, {}, m).y;
    }
    const Tensor q = view(linear(x, layer.q_proj->weight), {B, T, H, D});
    const Tensor k_local = view(linear(x, layer.k_proj->weight), {B, T, Hkv, D});
    const Tensor v_local = view(linear(x, layer.v_proj->weight), {B, T, Hkv, D});
    if (gate == MemoryGate::joint) {
      set_param(layer, "memory_log_temperature", full({H}, 0.3, {DType::f64}));
      y = layer.forward(x, {}, m).y;  // no RoPE: local and memory scores are plain dots
    }
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t h = 0; h < H; ++h) {
        for (int64_t t = 0; t < T; ++t) {
          // (score, value row) pairs: memory entries, then (joint) local keys 0..t.
          std::vector<std::pair<double, std::vector<double>>> items;
          auto dot = [&](auto key) {
            double s = 0;
            for (int64_t d = 0; d < D; ++d) s += q.at({b, t, h, d}) * key(d);
            return s / std::sqrt(double(D));
          };
          const int64_t kv = h / (H / Hkv);
          const double temperature = gate == MemoryGate::joint ? std::exp(0.3) : 1.0;
          for (int64_t j = N - count[size_t(b)]; j < N; ++j) {
            std::vector<double> v(static_cast<size_t>(D));
            for (int64_t d = 0; d < D; ++d) v[size_t(d)] = m.values.at({b, kv, j, d});
            items.emplace_back(temperature * dot([&](int64_t d) {
                                 return m.keys.at({b, kv, j, d});
                               }),
                               v);
          }
          if (gate == MemoryGate::joint) {
            for (int64_t j = 0; j <= t; ++j) {
              std::vector<double> v(static_cast<size_t>(D));
              for (int64_t d = 0; d < D; ++d) v[size_t(d)] = v_local.at({b, j, kv, d});
              items.emplace_back(dot([&](int64_t d) { return k_local.at({b, j, kv, d}); }), v);
            }
          }
          double z = 0, top = -std::numeric_limits<double>::infinity();
          for (const auto& it : items) top = std::max(top, it.first);
          for (const auto& it : items) z += std::exp(it.first - top);
          for (int64_t d = 0; d < D; ++d) {
            double want = 0;
            for (const auto& it : items)
              want += std::exp(it.first - top) / z * it.second[size_t(d)];
            CHECK(y.at({b, t, h * D + d}) == doctest::Approx(want).epsilon(1e-12));
          }
        }
      }
    }
  }
}

TEST_CASE("KnnAttention: a query the memory is hidden from reads it as empty") {
  Generator gen(6);
  const int64_t B = 2, T = 3, C = 8, H = 4, Hkv = 2, D = C / H;
  KnnMemory mem(6, Hkv, D);
  const KnnMemoryState full_memory = filled(mem, {6, 4}, &gen);
  const KnnMemoryState empty = mem.initial(B, {DType::f64});
  const Tensor x = randn({B, T, C}, {DType::f64}, &gen);
  // stream 0 sees the memory at t = 0 only, stream 1 everywhere
  const Tensor visible = gt(from_vector(std::vector<double>{1, 0, 0, 1, 1, 1}, {B, T}), 0.0);
  for (const MemoryGate gate : {MemoryGate::sigmoid, MemoryGate::joint}) {
    for (const bool dense : {true, false}) {
      KnnAttention layer(C, H, Hkv, mem, 3, gate, &gen, 0.5, 0.0);
      layer.to(DType::f64);
      layer.dense_read = dense;
      const Tensor seen = layer.forward(x, {}, full_memory).y;
      const Tensor unseen = layer.forward(x, {}, empty).y;
      const Tensor y = layer.forward(x, {}, full_memory, nullptr, {}, visible).y;
      CHECK(max_abs_diff(narrow(y, 1, 0, 1), narrow(seen, 1, 0, 1)) < 1e-14);
      CHECK(max_abs_diff(select(y, 0, 1), select(seen, 0, 1)) < 1e-14);
      CHECK(max_abs_diff(narrow(select(y, 0, 0), 0, 1, 2), narrow(select(unseen, 0, 0), 0, 1, 2)) <
            1e-14);
      CHECK(max_abs_diff(select(seen, 0, 0), select(unseen, 0, 0)) > 1e-6);
    }
  }
  KnnAttention layer(C, H, Hkv, mem, 3, MemoryGate::sigmoid, &gen);
  CHECK_THROWS_WITH_AS(layer.forward(x, {}, full_memory, nullptr, {}, view(visible, {T, B})),
                       doctest::Contains("memory_visible"), Error);
}

TEST_CASE("KnnAttention: the dense read equals the gathered read, values and gradients") {
  Generator gen(4);
  const int64_t B = 3, T = 4, C = 8, H = 4, Hkv = 2, D = C / H, N = 12;
  const nn::RopeTables rope = f64_rope(D, 8, T);
  KnnMemory mem(N, Hkv, D);
  // top-3 of 9, of 2 (fewer than K) and of none; the search covers slots 3 .. 11.
  const KnnMemoryState m = filled(mem, {9, 2, 0}, &gen);
  for (const MemoryGate gate : {MemoryGate::sigmoid, MemoryGate::joint}) {
    KnnAttention layer(C, H, Hkv, mem, 3, gate, &gen, 0.5, 0.3);
    layer.to(DType::f64);
    CHECK(layer.dense_read);  // exact search reads densely by default
    layer.keep_memory_logits = true;
    const Tensor x0 = randn({B, T, C}, {DType::f64}, &gen);
    auto run = [&](bool dense) {
      layer.dense_read = dense;
      layer.zero_grad();
      Tensor x = add(x0, 0.0);  // a fresh leaf per run
      x.set_requires_grad(true);
      const KnnAttentionOutput out = layer.forward(x, rope, m);
      backward(sum(mul(out.y, out.y)));
      std::vector<Tensor> grads{x.grad()};
      for (const Tensor& p : layer.parameters()) grads.push_back(p.grad());
      return std::make_pair(out, grads);
    };
    const auto [dense, dense_grads] = run(true);
    const auto [gathered, gathered_grads] = run(false);
    CHECK(max_abs_diff(dense.y, gathered.y) < 1e-12);
    CHECK(max_abs_diff(dense.memory_logits, gathered.memory_logits) < 1e-12);
    CHECK(max_abs_diff(dense.lookup.indices, gathered.lookup.indices) == 0.0);
    REQUIRE(dense_grads.size() == gathered_grads.size());
    for (size_t i = 0; i < dense_grads.size(); ++i)
      CHECK(max_abs_diff(dense_grads[i], gathered_grads[i]) < 1e-12);
  }
}

TEST_CASE("KnnAttention: f64 gradcheck w.r.t. the parameters with a non-empty memory") {
  Generator gen(3);
  const int64_t B = 2, T = 3, C = 8, H = 2, Hkv = 1, D = C / H;
  const nn::RopeTables rope = f64_rope(D, 8, T);
  KnnMemory mem(6, Hkv, D);
  const KnnMemoryState m = filled(mem, {6, 2}, &gen);  // stream 0: top-3 of 6; stream 1: 2
  const Tensor x = randn({B, T, C}, {DType::f64}, &gen);
  for (const MemoryGate gate : {MemoryGate::sigmoid, MemoryGate::joint}) {
    KnnAttention layer(C, H, Hkv, mem, 3, gate, &gen, 0.5, 0.3);
    layer.to(DType::f64);
    for (const bool dense : {true, false}) {
      layer.dense_read = dense;
      const GradcheckResult r = gradcheck(
          [&](const TensorList&) { return layer.forward(x, rope, m).y; }, layer.parameters());
      INFO(r.message, " dense ", dense);
      CHECK(r.ok);
      CHECK(r.elements_checked == 2 * C * C + 2 * C * Hkv * D + H);  // q, o; k, v; gate
    }
  }
}

TEST_CASE("MemorizingLM: XL caches equal Llama attention with a sliding window") {
  // Every layer caches the previous S tokens; the kNN gate is closed. Then segment s, query at
  // stream position p, sees exactly the keys in [start(s) - S, p]: a Llama on the whole
  // stream with that additive mask must give the same logits.
  Generator gen(4);
  const nn::LlamaConfig lc = test::micro_llama(3);
  MemorizingConfig mc{.memory_layer = 1,
                      .capacity = 8,
                      .top_k = 4,
                      .xl_layers = {0, 1, -1},
                      .gate_init = -1e4,
                      .position = "rope",  // every layer as the Llama's
                      .segment_length = 4};
  MemorizingLM lm(lc, mc, &gen);
  lm.to(DType::f64);
  nn::LlamaForCausalLM ref(lc, &gen);
  ref.to(DType::f64);
  nn::NamedTensors weights;
  for (const auto& [name, t] : lm.state_dict()) {
    if (name.find("gate_bias") == std::string::npos) weights.emplace_back(name, t);
  }
  ref.load_state_dict(weights);
  exact_rope(*lm.rotary_emb);
  exact_rope(*ref.model->rotary_emb);

  const int64_t B = 2;
  const std::vector<int64_t> lengths = {4, 3, 4, 2};
  int64_t total = 0;
  for (int64_t n : lengths) total += n;
  const Tensor stream = randint(0, lc.vocab_size, {B, total}, {DType::i64}, &gen);
  nn::LMInput input;
  input.input_ids = stream;
  input.attention_bias = test::xl_window_bias(lengths, mc.segment_length);
  const Tensor want = ref.forward(input).logits;  // (B, total, V)

  const MemoryState state = test::check_segment_logits(lm, stream, lengths, want, 1e-12);
  CHECK(state.at("xl.2.count").to_vector<int64_t>() == std::vector<int64_t>{4, 4});
  CHECK(state.at("knn.1.count").to_vector<int64_t>() == std::vector<int64_t>{8, 8});
  CHECK_FALSE(state.at("knn.1.keys").requires_grad());
}

TEST_CASE("MemorizingLM: reset_rows restarts one stream; the state is plain tensors") {
  Generator gen(5);
  MemorizingConfig mc{.capacity = 6, .top_k = 3, .xl_layers = {0}, .segment_length = 3};
  MemorizingLM lm(test::micro_llama(2), mc, &gen);
  lm.to(DType::f64);
  const Tensor a = from_vector(std::vector<int64_t>{1, 2, 3, 4, 5, 6}, {2, 3});
  const Tensor b = from_vector(std::vector<int64_t>{7, 8, 9, 10, 1, 2}, {2, 3});
  MemoryState state = lm.initial_state(2);
  for (int i = 0; i < 3; ++i) state = lm.forward_segment(a, state).state;
  // A copy of the tensors continues identically (checkpointing is saving these).
  MemoryState copy;
  for (const auto& [name, t] : state.tensors) copy.set(name, clone(t));
  const Tensor cont = lm.forward_segment(b, state).logits;
  CHECK(max_abs_diff(lm.forward_segment(b, copy).logits, cont) == 0.0);
  // Stream 1 restarted reads like a fresh stream; stream 0 is unchanged.
  const Tensor restarted = lm.forward_segment(b, lm.reset_rows(state, {1})).logits;
  const Tensor fresh = lm.forward_segment(b, lm.initial_state(2)).logits;
  CHECK(max_abs_diff(select(restarted, 0, 0), select(cont, 0, 0)) == 0.0);
  CHECK(max_abs_diff(select(restarted, 0, 1), select(fresh, 0, 1)) < 1e-14);
  CHECK(max_abs_diff(select(cont, 0, 1), select(fresh, 0, 1)) > 1e-6);  // memory was read
  CHECK_THROWS_WITH_AS(lm.forward_segment(from_vector(std::vector<int64_t>(8, 1), {2, 4}), state),
                       doctest::Contains("segment_length"), Error);
}

TEST_CASE("MemorizingLM: the memory is cleared where a document ends (document_end_id)") {
  // The memory layer is layer 0, so its keys depend on the token alone, and layer 1 keeps an
  // XL cache: after the end token E, nothing of the first document may reach the second.
  // Two streams, different first documents, the same boundary segment and second document:
  // from the token after E on, their logits must be equal (and differ without the clearing).
  Generator gen(8);
  const int64_t E = 10, T = 4;
  MemorizingConfig mc{.memory_layer = 0,
                      .capacity = 64,
                      .top_k = 4,
                      .xl_layers = {1},
                      .gate_init = 0.0,  // g = 0.5: the memory is read
                      .segment_length = T};
  MemorizingLM lm(test::micro_llama(2), mc, &gen);
  lm.to(DType::f64);
  const std::vector<std::vector<int64_t>> doc1 = {{1, 2, 3, 4, 5, 6, 7, 8},
                                                  {8, 6, 4, 2, 9, 7, 5, 3}};
  const std::vector<int64_t> boundary = {3, 1, E, 2}, doc2 = {4, 4, 1, 9, 2, 6, 1, 5};
  auto run = [&](int64_t end_id) {
    lm.document_end_id = end_id;
    std::vector<int64_t> rows;
    for (const auto& d : doc1) {  // stream b: doc1[b] (2 segments), boundary, doc2 (2)
      rows.insert(rows.end(), d.begin(), d.end());
      rows.insert(rows.end(), boundary.begin(), boundary.end());
      rows.insert(rows.end(), doc2.begin(), doc2.end());
    }
    const Tensor stream = from_vector(rows, {2, 5 * T});
    MemoryState state = lm.initial_state(2);
    std::vector<Tensor> logits;
    for (int64_t s = 0; s < 5; ++s) {
      const SegmentOutput out = lm.forward_segment(contiguous(narrow(stream, 1, s * T, T)), state);
      logits.push_back(out.logits);
      state = out.state;
      if (s == 2 && end_id >= 0) {  // only the token after E stays in the memory and the cache
        CHECK(state.at("knn.0.count").to_vector<int64_t>() == std::vector<int64_t>{1, 1});
        CHECK(state.at("xl.1.count").to_vector<int64_t>() == std::vector<int64_t>{1, 1});
      }
    }
    return logits;
  };
  auto rows_differ = [](const Tensor& logits, int64_t t) {  // stream 0 vs stream 1 at t
    return max_abs_diff(select(select(logits, 1, t), 0, 0), select(select(logits, 1, t), 0, 1));
  };
  // Inside the boundary segment layer 1's window and XL cache still see the tokens before E
  // (as a plain LM's window does), so equality starts with the next segment.
  const std::vector<Tensor> cleared = run(E);
  CHECK(rows_differ(cleared[2], 1) > 1e-6);
  CHECK(rows_differ(cleared[3], 0) < 1e-13);
  CHECK(rows_differ(cleared[4], 3) < 1e-13);
  const std::vector<Tensor> kept = run(-1);
  CHECK(rows_differ(kept[2], 3) > 1e-6);
  CHECK(rows_differ(kept[4], 3) > 1e-6);
  CHECK(max_abs_diff(kept[1], cleared[1]) == 0.0);  // no end token yet: the same model
}

TEST_CASE("MemorizingLM: segment-wise forward_backward equals one-graph BPTT") {
  Generator gen(6);
  MemorizingConfig mc{
      .capacity = 5, .top_k = 2, .xl_layers = {1}, .gate = "joint", .segment_length = 3};
  MemorizingLM lm(test::micro_llama(2), mc, &gen);
  lm.to(DType::f64);
  std::vector<Tensor> ids, targets;
  for (int s = 0; s < 3; ++s) {
    ids.push_back(randint(0, 11, {2, 3}, {DType::i64}, &gen));
    targets.push_back(randint(0, 11, {2, 3}, {DType::i64}, &gen));
  }
  targets[1] = from_vector(std::vector<int64_t>{-100, 2, 3, -100, -100, 4}, {2, 3});
  const double loss = lm.forward_backward(ids, targets, lm.initial_state(2));
  std::vector<Tensor> grads;
  for (const Tensor& p : lm.parameters()) grads.push_back(clone(p.grad()));
  lm.zero_grad();
  const double want = lm.SegmentLM::forward_backward(ids, targets, lm.initial_state(2));
  CHECK(loss == doctest::Approx(want).epsilon(1e-12));
  const std::vector<Tensor> params = lm.parameters();
  for (size_t i = 0; i < params.size(); ++i)
    CHECK(max_abs_diff(grads[i], params[i].grad()) < 1e-13);
  CHECK(max_abs_diff(lm.memory_block->self_attn->memory_log_temperature.grad(),
                     zeros({2}, {DType::f64})) > 0);  // the memory is read and trains
}

TEST_CASE("MemorizingConfig: from_json reads every key; errors name the key") {
  const auto c = MemorizingConfig::from_json(nlohmann::json::parse(
      R"({"mechanism": "memorizing", "memory_layer": 2, "capacity": 64, "top_k": 8,
          "xl_layers": [0, 1], "gate": "joint", "gate_init": -2.5, "search": "exact",
          "faiss_index": "ivf", "faiss_nprobe": 4, "segment_length": 16})"));
  CHECK(c.memory_layer == 2);
  CHECK(c.capacity == 64);
  CHECK(c.top_k == 8);
  CHECK(c.xl_layers == std::vector<int64_t>{0, 1});
  CHECK(c.gate == "joint");
  CHECK(c.gate_init == -2.5);
  // The defaults that made far recall work (docs/memory-results.md): the paper's RoPE memory
  // layer, its gate starting nearly closed.
  CHECK(MemorizingConfig{}.gate_init == -4.0);
  CHECK(MemorizingConfig{}.position == "rope");
  CHECK(c.faiss_index == "ivf");
  CHECK(c.faiss_nprobe == 4);
  CHECK(c.segment_length == 16);
  auto error_of = [](const char* text) {
    try {
      MemorizingLM(test::micro_llama(2, 1024),
                   MemorizingConfig::from_json(nlohmann::json::parse(text)));
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(error_of(R"({"topk": 3})").find("'topk'") != std::string::npos);
  CHECK(error_of(R"({"top_k": "3"})").find("'top_k'") != std::string::npos);
  CHECK(error_of(R"({"top_k": 0})").find("'top_k'") != std::string::npos);
  CHECK(error_of(R"({"memory_layer": 2})").find("'memory_layer'") != std::string::npos);
  CHECK(error_of(R"({"xl_layers": [0, -2]})").find("'xl_layers'") != std::string::npos);
  CHECK(error_of(R"({"gate": "tanh"})").find("'gate'") != std::string::npos);
  CHECK(error_of(R"({"search": "annoy"})").find("'search'") != std::string::npos);
  CHECK(error_of(R"({"segment_length": 1025})").find("'segment_length'") != std::string::npos);
  CHECK(error_of(R"({"capacity": 16})") == "no error");
}

}  // namespace mnemo::memory

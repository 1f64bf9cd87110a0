// Memformer (memory/memformer.h): the config parser, the state, the writer against a slot-by-
// slot reference, an f64 gradcheck of one segment, MRBP against full back-propagation through
// time, and MRBP's flat peak memory in the number of segments.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "core/cpu/allocator_stats.h"
#include "core/ops/random.h"
#include "memory/memformer.h"
#include "support/tiny_llama.h"

namespace mnemo::memory {
namespace {

// initializer_range 0.3: large weights, so that every path matters to the gradients.
nn::LlamaConfig tiny_model(int64_t vocab = 11, int64_t C = 8, int64_t layers = 2) {
  return mnemo::test::tiny_llama({.vocab_size = vocab,
                                  .hidden_size = C,
                                  .intermediate_size = 2 * C,
                                  .num_hidden_layers = layers,
                                  .num_attention_heads = 2,
                                  .num_key_value_heads = 2,
                                  .initializer_range = 0.3});
}

MemformerConfig tiny_memory(int64_t K = 3, int64_t T = 6) {
  MemformerConfig c;
  c.num_slots = K;
  c.segment_length = T;
  return c;
}

std::vector<Tensor> random_ids(int64_t S, int64_t B, int64_t T, int64_t V, Generator* gen) {
  std::vector<Tensor> out;
  for (int64_t s = 0; s < S; ++s) out.push_back(randint(0, V, {B, T}, {DType::i64}, gen));
  return out;
}

// Targets = the ids shifted by one, with a few positions ignored (-100).
std::vector<Tensor> targets_of(const std::vector<Tensor>& ids, int64_t V) {
  std::vector<Tensor> out;
  for (size_t s = 0; s < ids.size(); ++s) {
    std::vector<int64_t> t = ids[s].to_vector<int64_t>();
    for (size_t i = 0; i < t.size(); ++i) t[i] = (i + s) % 5 == 4 ? -100 : (t[i] + 1) % V;
    out.push_back(from_vector(t, ids[s].shape()));
  }
  return out;
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_vector<double>()) m = std::max(m, std::abs(v));
  return m;
}

}  // namespace

TEST_CASE("MemformerConfig: from_json reads every key and names the bad one") {
  const MemformerConfig d = MemformerConfig::from_json(nlohmann::json::object());
  CHECK(d.num_slots == 8);
  CHECK(d.mrbp);
  const MemformerConfig c = MemformerConfig::from_json({{"mechanism", "memformer"},
                                                        {"num_slots", 4},
                                                        {"segment_length", 32},
                                                        {"mrbp", false},
                                                        {"writer_heads", 2},
                                                        {"writer_ff_size", 24},
                                                        {"slot_init_std", 0.5},
                                                        {"writer_init_std", 0.1},
                                                        {"read_init_std", 0.2},
                                                        {"writer_positions", false},
                                                        {"read_positions", false}});
  CHECK(c.num_slots == 4);
  CHECK(c.segment_length == 32);
  CHECK_FALSE(c.mrbp);
  CHECK(c.writer_heads == 2);
  CHECK(c.writer_ff_size == 24);
  CHECK(c.slot_init_std == 0.5);
  CHECK(c.writer_init_std == 0.1);
  CHECK(c.read_init_std == 0.2);
  CHECK_FALSE(c.writer_positions);
  CHECK_FALSE(c.read_positions);
  CHECK(d.writer_positions);
  CHECK(d.read_positions);
  {
    MemformerLM plain(tiny_model(), tiny_memory(4, 32));
    MemformerConfig off = tiny_memory();
    off.writer_positions = false;
    off.read_positions = false;
    MemformerLM no_positions(tiny_model(), off);
    CHECK_FALSE(no_positions.read_position.defined());
    CHECK_FALSE(no_positions.writer->token_position.defined());
    CHECK(plain.read_position.shape() == Shape{32, 8});
    CHECK(plain.writer->token_position.shape() == Shape{32, 8});
  }
  CHECK_THROWS_WITH_AS(MemformerConfig::from_json({{"num_slot", 4}}),
                       doctest::Contains("unknown key 'num_slot'"), Error);
  CHECK_THROWS_WITH_AS(MemformerConfig::from_json({{"num_slots", 0}}),
                       doctest::Contains("'num_slots'"), Error);
  CHECK_THROWS_WITH_AS(MemformerConfig::from_json({{"num_slots", 2.5}}),
                       doctest::Contains("'num_slots' must be an integer"), Error);
  CHECK_THROWS_WITH_AS(MemformerConfig::from_json({{"mrbp", 1}}),
                       doctest::Contains("'mrbp' must be true or false"), Error);
  CHECK_THROWS_WITH_AS(MemformerConfig::from_json({{"segment_length", -1}}),
                       doctest::Contains("'segment_length'"), Error);
  CHECK_THROWS_WITH_AS(MemformerConfig::from_json({{"writer_init_std", -0.1}}),
                       doctest::Contains("'writer_init_std'"), Error);
  CHECK_THROWS_WITH_AS(MemformerConfig::from_json({{"read_init_std", "big"}}),
                       doctest::Contains("'read_init_std' must be a number"), Error);
  MemformerConfig too_long = tiny_memory();
  too_long.segment_length = 65;
  CHECK_THROWS_WITH_AS(MemformerLM(tiny_model(), too_long), doctest::Contains("segment_length"),
                       Error);
  MemformerConfig odd_heads = tiny_memory();
  odd_heads.writer_heads = 3;
  CHECK_THROWS_WITH_AS(MemformerLM(tiny_model(), odd_heads), doctest::Contains("writer_heads"),
                       Error);
}

TEST_CASE("MemformerLM: initial_state broadcasts the learned slots, reset_rows restarts rows") {
  Generator gen(1);
  MemformerLM lm(tiny_model(), tiny_memory(), &gen);
  CHECK(lm.mechanism() == "memformer");
  CHECK(lm.segment_length() == 6);
  const MemoryState s0 = lm.initial_state(3);
  const Tensor slots = s0.at("slots");
  CHECK(slots.shape() == Shape{3, 3, 8});
  CHECK(slots.requires_grad());  // the graph reaches initial_slots
  for (int64_t b = 0; b < 3; ++b) {
    for (int64_t k = 0; k < 3; ++k) {
      for (int64_t c = 0; c < 8; ++c) CHECK(slots.at({b, k, c}) == lm.initial_slots.at({k, c}));
    }
  }
  const Tensor ids = randint(0, 11, {3, 6}, {DType::i64}, &gen);
  const MemoryState s1 = lm.forward_segment(ids, s0).state;
  const MemoryState r = lm.reset_rows(s1, {0, 2});
  for (int64_t k = 0; k < 3; ++k) {
    for (int64_t c = 0; c < 8; ++c) {
      CHECK(r.at("slots").at({0, k, c}) == lm.initial_slots.at({k, c}));
      CHECK(r.at("slots").at({1, k, c}) == s1.at("slots").at({1, k, c}));
      CHECK(r.at("slots").at({2, k, c}) == lm.initial_slots.at({k, c}));
    }
  }
  CHECK(max_abs(sub(s1.at("slots"), slots)) > 1e-3);  // the segment did write
}

TEST_CASE("MemformerLM: segment shapes, the memory is read, bad inputs name the problem") {
  Generator gen(2);
  MemformerLM lm(tiny_model(), tiny_memory(4, 5), &gen);
  const Tensor ids = randint(0, 11, {2, 5}, {DType::i64}, &gen);
  const MemoryState s0 = lm.initial_state(2);
  const SegmentOutput out = lm.forward_segment(ids, s0);
  CHECK(out.logits.shape() == Shape{2, 5, 11});
  CHECK(out.state.at("slots").shape() == Shape{2, 4, 8});
  CHECK(out.state.tensors.size() == 1);
  // Shorter segments are fine; other slots give other logits (the blocks read the memory).
  CHECK(lm.forward_segment(narrow(ids, 1, 0, 3), s0).logits.shape() == Shape{2, 3, 11});
  MemoryState other;
  other.set("slots", randn({2, 4, 8}, {}, &gen));
  CHECK(max_abs(sub(lm.forward_segment(ids, other).logits, out.logits)) > 1e-4);

  CHECK_THROWS_WITH_AS(lm.forward_segment(randint(0, 11, {2, 6}, {DType::i64}, &gen), s0),
                       doctest::Contains("segment_length 5"), Error);
  CHECK_THROWS_WITH_AS(lm.forward_segment(ids, lm.initial_state(3)),
                       doctest::Contains("'slots' must be (B=2, K=4, C=8)"), Error);
  CHECK_THROWS_WITH_AS(lm.forward_segment(ids, MemoryState{}),
                       doctest::Contains("no tensor named 'slots'"), Error);
  CHECK_THROWS_WITH_AS(lm.forward_segment(randn({2, 5}), s0), doctest::Contains("integer"), Error);
}

TEST_CASE(
    "MemoryWriter: equals a slot-by-slot reference in which slot i sees only itself and "
    "the tokens") {
  Generator gen(3);
  MemformerLM lm(tiny_model(), tiny_memory(3, 6), &gen);
  lm.to(DType::f64);
  const MemoryWriter& w = *lm.writer;
  const int64_t B = 2, K = 3, T = 5, C = 8;
  const Tensor memory = randn({B, K, C}, {DType::f64}, &gen);
  const Tensor hidden = randn({B, T, C}, {DType::f64}, &gen);
  const Tensor out = w.forward(memory, hidden);
  CHECK(out.shape() == Shape{B, K, C});

  // The mask: 0 on the diagonal of the slot block and on every token, -inf elsewhere.
  const Tensor bias = MemoryWriter::slot_bias(K, T, memory);
  CHECK(bias.shape() == Shape{1, 1, K, K + T});
  for (int64_t i = 0; i < K; ++i) {
    for (int64_t j = 0; j < K + T; ++j) {
      const double v = bias.at({0, 0, i, j});
      CHECK((j == i || j >= K ? v == 0.0 : std::isinf(v) && v < 0));
    }
  }
  // Reference: each slot alone, unmasked attention over [itself; tokens], GRU, FF, norm.
  NoGradGuard no_grad;
  // The tokens carry the writer's learned positions 0..T-1.
  REQUIRE(w.token_position.defined());
  const Tensor tokens =
      add(w.token_norm->forward(hidden), unsqueeze(narrow(w.token_position, 0, 0, T), 0));
  for (int64_t i = 0; i < K; ++i) {
    const Tensor m_i = narrow(memory, 1, i, 1);  // (B, 1, C)
    const Tensor q = w.slot_norm->forward(m_i);
    const Tensor u = w.attn->forward(q, concat({q, tokens}, 1));  // (B, 1, C)
    const Tensor g = w.gru->forward(reshape(u, {B, C}), reshape(m_i, {B, C}));
    const Tensor ref = w.out_norm->forward(add(g, w.ff->forward(w.ff_norm->forward(g))));
    CHECK(max_abs(sub(ref, reshape(narrow(out, 1, i, 1), {B, C}))) < 1e-12);
  }
}

TEST_CASE("MemformerLM: f64 gradcheck of one segment (logits and new slots)") {
  Generator gen(4);
  MemformerLM lm(tiny_model(7, 8, 1), tiny_memory(2, 4), &gen);
  lm.to(DType::f64);
  const Tensor ids = randint(0, 7, {2, 4}, {DType::i64}, &gen);
  const Tensor slots = randn({2, 2, 8}, {DType::f64}, &gen).set_requires_grad();
  const auto& block = *lm.layers[0];
  const TensorList inputs = {slots,
                             block.cross_attn->k_proj->weight,
                             block.cross_attn_layernorm->weight,
                             lm.memory_norm->weight,
                             lm.writer->attn->q_proj->weight,
                             lm.writer->gru->weight_hh,
                             lm.writer->gru->bias_ih,
                             lm.writer->ff->down_proj->weight,
                             lm.writer->token_norm->weight,
                             lm.writer->token_position,
                             lm.read_position};
  const auto fn = [&](const TensorList& x) {
    MemoryState state;
    state.set("slots", x[0]);
    const SegmentOutput out = lm.forward_segment(ids, state);
    return concat({reshape(out.logits, {-1}), reshape(out.state.at("slots"), {-1})});
  };
  const GradcheckResult r = gradcheck(fn, inputs);
  INFO(r.message);
  CHECK(r.ok);
  CHECK(r.elements_checked > 500);
}

TEST_CASE("MemformerLM: MRBP gradients equal full back-propagation through time (f64)") {
  Generator gen(5);
  const int64_t S = 4, B = 2, T = 6, V = 11;
  MemformerLM lm(tiny_model(V), tiny_memory(3, T), &gen);
  lm.to(DType::f64);
  const std::vector<Tensor> ids = random_ids(S, B, T, V, &gen);
  const std::vector<Tensor> targets = targets_of(ids, V);

  // From the learned initial slots (the gradient must reach them), then from a carried state.
  MemoryState carried;
  for (int round = 0; round < 2; ++round) {
    INFO("round ", round);
    nn::NamedTensors grads[2];
    double loss[2];
    MemoryState final_state[2];
    for (int mode = 0; mode < 2; ++mode) {
      lm.config.mrbp = mode == 0;
      lm.zero_grad();
      // A fresh initial state per run: its graph to initial_slots is consumed by backward.
      const MemoryState initial = round == 0 ? lm.initial_state(B) : carried;
      loss[mode] = lm.forward_backward(ids, targets, initial, &final_state[mode]);
      for (const auto& [name, p] : lm.named_parameters()) {
        grads[mode].emplace_back(name, p.grad().defined() ? clone(p.grad()) : Tensor());
      }
    }
    CHECK(loss[0] == doctest::Approx(loss[1]).epsilon(1e-12));
    CHECK_FALSE(final_state[0].at("slots").requires_grad());
    CHECK(max_abs(sub(final_state[0].at("slots"), final_state[1].at("slots"))) < 1e-12);
    for (size_t i = 0; i < grads[0].size(); ++i) {
      const auto& [name, mrbp] = grads[0][i];
      const Tensor& bptt = grads[1][i].second;
      INFO(name);
      const bool reaches_slots = name == "initial_slots" && round == 1;  // carried: detached
      REQUIRE(mrbp.defined() == bptt.defined());
      REQUIRE(bptt.defined() != reaches_slots);
      if (!bptt.defined()) continue;
      const double scale = max_abs(bptt);
      CHECK(scale > 0);
      CHECK(max_abs(sub(mrbp, bptt)) <= 1e-8 * scale);
    }
    carried = final_state[0];
  }
}

TEST_CASE("MemformerLM: MRBP's peak memory stays flat in the number of segments, BPTT's grows") {
  Generator gen(6);
  const int64_t B = 4, T = 32, V = 64;
  nn::LlamaConfig model = tiny_model(V, 64, 2);
  model.initializer_range = 0.02;
  MemformerLM lm(model, tiny_memory(8, T), &gen);
  const std::vector<int64_t> lengths = {2, 4, 8, 16};
  const std::vector<Tensor> ids = random_ids(16, B, T, V, &gen);
  const std::vector<Tensor> targets = targets_of(ids, V);

  auto peak_of = [&](int64_t S, bool mrbp) {
    lm.config.mrbp = mrbp;
    lm.zero_grad();
    const std::vector<Tensor> seg_ids(ids.begin(), ids.begin() + S);
    const std::vector<Tensor> seg_targets(targets.begin(), targets.begin() + S);
    const MemoryState initial = lm.initial_state(B);
    const size_t before = cpu::allocator_stats().allocated_bytes;
    cpu::reset_peak_stats();
    lm.forward_backward(seg_ids, seg_targets, initial);
    return double(cpu::allocator_stats().peak_allocated_bytes - before);
  };
  std::vector<double> mrbp, bptt;
  for (int64_t S : lengths) {
    mrbp.push_back(peak_of(S, true));
    bptt.push_back(peak_of(S, false));
    MESSAGE("S = " << S << ": peak above the start, MRBP " << mrbp.back() / 1024.0 << " KiB, BPTT "
                   << bptt.back() / 1024.0 << " KiB");
  }
  lm.zero_grad();
  // Flat: 8x the segments costs MRBP only its (B, K, C) slot snapshots; BPTT ~ linear.
  CHECK(mrbp.back() < 1.15 * mrbp.front());
  CHECK(bptt.back() > 4.0 * bptt.front());
  CHECK(bptt.back() > 4.0 * mrbp.back());
}

}  // namespace mnemo::memory

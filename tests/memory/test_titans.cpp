// TitansLM (memory/titans.h): the config parser, the state, causality of every variant (a
// later token never changes an earlier logit), gradients that reach the memory's projections
// only through the inner updates, and an f64 gradcheck of two segments.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "core/ops/random.h"
#include "memory/factory.h"
#include "memory/memory_test_util.h"
#include "memory/tasks.h"
#include "memory/titans.h"
#include "memory/titans_diagnostics.h"

namespace mnemo::memory {
namespace {

using test::max_abs_diff;

// hidden 8 (2 attention heads on 1 kv head), 11 tokens, weights at std 0.3.
TitansConfig tiny_titans(const std::string& variant, int64_t memory_tokens = 0,
                         const std::string& model = "linear") {
  TitansConfig c;
  c.layers = {-1};
  c.heads = 2;
  c.chunk_size = 2;
  c.update_batch = 4;
  c.memory_model = model;
  c.max_lr = 0.5;
  c.persistent_tokens = 2;
  c.memory_tokens = memory_tokens;
  c.variant = variant;
  c.segment_length = 7;
  return c;
}

std::shared_ptr<TitansLM> tiny_lm(const TitansConfig& cfg, uint64_t seed = 1) {
  Generator gen(seed);
  auto lm = std::make_shared<TitansLM>(test::micro_llama(2), cfg, &gen);
  lm->to(DType::f64);
  return lm;
}

std::vector<int64_t> ids_of(int64_t n, int64_t salt) {
  std::vector<int64_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[size_t(i)] = (i * 7 + salt * 3 + 1) % 11;
  return out;
}

}  // namespace

TEST_CASE("TitansConfig: from_json reads every key and names the bad one") {
  const TitansConfig d = TitansConfig::from_json(nlohmann::json::object());
  CHECK(d.variant == "mac");
  CHECK(d.chunk_size == 4);
  CHECK(d.memory_model == "linear");
  const TitansConfig c = TitansConfig::from_json({{"mechanism", "titans"},
                                                  {"layers", {0, 1}},
                                                  {"heads", 4},
                                                  {"chunk_size", 8},
                                                  {"update_batch", 16},
                                                  {"memory_model", "mlp"},
                                                  {"max_lr", 0.05},
                                                  {"max_forget", 0.25},
                                                  {"step_size", "exp"},
                                                  {"persistent_tokens", 0},
                                                  {"memory_tokens", 3},
                                                  {"conv_kernel", 4},
                                                  {"own_readout_bias", false},
                                                  {"variant", "mag"},
                                                  {"gate_init", -2.5},
                                                  {"read_from", "batch"},
                                                  {"window", 8},
                                                  {"gate_hold_steps", 7},
                                                  {"gate_open_loss", 1.5},
                                                  {"segment_length", 32}});
  CHECK(c.layers == std::vector<int64_t>{0, 1});
  CHECK(c.heads == 4);
  CHECK(c.chunk_size == 8);
  CHECK(c.update_batch == 16);
  CHECK(c.memory_model == "mlp");
  CHECK(c.max_lr == 0.05);
  CHECK(c.max_forget == 0.25);
  CHECK(d.max_forget == 1.0);
  CHECK(c.step_size == "exp");
  CHECK(c.persistent_tokens == 0);
  CHECK(c.memory_tokens == 3);
  CHECK(c.conv_kernel == 4);
  CHECK_FALSE(c.own_readout_bias);
  CHECK(d.conv_kernel == 2);
  CHECK(d.own_readout_bias);
  CHECK(c.variant == "mag");
  CHECK(c.gate_init == -2.5);
  CHECK(d.gate_init == -4);
  CHECK(c.read_from == "batch");
  CHECK(d.read_from == "chunk");
  CHECK(c.window == 8);
  CHECK(d.window == 0);
  CHECK(c.gate_hold_steps == 7);
  CHECK(d.gate_hold_steps == 0);
  CHECK(c.gate_open_loss == 1.5);
  CHECK(d.gate_open_loss == 0);
  CHECK(c.segment_length == 32);
  CHECK(d.resolved_update_batch() == 64);
  TitansConfig odd = d;
  odd.segment_length = 10;
  CHECK(odd.resolved_update_batch() == 12);  // rounded up to whole chunks

  CHECK_THROWS_WITH_AS(TitansConfig::from_json({{"chunk", 4}}),
                       doctest::Contains("unknown key 'chunk'"), Error);
  CHECK_THROWS_WITH_AS(TitansConfig::from_json({{"chunk_size", 2.5}}),
                       doctest::Contains("'chunk_size' must be an integer"), Error);
  CHECK_THROWS_WITH_AS(TitansConfig::from_json({{"variant", 1}}),
                       doctest::Contains("'variant' must be a string"), Error);
  CHECK_THROWS_WITH_AS(TitansConfig::from_json({{"layers", 1}}), doctest::Contains("'layers'"),
                       Error);
  CHECK_THROWS_WITH_AS(TitansConfig::from_json({{"gate_init", "shut"}}),
                       doctest::Contains("'gate_init'"), Error);
  CHECK_THROWS_WITH_AS(TitansConfig::from_json({{"own_readout_bias", 1}}),
                       doctest::Contains("'own_readout_bias' must be true or false"), Error);
  const nn::LlamaConfig model = test::micro_llama(2);
  const std::pair<nlohmann::json, const char*> bad[] = {
      {{{"variant", "mal"}}, "'variant'"},
      {{{"memory_model", "deep"}}, "'memory_model'"},
      {{{"step_size", "big"}}, "'step_size'"},
      {{{"chunk_size", 0}}, "'chunk_size'"},
      {{{"chunk_size", 4}, {"update_batch", 6}}, "'update_batch'"},
      {{{"heads", 3}}, "'heads'"},
      {{{"layers", {2}}}, "'layers'"},
      {{{"layers", {1, -1}}}, "'layers'"},
      {{{"max_lr", -1}}, "'max_lr'"},
      {{{"max_forget", 1.5}}, "'max_forget'"},
      {{{"max_forget", -0.1}}, "'max_forget'"},
      {{{"persistent_tokens", -1}}, "'persistent_tokens'"},
      {{{"conv_kernel", 0}}, "'conv_kernel'"},
      {{{"variant", "mag"}, {"memory_tokens", 2}}, "'memory_tokens'"},
      {{{"variant", "mag"}, {"gate_hold_steps", -1}}, "'gate_hold_steps' must be >= 0"},
      {{{"variant", "mag"}, {"window", -1}}, "'window' must be >= 0"},
      {{{"variant", "mac"}, {"window", 4}}, "'window' applies to variant"},
      {{{"variant", "mag"}, {"read_from", "segment"}}, "'read_from' must be"},
      {{{"variant", "mac"}, {"read_from", "batch"}}, "'read_from' applies to variant"},
      {{{"variant", "mac"}, {"gate_hold_steps", 10}}, "'gate_hold_steps' applies to variant"},
      {{{"variant", "mag"}, {"gate_hold_steps", 10}, {"gate_open_loss", -1}}, "'gate_open_loss'"},
      {{{"variant", "mag"}, {"gate_open_loss", 2}}, "'gate_open_loss' ends a hold early"},
      {{{"segment_length", 65}}, "'segment_length'"},
  };
  for (const auto& [json, names] : bad) {
    CAPTURE(json.dump());
    CHECK_THROWS_WITH_AS(TitansConfig::from_json(json).validate(model), doctest::Contains(names),
                         Error);
  }
  CHECK_THROWS_WITH_AS(make_segment_lm("titans", model, {{"chunk_sise", 2}}),
                       doctest::Contains("chunk_sise"), Error);
}

TEST_CASE("TitansLM: the state, segments of any length, and a wrong state") {
  auto lm = tiny_lm(tiny_titans("mac"));
  CHECK(lm->mechanism() == "titans");
  const MemoryState s0 = lm->initial_state(3);
  const int64_t P = lm->memory_blocks[1]->memory->model.num_weights();
  CHECK(s0.at("titans.1.weights").shape() == Shape{3, 2, P});
  CHECK(s0.at("titans.1.momentum").shape() == Shape{3, 2, P});
  CHECK(s0.at("titans.1.pending").shape() == Shape{3, 2, 8});
  CHECK(s0.at("titans.1.position").dtype() == DType::i64);
  CHECK(s0.find("titans.0.weights") == nullptr);  // layer 0 has no memory
  // Segments of 5, 7, 1 tokens: the chunks (2) and update batches (4) run across them.
  MemoryState state = s0;
  int64_t seen = 0;
  for (int64_t T : {5, 7, 1}) {
    const SegmentOutput out = lm->forward_segment(from_vector(ids_of(3 * T, T), {3, T}), state);
    CHECK(out.logits.shape() == Shape{3, T, 11});
    state = out.state;
    seen += T;
    CHECK(state.at("titans.1.position").to_vector<int64_t>() == std::vector<int64_t>(3, seen % 4));
  }
  CHECK(max_abs_diff(state.at("titans.1.weights"), s0.at("titans.1.weights")) > 1e-3);
  CHECK_THROWS_WITH_AS(lm->forward_segment(from_vector(ids_of(4, 0), {2, 2}), state),
                       doctest::Contains("titans.1.weights"), Error);
  CHECK_THROWS_WITH_AS(lm->forward_segment(from_vector(ids_of(8, 0), {1, 8}), s0),
                       doctest::Contains("segment_length"), Error);
}

TEST_CASE("TitansLM: a later token never changes an earlier logit (every variant)") {
  struct Case {
    const char* variant;
    int64_t memory_tokens;
    const char* model;
    int64_t window = 0;
    const char* read_from = "chunk";
  };
  const Case cases[] = {{"mac", 0, "linear"},
                        {"mac", 0, "attention"},
                        {"mac", 3, "mlp"},
                        {"mag", 0, "linear"},
                        {"mag", 0, "attention"},
                        {"mag", 0, "linear", 3},
                        {"mag", 0, "linear", 0, "batch"}};
  for (const Case& c : cases) {
    CAPTURE(c.variant);
    CAPTURE(c.memory_tokens);
    CAPTURE(c.model);
    CAPTURE(c.window);
    CAPTURE(c.read_from);
    TitansConfig cfg = tiny_titans(c.variant, c.memory_tokens, c.model);
    cfg.window = c.window;
    cfg.read_from = c.read_from;
    auto lm = tiny_lm(cfg);
    NoGradGuard no_grad;
    const int64_t T = 7;
    // A first segment fills the memory; the check runs on the second.
    const MemoryState state =
        lm->forward_segment(from_vector(ids_of(2 * T, 1), {2, T}), lm->initial_state(2)).state;
    const std::vector<int64_t> ids = ids_of(2 * T, 2);
    const Tensor base = lm->forward_segment(from_vector(ids, {2, T}), state).logits;
    for (int64_t t = 0; t + 1 < T; ++t) {
      CAPTURE(t);
      std::vector<int64_t> changed = ids;
      for (int64_t b = 0; b < 2; ++b) {
        auto& id = changed[size_t(b * T + t + 1)];
        id = (id + 5) % 11;
      }
      const Tensor logits = lm->forward_segment(from_vector(changed, {2, T}), state).logits;
      CHECK(max_abs_diff(narrow(logits, 1, 0, t + 1), narrow(base, 1, 0, t + 1)) < 1e-12);
      CHECK(max_abs_diff(narrow(logits, 1, t + 1, 1), narrow(base, 1, t + 1, 1)) > 1e-6);
    }
  }
}

TEST_CASE("TitansBlock: the mag window hides older rows from the attention, not the memory") {
  // One block, T = 8 rows, chunks of 2, window 3. With the gate held the block is x + a + mlp:
  // a change of row j reaches rows j .. j + 2 and no later one. With the gate open it also
  // reaches the rows of the chunks after j's through the memory's read-out.
  TitansConfig cfg = tiny_titans("mag");
  cfg.segment_length = 8;
  cfg.window = 3;
  Generator gen(5);
  const nn::LlamaConfig model = test::micro_llama(1);
  TitansBlock block(model, cfg, &gen);
  block.to(DType::f64);
  nn::RotaryEmbedding rotary(model.head_dim(), model.max_position_embeddings, model.rope_theta);
  const int64_t B = 2, T = 8, C = model.hidden_size, j = 1;
  const nn::RopeTables rope = rotary.tables({}, 0, T);
  const Tensor x = normal({B, T, C}, 0.0, 1.0, {DType::f64}, &gen);
  Tensor changed = clone(x);
  {
    NoGradGuard no_grad;
    Tensor row = narrow(changed, 1, j, 1);
    copy_(row, add(row, 0.5));
  }
  NoGradGuard no_grad;
  auto rows_moved = [&](bool held) {
    block.gate_held = held;
    NeuralMemory& memory = *block.memory;
    MemoryState in, out_a, out_b;
    memory.initial_state(B, "m", in);
    const Tensor a = block.forward(x, rope, in, "m", out_a);
    const Tensor b = block.forward(changed, rope, in, "m", out_b);
    std::vector<int64_t> moved;
    for (int64_t i = 0; i < T; ++i) {
      if (max_abs_diff(narrow(a, 1, i, 1), narrow(b, 1, i, 1)) > 1e-9) moved.push_back(i);
    }
    return moved;
  };
  CHECK(rows_moved(true) == std::vector<int64_t>{1, 2, 3});
  // Row 1 is in chunk 0: chunks 1.. read it from the memory (rows 2 .. 7).
  CHECK(rows_moved(false) == std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7});
  block.window = 0;  // the whole segment
  CHECK(rows_moved(true) == std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7});
}

TEST_CASE("TitansLM: gradients reach the memory's projections through the inner updates") {
  // MAC stores the block's output: W_k and W_v act on what later segments read. With the loss
  // on the last segment only, their gradient comes from the stored segments through the
  // updates and the carried weights (full BPTT); with one segment there is none.
  auto lm = tiny_lm(tiny_titans("mac"));
  const auto& memory = *lm->memory_blocks[1]->memory;
  const int64_t T = 6;
  for (int64_t segments : {1, 3}) {
    CAPTURE(segments);
    std::vector<Tensor> ids, targets;
    for (int64_t s = 0; s < segments; ++s) {
      ids.push_back(from_vector(ids_of(2 * T, s), {2, T}));
      std::vector<int64_t> t = ids_of(2 * T, s + 7);
      if (s + 1 < segments) std::fill(t.begin(), t.end(), -100);
      targets.push_back(from_vector(t, {2, T}));
    }
    lm->zero_grad();
    lm->forward_backward(ids, targets, lm->initial_state(2));
    for (const Tensor& w : {memory.key_proj->weight, memory.value_proj->weight,
                            memory.momentum_gate->weight, memory.forget_gate->bias}) {
      const double g = w.grad().defined() ? max_abs_diff(w.grad(), zeros_like(w.grad())) : 0.0;
      if (segments == 1) {
        CHECK(g == 0.0);
      } else {
        CHECK(g > 1e-6);
      }
    }
  }
}

TEST_CASE("TitansLM: the mag gate held shut leaves the read-out out, stores, and opens") {
  TitansConfig cfg = tiny_titans("mag");
  cfg.gate_hold_steps = 3;
  auto lm = tiny_lm(cfg);
  TitansBlock& block = *lm->memory_blocks[1];
  const int64_t T = 6;
  const Tensor ids = from_vector(ids_of(2 * T, 4), {2, T});
  // A first segment so that the memory has stored something to read.
  const MemoryState state = [&] {
    NoGradGuard no_grad;
    return lm->forward_segment(from_vector(ids_of(2 * T, 3), {2, T}), lm->initial_state(2)).state;
  }();
  auto run = [&](int64_t step) {
    NoGradGuard no_grad;
    lm->set_training_step(step);
    return lm->forward_segment(ids, state);
  };
  const SegmentOutput held = run(2);  // step 2 < 3: held
  CHECK(block.gate_held);
  const SegmentOutput open = run(3);  // opens at gate_init
  CHECK_FALSE(block.gate_held);
  // Held equals the gate's sigmoid at exactly 0 (bias -1e30): x + a, the read-out times 0.
  Tensor bias;
  {
    NoGradGuard no_grad;
    bias = clone(block.memory_gate->bias);
    fill_(block.memory_gate->bias, -1e30);
  }
  const SegmentOutput shut = run(3);
  {
    NoGradGuard no_grad;
    copy_(block.memory_gate->bias, bias);
  }
  CHECK(max_abs_diff(held.logits, shut.logits) < 1e-12);
  CHECK(max_abs_diff(held.logits, open.logits) > 1e-6);  // the read-out counts once open
  // The memory stores while held: the same state as with the gate open.
  for (const auto& [name, t] : open.state.tensors) {
    CAPTURE(name);
    CHECK(max_abs_diff(held.state.at(name), t) == 0.0);
  }
  // Held, neither the gate nor the memory gets a gradient; the attention does.
  lm->set_training_step(0);
  lm->zero_grad();
  lm->forward_backward({ids}, {from_vector(ids_of(2 * T, 9), {2, T})}, state);
  CHECK_FALSE(block.memory_gate->weight.grad().defined());
  CHECK_FALSE(block.memory_gate->bias.grad().defined());
  CHECK_FALSE(block.memory->key_proj->weight.grad().defined());
  CHECK(block.self_attn->q_proj->weight.grad().defined());
  // Without gate_hold_steps no step holds it.
  auto plain = tiny_lm(tiny_titans("mag"));
  plain->set_training_step(0);
  CHECK_FALSE(plain->memory_blocks[1]->gate_held);
  CHECK_THROWS_WITH_AS(lm->set_training_step(-1), doctest::Contains("training step"), Error);
}

TEST_CASE("TitansLM: the loss rule opens the held gate once the loss's average reaches it") {
  TitansConfig cfg = tiny_titans("mag");
  cfg.gate_hold_steps = 40;
  cfg.gate_open_loss = 1.0;
  auto lm = tiny_lm(cfg);
  const TitansBlock& block = *lm->memory_blocks[1];
  CHECK(std::isnan(lm->gate_loss_average()));
  // The average as titans.cpp keeps it: the first loss, then an EMA over 25 steps, in
  // millionths. Losses 2, then 0: the average is 2 * 0.96^n, at 1.0 or below from n = 17 on.
  std::vector<double> losses = {2.0};
  losses.resize(30, 0.0);
  double average = std::nan("");
  int64_t opens_after = -1;
  for (size_t i = 0; i < losses.size(); ++i) {
    lm->set_training_step(int64_t(i));
    CHECK(block.gate_held == (opens_after < 0));
    lm->observe_training_loss(losses[i]);
    if (opens_after < 0) {  // once open, the average stops: the rule is done
      average = std::isnan(average) ? losses[i] : average + (losses[i] - average) / 25;
      average = double(std::llround(average * 1e6)) * 1e-6;
    }
    CHECK(lm->gate_loss_average() == doctest::Approx(average).epsilon(1e-12));
    if (opens_after < 0 && average <= 1.0) opens_after = int64_t(i);
    CHECK(lm->gate_opened_by_loss() == (opens_after >= 0));
  }
  CHECK(opens_after == 17);
  lm->observe_training_loss(5.0);
  CHECK(lm->gate_loss_average() == doctest::Approx(average).epsilon(1e-12));
  // The rule's state is a checkpointed buffer: a model loaded from this one's state is open.
  auto loaded = tiny_lm(cfg, 2);
  loaded->set_training_step(0);
  CHECK(loaded->memory_blocks[1]->gate_held);
  loaded->load_state_dict(lm->state_dict());
  CHECK(loaded->gate_opened_by_loss());
  loaded->set_training_step(0);
  CHECK_FALSE(loaded->memory_blocks[1]->gate_held);
  // gate_hold_steps is the longest hold: a loss that never falls opens the gate at step 40.
  auto slow = tiny_lm(cfg);
  for (int64_t step = 0; step < 41; ++step) {
    slow->set_training_step(step);
    CHECK(slow->memory_blocks[1]->gate_held == (step < 40));
    slow->observe_training_loss(3.0);
  }
  CHECK_FALSE(slow->gate_opened_by_loss());
  // Without the rule there is no buffer and the loss is ignored; a bad loss is an error.
  auto plain = tiny_lm(tiny_titans("mag"));
  plain->observe_training_loss(0.5);
  CHECK_FALSE(plain->gate_hold.defined());
  CHECK(std::isnan(plain->gate_loss_average()));
  for (const auto& [name, t] : plain->state_dict()) CHECK(name != "gate_hold");
  CHECK_THROWS_WITH_AS(slow->observe_training_loss(std::nan("")),
                       doctest::Contains("training loss"), Error);
}

TEST_CASE("TitansLM: f64 gradcheck of two segments through the memory") {
  for (const char* variant : {"mac", "mag"}) {
    CAPTURE(variant);
    // The linear memory: each memory model's own path is checked in test_titans_memory.cpp;
    // here it is the LM's path through the memory (and a third of the finite differences).
    auto lm = tiny_lm(tiny_titans(variant, 0, "linear"));
    const TitansBlock& block = *lm->memory_blocks[1];
    const NeuralMemory& m = *block.memory;
    const Tensor a = from_vector(ids_of(10, 3), {2, 5}), b = from_vector(ids_of(12, 4), {2, 6});
    TensorList inputs = {m.initial_weights,    m.key_proj->weight, m.value_proj->weight,
                         m.query_proj->weight, m.step_gate->bias,  m.momentum_gate->weight,
                         m.forget_gate->bias,  block.persistent,   block.self_attn->k_proj->weight};
    if (block.memory_gate) inputs.push_back(block.memory_gate->bias);
    const auto fn = [&](const TensorList&) {
      const SegmentOutput first = lm->forward_segment(a, lm->initial_state(2));
      const SegmentOutput second = lm->forward_segment(b, first.state);
      return concat({reshape(first.logits, {-1}), reshape(second.logits, {-1})});
    };
    const GradcheckResult r = gradcheck(fn, inputs, {.eps = 1e-6, .atol = 1e-7, .rtol = 1e-5});
    INFO(r.message);
    CHECK(r.ok);
    CHECK(r.elements_checked > 250);
  }
}

TEST_CASE("diagnose_titans: gates, stored weights and the read-out's own score on recall") {
  const auto task = make_task("recall", 3, {{"segment-length", "24"}, {"local-items", "1"}});
  const nn::LlamaConfig lc = mnemo::test::tiny_llama({.vocab_size = task->vocab_size(),
                                                      .intermediate_size = 32,
                                                      .num_attention_heads = 2,
                                                      .num_key_value_heads = 2});
  for (const int64_t memory_tokens : {0, 2}) {
    CAPTURE(memory_tokens);
    TitansConfig cfg;
    cfg.variant = memory_tokens > 0 ? "mac" : "mag";
    cfg.memory_tokens = memory_tokens;
    cfg.segment_length = 24;
    Generator gen(5);
    TitansLM lm(lc, cfg, &gen);
    lm.train();
    const nlohmann::json d = diagnose_titans(lm, *task, 3, 2);
    CHECK(lm.is_training());  // the mode is restored
    const double wiped = d["far_score_wiped"].get<double>();
    CHECK((wiped >= 0 && wiped <= 1));
    const nlohmann::json& layer = d["layer.1"];
    for (const char* gate : {"theta", "eta", "alpha"}) {
      CAPTURE(gate);
      CHECK(layer[gate].get<double>() > 0);
      CHECK(layer[gate].get<double>() < 1);
    }
    CHECK(layer["stored_norm"].get<double>() > 0);
    // One read-out per token (mag) is scored on its own; learned queries' read-outs are not
    // per token.
    CHECK(layer.contains("readout_score") == (memory_tokens == 0));
    if (memory_tokens == 0) {
      const double readout = layer["readout_score"].get<double>();
      CHECK((readout >= 0 && readout <= 1));
    }
  }
}

}  // namespace mnemo::memory

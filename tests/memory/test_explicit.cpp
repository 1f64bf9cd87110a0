// ExplicitLM (memory/explicit.h, explicit_memory.h): the config; product-key top-K equals the
// brute-force top-K; the straight-through selection (forward exactly one-hot, the soft path's
// gradient, gradcheck); alpha = 0 is the plain Llama exactly; the LM loss reaches the router;
// editing an entry changes its representation and nothing else; the bank travels in the state
// dict; the supervised router term trains the router; an f64 gradcheck of the whole model.
#include <doctest/doctest.h>

#include <algorithm>
#include <set>
#include <vector>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "core/ops/random.h"
#include "memory/explicit.h"
#include "memory/factory.h"
#include "memory/memory_test_util.h"
#include "nn/llama.h"

namespace mnemo::memory {
namespace {

using test::max_abs_diff;

// A 4 x 4 bank of entries up to 3 tokens over the micro Llama's 11 tokens.
ExplicitConfig tiny_explicit(const std::string& keys = "learned") {
  ExplicitConfig c;
  c.bank_entries = 16;
  c.entry_length = 3;
  c.key_dim = 8;
  c.candidates = 3;
  c.keys = keys;
  c.fusion_hidden = 12;
  c.segment_length = 8;
  return c;
}

MemoryBank tiny_bank(const ExplicitConfig& c) {
  MemoryBank bank(4, c.entry_length, 0.0);
  for (int64_t e = 0; e < bank.entries(); ++e) {
    if (e == 5) continue;  // one free slot
    std::vector<int32_t> tokens;
    for (int64_t l = 0; l < 1 + e % 3; ++l) tokens.push_back(int32_t((e * 3 + l * 5 + 1) % 11));
    bank.set(e, tokens);
  }
  return bank;
}

std::shared_ptr<ExplicitLM> tiny_lm(const ExplicitConfig& cfg, uint64_t seed = 1,
                                    DType dtype = DType::f64) {
  Generator gen(seed);
  auto lm = std::make_shared<ExplicitLM>(test::micro_llama(2), cfg, &gen);
  lm->set_bank(tiny_bank(cfg));
  lm->to(dtype);
  return lm;
}

Tensor ids_of(int64_t B, int64_t T, int64_t salt) {
  std::vector<int64_t> out(size_t(B * T));
  for (int64_t i = 0; i < B * T; ++i) out[size_t(i)] = (i * 7 + salt * 3 + 1) % 11;
  return from_vector(out, {B, T});
}

double grad_norm(const Tensor& p) {
  return p.grad().defined() ? max_abs_diff(p.grad(), zeros_like(p.grad())) : 0.0;
}

TEST_CASE("ExplicitConfig: keys, defaults and errors that name the key") {
  const nn::LlamaConfig m = test::micro_llama(2);
  const ExplicitConfig c = ExplicitConfig::from_json({{"mechanism", "explicit"},
                                                      {"bank_entries", 64},
                                                      {"entry_length", 4},
                                                      {"keys", "content"},
                                                      {"candidates", 2},
                                                      {"router_weight", 0.5},
                                                      {"keep_mlp", true},
                                                      {"segment_length", 8}});
  CHECK(c.bank_entries == 64);
  CHECK(c.keys == "content");
  CHECK(c.keep_mlp);
  CHECK(ExplicitConfig::from_json(c.to_json()).to_json() == c.to_json());
  c.validate(m);
  auto bad = [&](nlohmann::json j, const std::string& key) {
    CAPTURE(key);
    try {
      ExplicitConfig::from_json(j).validate(m);
      FAIL("no error");
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find(key) != std::string::npos);
    }
  };
  bad({{"bank_entries", 50}}, "bank_entries");
  bad({{"key_dim", 7}}, "key_dim");
  bad({{"keys", "hashed"}}, "keys");
  bad({{"candidates", 0}}, "candidates");
  bad({{"freeze_ratio", 2}}, "freeze_ratio");
  bad({{"segment_length", 1000}}, "segment_length");
  bad({{"colour", 1}}, "colour");
  CHECK(mechanism_built_in("explicit"));
}

TEST_CASE("ExplicitMemory: product-key top-K equals the brute-force top-K over all entries") {
  for (int64_t n : {2, 5, 16}) {
    for (int64_t K : {1, 3, 4}) {
      if (K > n * n) continue;
      CAPTURE(n);
      CAPTURE(K);
      ExplicitConfig c;
      c.bank_entries = n * n;
      c.key_dim = 6;
      c.candidates = K;
      Generator gen(uint64_t(n * 10 + K));
      ExplicitMemory memory(8, c, 8, &gen, 0.3);
      memory.to(DType::f64);
      const int64_t M = 7;
      const Tensor q = randn({M, 6}, {DType::f64}, &gen);
      BankView view;
      view.side = n;
      Tensor scores, entries;
      memory.route(q, view, scores, entries, nullptr);
      // Brute force: every entry's score s1_i + s2_j.
      const Tensor rows = matmul(narrow(q, 1, 0, 3), transpose(memory.row_keys, 0, 1));
      const Tensor cols = matmul(narrow(q, 1, 3, 3), transpose(memory.col_keys, 0, 1));
      const Tensor all = reshape(unsqueeze(rows, 2) + unsqueeze(cols, 1), {M, n * n});
      const TopKResult want = topk(all, K, 1);
      CHECK(max_abs_diff(scores, want.values) < 1e-12);
      const Tensor e = contiguous(entries), w = contiguous(want.indices);
      for (int64_t i = 0; i < M * K; ++i) CHECK(e.data<int64_t>()[i] == w.data<int64_t>()[i]);
    }
  }
}

TEST_CASE("gumbel_select: forward exactly one-hot, backward the soft path's gradient") {
  Generator gen(3);
  const Tensor logits = randn({5, 4}, {DType::f64}, &gen);
  const Tensor g = gumbel_noise(5, 4, {DType::f64}, &gen);
  Tensor pick;
  const Tensor hard = gumbel_select(logits, g, 0.7, true, &pick);
  const Tensor hc = contiguous(hard), pc = contiguous(pick);
  for (int64_t m = 0; m < 5; ++m) {
    for (int64_t k = 0; k < 4; ++k) {
      CHECK(hc.data<double>()[m * 4 + k] == (k == pc.data<int64_t>()[m] ? 1.0 : 0.0));
    }
  }
  // The straight-through gradient is the soft selection's.
  const Tensor weights = randn({5, 4}, {DType::f64}, &gen);
  Tensor x = clone(logits);
  x.set_requires_grad(true);
  backward(sum(gumbel_select(x, g, 0.7, true) * weights));
  const Tensor hard_grad = clone(x.grad());
  x.set_grad(Tensor());
  backward(sum(gumbel_select(x, g, 0.7, false) * weights));
  CHECK(max_abs_diff(hard_grad, x.grad()) < 1e-15);
  CHECK(max_abs_diff(hard_grad, zeros_like(hard_grad)) > 1e-3);
  // And the soft path is a smooth function of the logits: gradcheck.
  Tensor leaf = clone(logits);
  leaf.set_requires_grad(true);
  const auto fn = [&](const TensorList& in) { return gumbel_select(in[0], g, 0.7, false); };
  const GradcheckResult r = gradcheck(fn, {leaf}, {.eps = 1e-6, .atol = 1e-8, .rtol = 1e-6});
  INFO(r.message);
  CHECK(r.ok);
}

TEST_CASE("ExplicitLM: alpha = 0 is the project's Llama exactly") {
  for (bool keep_mlp : {true, false}) {
    CAPTURE(keep_mlp);
    ExplicitConfig c = tiny_explicit();
    c.keep_mlp = keep_mlp;
    c.alpha_bias = -1;  // sigmoid(...) - 1 < 0: clamped to 0
    Generator gen(7);
    nn::LlamaForCausalLM llama(test::micro_llama(2), &gen);
    if (!keep_mlp) {
      // The memory block replaces layer 1's MLP: the same as a Llama whose MLP adds nothing.
      NoGradGuard no_grad;
      copy_(llama.model->layers[1]->mlp->down_proj->weight,
            zeros_like(llama.model->layers[1]->mlp->down_proj->weight));
    }
    auto lm = std::make_shared<ExplicitLM>(test::micro_llama(2), c, &gen);
    lm->set_bank(tiny_bank(c));
    lm->load_state_dict(llama.state_dict(), /*strict=*/false);
    for (bool training : {false, true}) {
      lm->train(training);
      nn::LMInput input;
      input.input_ids = ids_of(2, 8, 1);
      const Tensor want = llama.forward(input).logits;
      const Tensor got = lm->forward_segment(input.input_ids, {}).logits;
      CHECK(max_abs_diff(got, want) == 0.0);
      const Tensor alpha = lm->last_retrieval()[0].alpha;
      CHECK(max_abs_diff(alpha, zeros_like(alpha)) == 0.0);
    }
  }
}

TEST_CASE("ExplicitLM: the LM loss alone reaches the query projection and the keys") {
  for (const char* keys : {"learned", "content"}) {
    CAPTURE(keys);
    ExplicitConfig c = tiny_explicit(keys);
    c.router_weight = 0;
    auto lm = tiny_lm(c);
    lm->train();
    lm->zero_grad();
    lm->forward_backward({ids_of(2, 8, 1)}, {ids_of(2, 8, 2)}, {});
    const ExplicitMemory& memory = *lm->memory_blocks[1]->memory;
    CHECK(grad_norm(memory.q_proj->weight) > 1e-8);
    if (c.keys == "learned") {
      CHECK(grad_norm(memory.row_keys) > 1e-8);
      CHECK(grad_norm(memory.col_keys) > 1e-8);
    } else {
      CHECK(grad_norm(memory.key_proj->weight) > 1e-8);
      CHECK(grad_norm(memory.position_scale) > 1e-8);
    }
    CHECK(lm->last_router_loss == 0.0);
  }
}

TEST_CASE("ExplicitLM: editing an entry changes its representation and nothing else") {
  auto lm = tiny_lm(tiny_explicit());
  std::vector<int64_t> all(16);
  for (int64_t e = 0; e < 16; ++e) all[size_t(e)] = e;
  const Tensor before = lm->represent_entries(all);
  CHECK(max_abs_diff(narrow(before, 0, 5, 1), zeros({1, 8})) == 0.0);  // the free slot
  lm->bank().set(9, {2, 4});
  lm->bank_changed();
  const Tensor after = lm->represent_entries(all);
  for (int64_t e = 0; e < 16; ++e) {
    CAPTURE(e);
    const double d = max_abs_diff(narrow(after, 0, e, 1), narrow(before, 0, e, 1));
    if (e == 9) {
      CHECK(d > 1e-6);
    } else {
      CHECK(d == 0.0);
    }
  }
  // The representation of a token list is the one the bank entry gets.
  CHECK(max_abs_diff(lm->represent({{2, 4}}), narrow(after, 0, 9, 1)) < 1e-6);
  // A token outside the vocabulary is an error naming it.
  MemoryBank bad = lm->bank();
  bad.set(0, {11});
  CHECK_THROWS_WITH_AS(lm->set_bank(bad), doctest::Contains("vocabulary"), Error);
}

TEST_CASE("ExplicitLM: product keys never pick a free entry while a written one is in reach") {
  // Odd entries free: among any 3 x 3 rows and columns of the 4 x 4 grid at least one
  // column is even, so a written entry is always among the 9 combinations.
  auto lm = tiny_lm(tiny_explicit());
  MemoryBank bank = lm->bank();
  for (int64_t e = 1; e < 16; e += 2) bank.clear(e);
  lm->set_bank(bank);
  for (bool training : {false, true}) {
    lm->train(training);
    lm->forward_segment(ids_of(2, 8, 5), {});
    const Tensor sel = contiguous(lm->last_retrieval()[0].selected);
    for (int64_t i = 0; i < 16; ++i) CHECK(sel.data<int64_t>()[i] % 2 == 0);
  }
}

TEST_CASE("ExplicitLM: the bank and the noise stream travel in the state dict") {
  auto a = tiny_lm(tiny_explicit(), 1, DType::f32);
  a->bank().set(3, {7, 7, 7});
  a->bank().record_use({3, 4});
  a->bank_changed();
  a->train();
  a->forward_segment(ids_of(1, 4, 0), {});  // advances the noise stream
  auto b = tiny_lm(tiny_explicit(), 2, DType::f32);
  b->load_state_dict(a->state_dict());
  CHECK(b->bank().entry(3) == std::vector<int32_t>{7, 7, 7});
  CHECK(b->bank().last_used() == a->bank().last_used());
  CHECK(b->bank().written() == a->bank().written());
  CHECK(b->bank().clock() == a->bank().clock());
  CHECK(b->bank().is_free(5));
  // Same weights, same noise: the same training forward.
  b->train();
  const Tensor la = a->forward_segment(ids_of(2, 8, 3), {}).logits;
  const Tensor lb = b->forward_segment(ids_of(2, 8, 3), {}).logits;
  CHECK(max_abs_diff(la, lb) == 0.0);
  CHECK(a->last_retrieval()[0].selected.shape() == Shape{2, 8});
}

TEST_CASE("ExplicitLM: the supervised router term teaches the router where to read") {
  for (const char* keys : {"learned", "content"}) {
    CAPTURE(keys);
    auto lm = tiny_lm(tiny_explicit(keys), 4, DType::f32);
    lm->train();
    // Position t of row b should read entry (b * 8 + t) % 16 (never the free slot 5).
    std::vector<int64_t> want(16);
    for (int64_t i = 0; i < 16; ++i) want[size_t(i)] = i == 5 ? 6 : i;
    const Tensor target = from_vector(want, {2, 8});
    std::vector<Tensor> params = lm->parameters();
    double first = 0, last = 0;
    for (int step = 0; step < 150; ++step) {
      lm->zero_grad();
      lm->set_router_targets({target});
      lm->forward_backward({ids_of(2, 8, 0)}, {ids_of(2, 8, 1)}, {});
      if (step == 0) first = lm->last_router_loss;
      last = lm->last_router_loss;
      NoGradGuard no_grad;
      for (Tensor& p : params) {
        if (p.grad().defined()) sub_(p, p.grad() * 0.05);
      }
    }
    CHECK(first > 0);
    CHECK(last < 0.3 * first);
    lm->train(false);
    lm->forward_segment(ids_of(2, 8, 0), {});
    const Tensor sel = contiguous(lm->last_retrieval()[0].selected);
    int hits = 0;
    for (int64_t i = 0; i < 16; ++i) hits += sel.data<int64_t>()[i] == want[size_t(i)];
    // Content keys score a linear map of the entries' (fixed, 8-wide) pooled embeddings: an
    // entry inside the others' convex hull can never come out on top, so fewer are reachable
    // here than with learned keys (at width 128 on the facts task both reach a 0.98+ hit rate).
    CHECK(hits >= (std::string(keys) == "learned" ? 14 : 11));
  }
}

TEST_CASE("ExplicitLM: f64 gradcheck through the memory layer (evaluation path)") {
  for (const char* keys : {"learned", "content"}) {
    CAPTURE(keys);
    ExplicitConfig c = tiny_explicit(keys);
    c.alpha_bias = 0.2;  // alpha strictly inside (0, 1)
    auto lm = tiny_lm(c);
    lm->train(false);
    const ExplicitMemoryBlock& block = *lm->memory_blocks[1];
    const ExplicitMemory& m = *block.memory;
    const TensorList inputs = {lm->embed_tokens->weight,
                               m.gate_proj->weight,
                               m.up_proj->weight,
                               m.down_proj->weight,
                               m.alpha_in->weight,
                               m.alpha_out->bias,
                               m.alpha_bias,
                               block.self_attn->q_proj->weight};
    const Tensor ids = ids_of(2, 5, 2);
    const auto fn = [&](const TensorList&) { return lm->forward_segment(ids, {}).logits; };
    const GradcheckResult r = gradcheck(fn, inputs, {.eps = 1e-6, .atol = 1e-7, .rtol = 1e-5});
    INFO(r.message);
    CHECK(r.ok);
    CHECK(r.elements_checked > 250);
  }
}

TEST_CASE("ExplicitLM: freeze_backbone trains only the memory, the fusion and the norms") {
  ExplicitConfig c = tiny_explicit();
  c.freeze_backbone = true;
  auto lm = tiny_lm(c);
  lm->train();
  lm->forward_backward({ids_of(2, 8, 1)}, {ids_of(2, 8, 2)}, {});
  for (const auto& [name, p] : lm->named_parameters()) {
    CAPTURE(name);
    const bool memory = name.find(".memory.") != std::string::npos;
    const bool norm = name.find("norm") != std::string::npos;
    CHECK(p.requires_grad() == (memory || norm));
    if (!memory && !norm) CHECK(!p.grad().defined());
  }
}

}  // namespace
}  // namespace mnemo::memory

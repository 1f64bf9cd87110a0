// LlamaForCausalLM: HF tensor names, state_dict round trip, loss vs forward, cache decoding,
// a few SGD steps by hand, and f64 gradients against finite differences.
#include <doctest/doctest.h>

#include <string>

#include "autograd/engine.h"
#include "autograd/gradcheck.h"
#include "nn/llama.h"
#include "nn_test_util.h"
#include "support/tiny_llama.h"

namespace mnemo::nn {
namespace {

using test::check_error;
using test::max_abs_diff;

LlamaConfig tiny_config(bool tied = true) {
  return mnemo::test::tiny_llama({.tie_word_embeddings = tied});
}

Tensor ids_of(const std::vector<int64_t>& values, int64_t B) {
  return from_vector(values, {B, int64_t(values.size()) / B});
}

// The names HF's LlamaForCausalLM.state_dict() lists (save_pretrained drops a tied lm_head).
std::vector<std::string> hf_names(int64_t layers, bool tied) {
  std::vector<std::string> names{"model.embed_tokens.weight"};
  for (int64_t i = 0; i < layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    for (const char* n : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                          "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
                          "input_layernorm", "post_attention_layernorm"}) {
      names.push_back(p + n + ".weight");
    }
  }
  names.push_back("model.norm.weight");
  if (!tied) names.push_back("lm_head.weight");
  return names;
}

TEST_CASE("LlamaForCausalLM: state_dict names are exactly HF's, tied and untied") {
  for (bool tied : {true, false}) {
    CAPTURE(tied);
    LlamaForCausalLM lm(tiny_config(tied));
    std::vector<std::string> names;
    for (const auto& [name, t] : lm.state_dict()) names.push_back(name);
    CHECK(names == hf_names(2, tied));
    const NamedTensors sd = lm.state_dict();
    CHECK(sd[1].second.shape() == Shape{16, 16});  // q_proj (H*D, C)
    CHECK(sd[2].second.shape() == Shape{8, 16});   // k_proj (Hkv*D, C)
    CHECK(sd[5].second.shape() == Shape{24, 16});  // gate_proj (I, C)
    CHECK(lm.output_weight().is_same(tied ? lm.model->embed_tokens->weight : lm.lm_head->weight));
    CHECK(lm.num_parameters() ==
          32 * 16 * (tied ? 1 : 2) + 16 + 2 * (16 * 16 * 2 + 8 * 16 * 2 + 3 * 24 * 16 + 2 * 16));
  }
}

TEST_CASE("LlamaConfig: validate names the field") {
  LlamaConfig c = tiny_config();
  c.hidden_size = 18;
  check_error([&] { c.validate(); }, {"hidden_size", "num_attention_heads"});
  c = tiny_config();
  c.num_key_value_heads = 3;
  check_error([&] { c.validate(); }, {"num_key_value_heads"});
  c = tiny_config();
  c.hidden_act = "gelu";
  check_error([&] { LlamaForCausalLM lm(c); }, {"hidden_act", "gelu"});
  c = tiny_config();
  c.vocab_size = 0;
  check_error([&] { c.validate(); }, {"vocab_size"});
}

TEST_CASE("LlamaForCausalLM: load_state_dict round trip reproduces the logits; errors name keys") {
  Generator g1(1), g2(2);
  LlamaForCausalLM a(tiny_config(false), &g1), b(tiny_config(false), &g2);
  const Tensor ids = ids_of({1, 5, 9, 2, 31, 0, 7, 7}, 2);
  LMInput in;
  in.input_ids = ids;
  CHECK(max_abs_diff(a.forward(in).logits, b.forward(in).logits) > 1e-3);
  b.load_state_dict(a.state_dict());
  CHECK(max_abs_diff(a.forward(in).logits, b.forward(in).logits) == 0);

  NamedTensors sd = a.state_dict();
  sd.erase(sd.begin() + 3);
  check_error([&] { b.load_state_dict(sd); },
              {"missing key 'model.layers.0.self_attn.v_proj.weight'"});
  sd = a.state_dict();
  sd[0].second = zeros({33, 16});
  check_error([&] { b.load_state_dict(sd); }, {"'model.embed_tokens.weight'", "(33, 16)"});
}

TEST_CASE("LlamaForCausalLM: loss equals cross_entropy of the forward logits") {
  LlamaForCausalLM lm(tiny_config());
  const Tensor ids = ids_of({3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8}, 2);
  const Tensor targets = ids_of({1, 4, 1, 5, 9, -100, 6, 5, 3, 5, 8, -100}, 2);
  LMInput in;
  in.input_ids = ids;
  const Tensor logits = lm.forward(in).logits;  // (2, 6, 32)
  CHECK(logits.shape() == Shape{2, 6, 32});
  // Independent reference: -log softmax at the target, averaged over the 10 kept positions.
  const Tensor logp = log_softmax(logits, -1);
  double total = 0;
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t t = 0; t < 6; ++t)
      if (targets.at({b, t}) != -100) total -= logp.at({b, t, int64_t(targets.at({b, t}))});
  CHECK(lm.loss(ids, targets).item() == doctest::Approx(total / 10).epsilon(1e-5));
  check_error([&] { lm.loss(ids, ids_of({1, 2, 3}, 1)); }, {"targets"});
}

TEST_CASE("LlamaForCausalLM: greedy-style decoding with the KV cache equals the full forward") {
  LlamaForCausalLM lm(tiny_config(), nullptr);
  const Tensor ids = ids_of({3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7}, 2);  // (2, 7)
  LMInput full;
  full.input_ids = ids;
  const Tensor expect = lm.forward(full).logits;
  KVCache cache = lm.make_cache();
  std::vector<Tensor> pieces;
  for (int64_t t = 0; t < 7; t += (t == 0 ? 4 : 1)) {  // a 4-token prompt, then one at a time
    LMInput step;
    step.input_ids = narrow(ids, 1, t, t == 0 ? 4 : 1);
    step.cache = &cache;
    pieces.push_back(lm.forward(step).logits);
  }
  CHECK(cache.length() == 7);
  CHECK(max_abs_diff(concat(pieces, 1), expect) < 1e-5);
  cache.clear();
  CHECK(cache.length() == 0);
}

TEST_CASE("LlamaForCausalLM: inputs_embeds, position_ids and hidden states") {
  LlamaForCausalLM lm(tiny_config());
  const Tensor ids = ids_of({3, 1, 4, 1, 5, 9}, 2);
  LMInput by_ids;
  by_ids.input_ids = ids;
  by_ids.output_hidden_states = true;
  const LMOutput a = lm.forward(by_ids);
  CHECK(a.hidden_states.size() == 3);
  CHECK(max_abs_diff(a.hidden_states[0], embedding(lm.model->embed_tokens->weight, ids)) == 0);
  CHECK(max_abs_diff(lm.model->norm->forward(a.hidden_states[2]), a.last_hidden) == 0);

  LMInput by_embeds;
  by_embeds.inputs_embeds = a.hidden_states[0];
  by_embeds.position_ids = from_vector(std::vector<int64_t>{0, 1, 2}, {3});
  CHECK(max_abs_diff(lm.forward(by_embeds).logits, a.logits) == 0);
  LMInput shifted = by_embeds;
  shifted.position_ids = from_vector(std::vector<int64_t>{5, 6, 7, 0, 1, 2}, {2, 3});
  const Tensor s = lm.forward(shifted).logits;
  CHECK(max_abs_diff(narrow(s, 0, 1, 1), narrow(a.logits, 0, 1, 1)) < 1e-6);
  // RoPE is relative: shifting every position changes only rounding.
  CHECK(max_abs_diff(narrow(s, 0, 0, 1), narrow(a.logits, 0, 0, 1)) < 1e-4);
  LMInput both = by_ids;
  both.inputs_embeds = a.hidden_states[0];
  check_error([&] { lm.forward(both); }, {"exactly one"});
}

TEST_CASE("LlamaForCausalLM: loss falls on a repeated sequence under hand-written SGD") {
  Generator gen(5);
  LlamaForCausalLM lm(tiny_config(false), &gen);
  std::vector<int64_t> seq;
  for (int64_t i = 0; i < 17; ++i) seq.push_back((i * 7) % 11);
  const Tensor all = from_vector(seq, {1, 17});
  const Tensor ids = narrow(all, 1, 0, 16), targets = narrow(all, 1, 1, 16);
  double first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    lm.zero_grad();
    const Tensor loss = lm.loss(ids, targets);
    backward(loss);
    if (step == 0) first = loss.item();
    last = loss.item();
    NoGradGuard no_grad;
    for (const Tensor& p : lm.parameters()) {
      REQUIRE(p.grad().defined());
      sub_(p, mul(p.grad(), 0.5));
    }
  }
  CHECK(first == doctest::Approx(std::log(32.0)).epsilon(0.05));  // ~uniform at init
  CHECK(last < 0.5 * first);
}

TEST_CASE("LlamaForCausalLM: f64 gradients match finite differences (1 layer, hidden 8)") {
  // initializer_range 0.5: large enough that every path matters.
  LlamaConfig c = mnemo::test::tiny_llama({.vocab_size = 11,
                                           .hidden_size = 8,
                                           .num_hidden_layers = 1,
                                           .max_position_embeddings = 16,
                                           .initializer_range = 0.5});
  for (bool tied : {true, false}) {
    CAPTURE(tied);
    c.tie_word_embeddings = tied;
    Generator gen(11);
    LlamaForCausalLM lm(c, &gen);
    lm.to(DType::f64);
    {
      NoGradGuard g;  // norms away from 1 so their gradients are exercised
      for (const auto& [name, p] : lm.named_parameters())
        if (name.find("norm") != std::string::npos) copy_(p, uniform(p.shape(), 0.5, 1.5));
    }
    const Tensor ids = ids_of({1, 4, 9, 2, 7, 3, 0, 10}, 2);
    const Tensor targets = ids_of({4, 9, 2, -100, 3, 0, 10, 5}, 2);
    const std::vector<Tensor> params = lm.parameters();
    // The inputs are the parameters themselves: gradcheck perturbs them in place.
    const GradcheckResult r = gradcheck([&](const TensorList&) { return lm.loss(ids, targets); },
                                        params, {1e-6, 1e-7, 1e-5});
    CHECK_MESSAGE(r.ok, r.message);
    CHECK(r.elements_checked == lm.num_parameters());
  }
}

}  // namespace
}  // namespace mnemo::nn

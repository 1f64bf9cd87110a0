// A whole training step of a small Llama on the GPU against the same step on the CPU: the
// loss, every parameter's gradient and the weights after AdamW must agree, and two identical
// steps on the GPU must give bitwise-identical results (the backend uses no atomics).
//
// This exercises the ops in the combination a transformer uses them (embedding gather and its
// scatter backward, fused q/k/v products, RoPE, GQA attention, RMSNorm, SwiGLU, the fused
// cross-entropy, AdamW) rather than one at a time.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/ops.h"
#include "compare.h"
#include "core/ops/random.h"
#include "core/ops/view.h"
#include "nn/llama.h"
#include "optim/adamw.h"
#include "optim/param_groups.h"

namespace mnemo {
namespace {

using cuda_test::kGpu;

nn::LlamaConfig small_config() {
  nn::LlamaConfig c;
  c.vocab_size = 97;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 64;
  c.tie_word_embeddings = false;
  return c;
}

struct StepResult {
  double loss = 0;
  nn::NamedTensors grads;   // on the CPU
  nn::NamedTensors params;  // after the optimizer step, on the CPU
};

// One step (forward, backward, AdamW) of a model initialised from `seed`, on `device`.
StepResult train_step(uint64_t seed, Device device, DType dtype, const Tensor& ids,
                      const Tensor& targets) {
  Generator gen(seed);
  nn::LlamaForCausalLM lm(small_config(), &gen);
  lm.to(dtype);
  lm.to(device);
  optim::AdamW adamw(optim::decay_groups(lm.named_parameters(), 0.1), 1e-2);
  const Tensor loss = lm.loss(to(ids, device), to(targets, device));
  backward(loss);
  StepResult r;
  r.loss = loss.item();
  for (const auto& [name, p] : lm.named_parameters()) {
    REQUIRE(p.grad().defined());
    r.grads.emplace_back(name, to(p.grad(), Device::cpu()));
  }
  adamw.step();
  for (const auto& [name, p] : lm.named_parameters()) {
    r.params.emplace_back(name, to(p, Device::cpu()));
  }
  return r;
}

}  // namespace

TEST_CASE("cuda: a Llama training step on the GPU matches the CPU, f32 and bf16") {
  const uint64_t seed = cuda_test::fresh_seed();
  CAPTURE(seed);
  Generator gen(seed + 1);
  const Tensor tokens = randint(0, small_config().vocab_size, {3, 18}, {DType::i64}, &gen);
  const Tensor ids = narrow(tokens, 1, 0, 17), targets = narrow(tokens, 1, 1, 17);
  for (DType dtype : {DType::f32, DType::bf16}) {
    CAPTURE(dtype_name(dtype));
    const StepResult cpu = train_step(seed, Device::cpu(), dtype, ids, targets);
    const StepResult gpu = train_step(seed, kGpu, dtype, ids, targets);
    // A graph of ~40 ops: rounding differences add up, so the bound is 10x one op's.
    const double tol = dtype == DType::f32 ? 1e-4 : 5e-2;
    CHECK(gpu.loss == doctest::Approx(cpu.loss).epsilon(dtype == DType::f32 ? 1e-5 : 1e-2));
    REQUIRE(gpu.grads.size() == cpu.grads.size());
    for (size_t i = 0; i < cpu.grads.size(); ++i) {
      CAPTURE(cpu.grads[i].first);
      CHECK(gpu.grads[i].first == cpu.grads[i].first);
      const double error = cuda_test::rel_error(gpu.grads[i].second, cpu.grads[i].second);
      CAPTURE(error);
      CHECK(error < tol);
    }
    for (size_t i = 0; i < cpu.params.size(); ++i) {
      CAPTURE(cpu.params[i].first);
      const double error = cuda_test::rel_error(gpu.params[i].second, cpu.params[i].second);
      CAPTURE(error);
      CHECK(error < tol);
    }
  }
}

TEST_CASE("cuda: two identical training steps on the GPU are bitwise identical") {
  const uint64_t seed = cuda_test::fresh_seed();
  CAPTURE(seed);
  Generator gen(seed + 1);
  const Tensor tokens = randint(0, small_config().vocab_size, {4, 33}, {DType::i64}, &gen);
  const Tensor ids = narrow(tokens, 1, 0, 32), targets = narrow(tokens, 1, 1, 32);
  const StepResult a = train_step(seed, kGpu, DType::f32, ids, targets);
  const StepResult b = train_step(seed, kGpu, DType::f32, ids, targets);
  CHECK(a.loss == b.loss);
  for (size_t i = 0; i < a.grads.size(); ++i) {
    CAPTURE(a.grads[i].first);
    CHECK(a.grads[i].second.to_vector<float>() == b.grads[i].second.to_vector<float>());
    CHECK(a.params[i].second.to_vector<float>() == b.params[i].second.to_vector<float>());
  }
}

}  // namespace mnemo

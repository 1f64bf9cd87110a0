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
#include "support/tiny_llama.h"

namespace mnemo {
namespace {

using namespace cuda_test;  // tests/cuda/compare.h

// Untied embeddings, 4 heads of dim 16 on 2 key/value heads, SwiGLU 96.
nn::LlamaConfig small_config() {
  return test::tiny_llama({.vocab_size = 97, .hidden_size = 64, .num_attention_heads = 4});
}

struct StepResult {
  double loss = 0;
  nn::NamedTensors initial;  // the weights before the step, on the CPU
  nn::NamedTensors grads;    // on the CPU
  nn::NamedTensors params;   // after the optimizer step, on the CPU
};

// One step (forward, backward, AdamW) of a model initialised from `seed`, on `device`.
StepResult train_step(uint64_t seed, Device device, DType dtype, const Tensor& ids,
                      const Tensor& targets) {
  Generator gen(seed);
  nn::LlamaForCausalLM lm(small_config(), &gen);
  lm.to(dtype);
  lm.to(device);
  optim::AdamW adamw(optim::decay_groups(lm.named_parameters(), 0.1), 1e-2);
  StepResult r;
  for (const auto& [name, p] : lm.named_parameters()) {
    r.initial.emplace_back(name, to(p, Device::cpu()));
  }
  const Tensor loss = lm.loss(to(ids, device), to(targets, device));
  backward(loss);
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
  const StepResult cpu = train_step(seed, Device::cpu(), DType::f32, ids, targets);

  SUBCASE("f32: the same step within rounding") {
    const StepResult gpu = train_step(seed, kGpu, DType::f32, ids, targets);
    CHECK(gpu.loss == doctest::Approx(cpu.loss).epsilon(1e-5));
    REQUIRE(gpu.grads.size() == cpu.grads.size());
    for (size_t i = 0; i < cpu.grads.size(); ++i) {
      CAPTURE(cpu.grads[i].first);
      CHECK(gpu.grads[i].first == cpu.grads[i].first);
      // A graph of ~40 ops: rounding differences add up, so 10x one op's bound.
      const double error = cuda_test::rel_error(gpu.grads[i].second, cpu.grads[i].second);
      CAPTURE(error);
      CHECK(error < 1e-4);
    }
    // AdamW's update m / (sqrt(v) + eps) is about sign(g) * lr for every element, however
    // small its gradient, so the step amplifies the relative error of tiny gradient elements:
    // after one step the two devices' weights differ by up to ~2e-3 normwise, depending on the
    // draw. So the GPU's step is checked on its own: the CPU's AdamW applied to the GPU's
    // gradients must give the GPU's new weights.
    nn::NamedTensors replay;
    for (size_t i = 0; i < gpu.initial.size(); ++i) {
      Tensor p = core::clone(gpu.initial[i].second);  // a fresh leaf, outside the tape
      p.set_requires_grad(true);
      p.set_grad(gpu.grads[i].second);
      replay.emplace_back(gpu.initial[i].first, p);
    }
    optim::AdamW cpu_adamw(optim::decay_groups(replay, 0.1), 1e-2);
    cpu_adamw.step();
    for (size_t i = 0; i < replay.size(); ++i) {
      CAPTURE(replay[i].first);
      const double error = cuda_test::rel_error(gpu.params[i].second, replay[i].second);
      CAPTURE(error);
      CHECK(error < 1e-5);  // one op's f32 bound
    }
  }

  SUBCASE("bf16: the GPU's bf16 step is as close to the f32 step as the CPU's bf16 step") {
    // bf16 keeps 8 significant bits, and the two backends round at different points (cuBLASLt
    // and the f32 accumulations of the kernels vs the CPU's), so bf16 gradients of the two
    // devices differ by more than any fixed bound on one op. What must hold is that the GPU
    // is not less accurate: both are measured against the f32 step.
    const StepResult cpu16 = train_step(seed, Device::cpu(), DType::bf16, ids, targets);
    const StepResult gpu16 = train_step(seed, kGpu, DType::bf16, ids, targets);
    CHECK(gpu16.loss == doctest::Approx(cpu.loss).epsilon(2e-2));
    for (size_t i = 0; i < cpu.grads.size(); ++i) {
      CAPTURE(cpu.grads[i].first);
      const double cpu_error = cuda_test::rel_error(cpu16.grads[i].second, cpu.grads[i].second);
      const double gpu_error = cuda_test::rel_error(gpu16.grads[i].second, cpu.grads[i].second);
      CAPTURE(cpu_error);
      CAPTURE(gpu_error);
      CHECK(gpu_error <= 2 * cpu_error + 0.02);
      CHECK(gpu_error < 0.25);
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

// A whole Llama under ExactGradGuard: the gradients of a batch of sequences are the same bits
// whether the batch goes through one backward or is split by sequences over several (what
// data-parallel ranks and gradient accumulation do), with tied and untied embeddings. The
// trainer relies on this for "N ranks train exactly like one process" (train/lib/trainer.cpp).
#include <doctest/doctest.h>

#include <cstring>

#include "autograd/engine.h"
#include "autograd/exact_grad.h"
#include "nn/llama.h"
#include "support/tiny_llama.h"

using namespace mnemo;
using namespace mnemo::nn;

namespace {

LlamaConfig exact_tiny_config(bool tied) {
  return mnemo::test::tiny_llama(
      {.vocab_size = 40, .max_position_embeddings = 16, .tie_word_embeddings = tied});
}

// Gradients of the mean loss over all B sequences, computed over the given [first, count)
// slices of sequences, each its own backward with the global scale.
std::vector<Tensor> llama_grads(const LlamaForCausalLM& lm, const Tensor& ids,
                                const Tensor& targets,
                                const std::vector<std::pair<int64_t, int64_t>>& slices) {
  const int64_t T = ids.size(1);
  const double scale = 1.0 / double(ids.numel());
  for (Tensor p : lm.parameters()) p.set_grad(Tensor());
  for (auto [first, count] : slices) {
    const Tensor loss =
        lm.loss(narrow(ids, 0, first, count), narrow(targets, 0, first, count), Reduction::sum);
    autograd::ExactGradGuard exact(T);
    backward(loss, full({}, scale, options_of(loss)));
  }
  std::vector<Tensor> grads;
  for (const Tensor& p : lm.parameters()) grads.push_back(clone(p.grad()));
  return grads;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.data_ptr(), b.data_ptr(), size_t(a.numel()) * dtype_size(a.dtype())) == 0;
}

}  // namespace

TEST_CASE("exact grads: a Llama's gradients do not depend on how the batch is split") {
  for (bool tied : {true, false}) {
    CAPTURE(tied);
    Generator gen(7);
    LlamaForCausalLM lm(exact_tiny_config(tied), &gen);
    const int64_t B = 6, T = 12;
    const Tensor ids = randint(0, 40, {B, T}, {DType::i64}, &gen);
    const Tensor targets = randint(0, 40, {B, T}, {DType::i64}, &gen);
    const auto whole = llama_grads(lm, ids, targets, {{0, B}});
    const auto two_ranks = llama_grads(lm, ids, targets, {{0, 3}, {3, 3}});
    const auto accumulated = llama_grads(lm, ids, targets, {{0, 1}, {1, 2}, {3, 3}});
    // The ranks' halves computed apart and added, as an f64 all_reduce does.
    const auto first = llama_grads(lm, ids, targets, {{0, 3}});
    const auto second = llama_grads(lm, ids, targets, {{3, 3}});
    const auto names = lm.named_parameters();
    for (size_t i = 0; i < whole.size(); ++i) {
      CAPTURE(names[i].first);
      CHECK(whole[i].dtype() == DType::f64);
      CHECK(same_bits(whole[i], two_ranks[i]));
      CHECK(same_bits(whole[i], accumulated[i]));
      CHECK(same_bits(whole[i], add(first[i], second[i])));
    }
  }
}

// MemoryState, segment_loss and SegmentLM's defaults (reset_rows, full back-propagation
// through time), on a toy mechanism whose state is a running sum of embeddings.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/ops/random.h"
#include "memory/segment_lm.h"
#include "nn/linear.h"

namespace mnemo::memory {
namespace {

// state "sum" (B, C) += mean over the segment of embed(ids); logits = (embed(ids) + sum) W^T.
// The state carries the graph, so a later segment's loss reaches earlier segments' tokens.
class RunningSumLM : public SegmentLM {
 public:
  RunningSumLM(int64_t vocab, int64_t width, Generator* gen) : vocab_(vocab), width_(width) {
    embedding = register_parameter("embedding", randn({vocab, width}, {DType::f64}, gen));
    head = register_module("head", std::make_shared<nn::Linear>(width, vocab, false, gen));
    head->to(DType::f64);
  }
  std::string mechanism() const override { return "running-sum"; }
  int64_t segment_length() const override { return 8; }
  MemoryState initial_state(int64_t batch) const override {
    MemoryState s;
    s.set("sum", zeros({batch, width_}, {DType::f64}));
    return s;
  }
  SegmentOutput forward_segment(const Tensor& ids, const MemoryState& state) override {
    const Tensor x = embedding_lookup(ids);                        // (B, T, C)
    const Tensor sum_in = state.at("sum");                         // (B, C)
    const Tensor h = add(x, unsqueeze(sum_in, 1));                 // (B, T, C)
    SegmentOutput out;
    out.logits = head->forward(h);                                 // (B, T, V)
    out.state.set("sum", add(sum_in, mean(x, {1})));
    return out;
  }
  Tensor embedding_lookup(const Tensor& ids) const {
    return reshape(index_select(embedding, 0, reshape(ids, {-1})),
                   {ids.size(0), ids.size(1), width_});
  }

  Tensor embedding;
  std::shared_ptr<nn::Linear> head;

 private:
  int64_t vocab_, width_;
};

Tensor ids_of(const std::vector<int64_t>& v, int64_t B) {
  return from_vector(v, {B, int64_t(v.size()) / B});
}

}  // namespace

TEST_CASE("MemoryState: find, at, set, detached") {
  MemoryState s;
  CHECK(s.empty());
  s.set("a", ones({2, 3}));
  s.set("b", zeros({2}));
  s.set("a", full({2, 3}, 5.0));  // replaces
  CHECK(s.tensors.size() == 2);
  CHECK(s.at("a").at({1, 2}) == 5.0);
  CHECK(s.find("c") == nullptr);
  CHECK_THROWS_WITH_AS(s.at("c"), doctest::Contains("no tensor named 'c'"), Error);
  Tensor w = ones({2}).set_requires_grad();
  s.set("w", mul(w, 2.0));
  CHECK(s.at("w").requires_grad());
  CHECK_FALSE(s.detached().at("w").requires_grad());
}

TEST_CASE("segment_loss: the sum of per-token cross-entropies over scored tokens") {
  Generator gen(1);
  const Tensor logits = randn({2, 3, 5}, {DType::f64}, &gen);
  const Tensor targets = ids_of({1, -100, 4, 0, 2, -100}, 2);
  const SegmentLoss loss = segment_loss(logits, targets);
  CHECK(loss.count == 4);
  const double mean = cross_entropy(reshape(logits, {-1, 5}), reshape(targets, {-1})).item();
  CHECK(loss.sum.item() == doctest::Approx(4 * mean).epsilon(1e-12));
  CHECK_THROWS_WITH_AS(segment_loss(logits, ids_of({1, 2}, 2)), doctest::Contains("segment_loss"),
                       Error);
}

TEST_CASE("SegmentLM: reset_rows restarts only the given streams") {
  Generator gen(2);
  RunningSumLM lm(7, 4, &gen);
  MemoryState s = lm.initial_state(3);
  s = lm.forward_segment(ids_of({1, 2, 3, 4, 5, 6}, 3), s).state;
  const MemoryState r = lm.reset_rows(s, {1});
  const Tensor before = s.at("sum"), after = r.at("sum");
  for (int64_t c = 0; c < 4; ++c) {
    CHECK(after.at({0, c}) == before.at({0, c}));
    CHECK(after.at({1, c}) == 0.0);
    CHECK(after.at({2, c}) == before.at({2, c}));
  }
  CHECK_THROWS_WITH_AS(lm.reset_rows(s, {3}), doctest::Contains("out of range"), Error);
}

TEST_CASE("SegmentLM: forward_backward is back-propagation through time over the stream") {
  Generator gen(3);
  RunningSumLM lm(7, 4, &gen);
  const std::vector<Tensor> ids = {ids_of({1, 2, 3, 4}, 2), ids_of({5, 6, 0, 1}, 2),
                                   ids_of({2, 2, 3, 3}, 2)};
  const std::vector<Tensor> targets = {ids_of({2, 3, 4, -100}, 2), ids_of({6, 0, 1, 2}, 2),
                                       ids_of({2, 3, 3, 4}, 2)};
  MemoryState final_state;
  const double loss = lm.forward_backward(ids, targets, lm.initial_state(2), &final_state);
  const Tensor grad = clone(lm.embedding.grad());
  CHECK_FALSE(final_state.at("sum").requires_grad());

  // The same loss by hand, differentiated by finite differences in one embedding entry that
  // only segment 0 reads (token 4): its gradient exists only through the carried state.
  auto total_loss = [&] {
    MemoryState s = lm.initial_state(2);
    double sum = 0;
    int64_t count = 0;
    for (size_t k = 0; k < ids.size(); ++k) {
      SegmentOutput out = lm.forward_segment(ids[k], s);
      const SegmentLoss l = segment_loss(out.logits, targets[k]);
      sum += l.sum.item();
      count += l.count;
      s = out.state;
    }
    return sum / double(count);
  };
  CHECK(loss == doctest::Approx(total_loss()).epsilon(1e-12));
  NoGradGuard no_grad;
  const double h = 1e-6;
  double* e = static_cast<double*>(lm.embedding.data_ptr()) + 4 * 4 + 1;  // token 4, dim 1
  const double saved = *e;
  *e = saved + h;
  const double up = total_loss();
  *e = saved - h;
  const double down = total_loss();
  *e = saved;
  CHECK(grad.at({4, 1}) == doctest::Approx((up - down) / (2 * h)).epsilon(1e-6));
  CHECK(grad.at({4, 1}) != 0.0);
}

}  // namespace mnemo::memory

// ExactGradGuard (autograd/exact_grad.h): under the guard, every parameter gradient that is a
// sum over rows comes out the same bits whether the rows arrive in one backward or are split
// (at segment boundaries) over several backward calls, as data-parallel ranks and gradient
// accumulation split them; the leaves' .grad is f64. Without the guard nothing changes.
#include <doctest/doctest.h>

#include <cstring>
#include <functional>

#include "autograd/engine.h"
#include "autograd/exact_grad.h"
#include "autograd/ops.h"

using namespace mnemo;

namespace {

constexpr int64_t kSeg = 5;  // rows per segment (a "sequence")

bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  const Tensor x = contiguous(a), y = contiguous(b);
  return std::memcmp(x.data_ptr(), y.data_ptr(), size_t(x.numel()) * dtype_size(x.dtype())) == 0;
}

// A sum-of-rows loss over rows [r0, r0 + n) of a model given as fn(rows) -> (n, k) output.
using Model = std::function<Tensor(int64_t r0, int64_t n)>;

// Runs backward over the row ranges `pieces` (each a multiple of kSeg), accumulating into the
// leaves' .grad, and returns copies of the gradients.
std::vector<Tensor> grads_over(const Model& model, const std::vector<Tensor>& leaves,
                               const std::vector<std::pair<int64_t, int64_t>>& pieces, bool exact) {
  for (const Tensor& p : leaves) Tensor(p).set_grad(Tensor());
  for (auto [r0, n] : pieces) {
    // The scale of a mean over all rows, the same constant for every piece.
    const Tensor loss = sum(model(r0, n));
    if (exact) {
      autograd::ExactGradGuard guard(kSeg);
      backward(loss, full({}, 1.0 / 3.0, options_of(loss)));
    } else {
      backward(loss, full({}, 1.0 / 3.0, options_of(loss)));
    }
  }
  std::vector<Tensor> out;
  for (const Tensor& p : leaves) out.push_back(clone(p.grad()));
  return out;
}

void check_split_invariant(const Model& model, const std::vector<Tensor>& leaves, int64_t R) {
  const auto whole = grads_over(model, leaves, {{0, R}}, true);
  const auto halves = grads_over(model, leaves, {{0, 2 * kSeg}, {2 * kSeg, R - 2 * kSeg}}, true);
  const auto plain = grads_over(model, leaves, {{0, R}}, false);
  for (size_t i = 0; i < leaves.size(); ++i) {
    CAPTURE(i);
    CHECK(whole[i].dtype() == DType::f64);
    CHECK(plain[i].dtype() == leaves[i].dtype());
    CHECK(same_bits(whole[i], halves[i]));
    // The same gradient as the plain path, up to the plain path's f32 rounding.
    const Tensor diff = abs(sub(to(plain[i], DType::f64), whole[i]));
    const double scale = max(abs(whole[i])).item() + 1e-30;
    CHECK(max(diff).item() / scale < 1e-5);
  }
}

Tensor randn(Shape shape, uint64_t seed) {
  Generator gen(seed);
  return normal(shape, 0, 1, {}, &gen);
}

}  // namespace

TEST_CASE("exact grads: linear (weight and bias) is split-invariant") {
  const int64_t R = 4 * kSeg;  // 20 rows, of 3 features -> 7
  const Tensor x = randn({R, 3}, 1);
  Tensor w = randn({7, 3}, 2).set_requires_grad(), b = randn({7}, 3).set_requires_grad();
  check_split_invariant(
      [&](int64_t r0, int64_t n) { return tanh(linear(narrow(x, 0, r0, n), w, b)); }, {w, b}, R);
}

TEST_CASE("exact grads: embedding is split-invariant") {
  const int64_t R = 4 * kSeg;
  std::vector<int64_t> ids(static_cast<size_t>(R));
  for (int64_t i = 0; i < R; ++i) ids[size_t(i)] = (i * 7) % 5;  // repeated ids
  const Tensor id = from_vector(ids, {R});
  Tensor table = randn({5, 4}, 4).set_requires_grad();
  check_split_invariant(
      [&](int64_t r0, int64_t n) { return tanh(embedding(table, narrow(id, 0, r0, n))); }, {table},
      R);
}

TEST_CASE("exact grads: rms_norm and layer_norm weights are split-invariant") {
  const int64_t R = 4 * kSeg;
  const Tensor x = randn({R, 6}, 5);
  Tensor g = randn({6}, 6).set_requires_grad(), w = randn({6}, 7).set_requires_grad(),
         b = randn({6}, 8).set_requires_grad();
  check_split_invariant(
      [&](int64_t r0, int64_t n) {
        const Tensor rows = narrow(x, 0, r0, n);
        return mul(rms_norm(rows, g, 1e-5), layer_norm(rows, w, b, 1e-5));
      },
      {g, w, b}, R);
}

TEST_CASE("exact grads: a broadcast leaf is summed in f64") {
  const int64_t R = 4 * kSeg;
  const Tensor x = randn({R, 6}, 9);
  Tensor s = randn({6}, 10).set_requires_grad();
  check_split_invariant([&](int64_t r0, int64_t n) { return exp(mul(narrow(x, 0, r0, n), s)); },
                        {s}, R);
}

TEST_CASE("exact grads: the guard restores the previous state and rejects a bad length") {
  CHECK(autograd::exact_grad_segment_rows() == 0);
  {
    autograd::ExactGradGuard outer(4);
    CHECK(autograd::exact_grad_segment_rows() == 4);
    {
      autograd::ExactGradGuard inner(8);
      CHECK(autograd::exact_grad_segment_rows() == 8);
    }
    CHECK(autograd::exact_grad_segment_rows() == 4);
  }
  CHECK(autograd::exact_grad_segment_rows() == 0);
  CHECK_THROWS_WITH_AS(autograd::ExactGradGuard(0), doctest::Contains("segment length"), Error);
}

// With grad mode on during backward (create_graph), the in-place f64 sums would cut the graph:
// the rules take the plain path and the gradient keeps the leaf's dtype.
TEST_CASE("exact grads: create_graph keeps the plain, recordable path") {
  Tensor w = randn({3, 2}, 11).set_requires_grad();
  const Tensor x = randn({kSeg * 2, 2}, 12);
  autograd::ExactGradGuard guard(kSeg);
  const TensorList g = grad({sum(tanh(linear(x, w)))}, {w}, {}, {.create_graph = true});
  CHECK(g[0].dtype() == DType::f32);
}

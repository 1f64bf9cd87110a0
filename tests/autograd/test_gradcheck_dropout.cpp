// dropout: gradients by finite differences (with a fixed mask), the drop rate and the
// preserved mean, agreement with the documented bernoulli mask, the identity and all-zero
// cases, and misuse.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/engine.h"
#include "autograd/ops.h"
#include "support/gradcheck_cases.h"

using namespace mnemo;
using namespace mnemo::test;  // tests/support/gradcheck_cases.h

namespace {

// dropout with a fresh generator at a fixed seed, so every finite-difference evaluation
// draws the same mask.
std::function<Tensor(const TensorList&)> fixed_mask_dropout(double p, uint64_t seed) {
  return [p, seed](const TensorList& in) {
    Generator gen(seed);
    return dropout(in[0], p, true, &gen);
  };
}

}  // namespace

TEST_GRADCHECK("dropout") {
  for (double p : {0.3, 0.5}) {
    CAPTURE(p);
    auto fn = fixed_mask_dropout(p, 11);
    check_gradients({
        {"(3,4)", {{3, 4}}, fn},
        {"0-d", {{}}, fn},
        {"non-contiguous (4,3)", {{4, 3}}, fn, -2, 2, {0}},
        {"non-contiguous (5,)", {{5}}, fn, -2, 2, {0}},
        {"size-1 dims (1,5,1)", {{1, 5, 1}}, fn},
        {"inside a product (2,3) * (3,)",
         {{2, 3}, {3}},
         [p](const TensorList& in) {
           Generator gen(12);
           return mul(dropout(in[0], p, true, &gen), in[1]);
         }},
    });
  }
  check_gradients({
      {"p = 1 (all dropped)", {{3, 4}}, fixed_mask_dropout(1, 11)},
      {"eval mode", {{3, 4}}, [](const TensorList& in) { return dropout(in[0], 0.5, false); }},
  });
}

TEST_CASE("dropout zeroes about p of the elements and preserves the mean") {
  const int64_t n = 1000000;
  for (double p : {0.1, 0.5, 0.8}) {
    CAPTURE(p);
    Generator gen(3);
    std::vector<double> y = dropout(ones({n}), p, true, &gen).to_vector<double>();
    double zeros = 0, sum = 0;
    int64_t other = 0;
    for (double v : y) {
      zeros += v == 0;
      sum += v;
      other += v != 0 && std::abs(v - 1 / (1 - p)) > 1e-6;
    }
    CHECK(other == 0);  // every survivor is scaled by exactly 1 / (1 - p)
    // 5 standard errors: the drop rate has sd sqrt(p(1-p)), a scaled survivor sqrt(p/(1-p)).
    CHECK(std::abs(zeros / double(n) - p) <= 5 * std::sqrt(p * (1 - p) / double(n)));
    CHECK(std::abs(sum / double(n) - 1) <= 5 * std::sqrt(p / (1 - p) / double(n)));
  }
}

TEST_CASE("dropout's mask is bernoulli(1 - p) from the generator, and so is its gradient") {
  const double p = 0.25;
  Generator gen(21), same(21);
  Tensor x = core::affine(rand({6, 50}, {DType::f64}, &gen), 1, 0.5).set_requires_grad();
  same.next();  // keep the two generators in step
  Tensor y = dropout(x, p, true, &gen);
  std::vector<double> mask = bernoulli({6, 50}, 1 - p, {DType::f64}, &same).to_vector<double>();
  std::vector<double> xs = x.to_vector<double>(), ys = y.to_vector<double>();
  int64_t mismatches = 0;
  for (size_t i = 0; i < ys.size(); ++i) {
    mismatches += std::abs(ys[i] - xs[i] * mask[i] / (1 - p)) > 1e-12;
  }
  CHECK(mismatches == 0);
  CHECK(gen.offset() == 2);  // dropout is one op of the stream
  backward(sum(y));
  std::vector<double> dx = x.grad().to_vector<double>();
  mismatches = 0;
  for (size_t i = 0; i < dx.size(); ++i) mismatches += std::abs(dx[i] - mask[i] / (1 - p)) > 1e-12;
  CHECK(mismatches == 0);
}

TEST_CASE("dropout: identity in eval mode and at p = 0, zeros at p = 1, keeps the dtype") {
  Tensor x = from_vector(std::vector<double>{1, -2, INFINITY, 4}, {2, 2});
  CHECK(dropout(x, 0.5, false).is_same(x));
  CHECK(dropout(x, 0).is_same(x));
  Tensor x_grad = ones({2, 2}).set_requires_grad();
  Tensor none = dropout(x_grad, 1);
  CHECK(none.to_vector<double>() == std::vector<double>(4, 0));
  backward(sum(none));
  CHECK(x_grad.grad().to_vector<double>() == std::vector<double>(4, 0));
  CHECK(dropout(x, 1).to_vector<double>() == std::vector<double>(4, 0));  // even inf
  Generator gen(1);
  Tensor half = dropout(ones({64}, {DType::bf16}), 0.5, true, &gen);
  CHECK(half.dtype() == DType::bf16);
  for (double v : half.to_vector<double>()) CHECK((v == 0 || v == 2));
}

TEST_CASE("dropout rejects bad arguments, naming the op") {
  CHECK_THROWS_WITH_AS(dropout(ones({3}), -0.1), doctest::Contains("dropout"), Error);
  CHECK_THROWS_WITH_AS(dropout(ones({3}), 1.5), doctest::Contains("dropout"), Error);
  CHECK_THROWS_WITH_AS(dropout(ones({3}), NAN), doctest::Contains("dropout"), Error);
  CHECK_THROWS_WITH_AS(dropout(ones({3}, {DType::i64}), 0.5), doctest::Contains("dropout"), Error);
  CHECK_THROWS_WITH_AS(dropout(Tensor(), 0.5), doctest::Contains("dropout"), Error);
}

// softmax, log_softmax and cross_entropy: forward and backward values against the definitions
// written out here in f64 loops, numerical stability, masked (-inf) entries, 16-bit dtypes,
// reductions of the differentiable cross_entropy, and errors that name the op.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>

#include "autograd/engine.h"
#include "autograd/ops.h"
#include "core/cpu/parallel.h"
#include "support/errors.h"
#include "support/tensors.h"

using namespace mnemo;
using test::check_close;
using test::kInf;

namespace {

// Logits in [-scale, scale).
Tensor random_logits(const Shape& shape, DType dtype, uint64_t seed, double scale = 3) {
  return test::random_tensor(shape, seed, dtype, -scale, scale);
}

// Visits every line of x (contiguous values, shape) along dim: fn(indices of its elements).
template <typename Fn>
void for_each_line(const Shape& shape, int64_t dim, Fn fn) {
  const int64_t rank = int64_t(shape.size());
  int64_t inner = 1;
  for (int64_t d = dim + 1; d < rank; ++d) inner *= shape[d];
  const int64_t D = shape[dim], outer = numel(shape) / (D * inner);
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      std::vector<size_t> line;
      for (int64_t d = 0; d < D; ++d) line.push_back(size_t((o * D + d) * inner + i));
      fn(line);
    }
  }
}

// The definitions, in f64 on the row-major values of x.
std::vector<double> naive_softmax(const Tensor& x, int64_t dim, bool log) {
  std::vector<double> v = x.to_vector<double>(), y(v.size());
  for_each_line(x.shape(), dim, [&](const std::vector<size_t>& line) {
    double m = -kInf, s = 0;
    for (size_t i : line) m = std::max(m, v[i]);
    for (size_t i : line) s += std::exp(v[i] - m);
    for (size_t i : line) y[i] = log ? v[i] - m - std::log(s) : std::exp(v[i] - m) / s;
  });
  return y;
}

// softmax: dx = y (dy - sum dy y);  log_softmax: dx = dy - exp(y) sum dy.
std::vector<double> naive_softmax_backward(const Tensor& y, const Tensor& dy, int64_t dim,
                                           bool log) {
  std::vector<double> yv = y.to_vector<double>(), g = dy.to_vector<double>(), dx(yv.size());
  for_each_line(y.shape(), dim, [&](const std::vector<size_t>& line) {
    double s = 0;
    for (size_t i : line) s += log ? g[i] : g[i] * yv[i];
    for (size_t i : line) dx[i] = log ? g[i] - std::exp(yv[i]) * s : yv[i] * (g[i] - s);
  });
  return dx;
}

// Row n of the cross-entropy definition: -sum_c q_c log softmax(z)_c, with
// q = (1 - s) one_hot(t) + s / C. Also returns lse.
std::pair<double, double> naive_cross_entropy_row(const std::vector<double>& z, int64_t t,
                                                  double s) {
  double m = -kInf, sum = 0;
  for (double v : z) m = std::max(m, v);
  for (double v : z) sum += std::exp(v - m);
  const double lse = m + std::log(sum);
  double loss = 0;
  for (size_t c = 0; c < z.size(); ++c) {
    const double q = (int64_t(c) == t ? 1 - s : 0) + s / double(z.size());
    loss -= q * (z[c] - lse);
  }
  return {loss, lse};
}

std::vector<double> row_of(const Tensor& logits, int64_t n) {
  return core::contiguous(core::select(logits, 0, n)).to_vector<double>();
}

}  // namespace

TEST_CASE("softmax: forward matches the definition along every dim") {
  Tensor x = random_logits({3, 4, 70}, DType::f64, 1);
  for (bool log : {false, true}) {
    for (int64_t dim : {0, 1, 2, -1}) {
      INFO((log ? "log_softmax" : "softmax"), " dim ", dim);
      Tensor y = log ? core::log_softmax(x, dim) : core::softmax(x, dim);
      CHECK(y.shape() == x.shape());
      check_close(y.to_vector<double>(), naive_softmax(x, (dim + 3) % 3, log), 1e-14);
      // f32 against the same definition.
      Tensor x32 = core::to(x, DType::f32);
      Tensor y32 = log ? core::log_softmax(x32, dim) : core::softmax(x32, dim);
      CHECK(y32.dtype() == DType::f32);
      check_close(y32.to_vector<double>(), naive_softmax(x32, (dim + 3) % 3, log), 2e-6);
    }
  }
  // A non-contiguous input (the transpose of a stored tensor) gives the same values as its copy.
  Tensor xt = core::transpose(x, 0, 2);
  CHECK(core::softmax(xt, 1).to_vector<double>() ==
        core::softmax(core::contiguous(xt), 1).to_vector<double>());
  // Rows sum to 1.
  Tensor y = core::softmax(x, 1);
  for (double s : core::sum(y, {1}).to_vector<double>())
    CHECK(s == doctest::Approx(1).epsilon(1e-14));
}

TEST_CASE("softmax: stable for large inputs, exact zeros for -inf") {
  // exp(1000) overflows; the max subtraction makes it softmax([0, 1, 2]).
  Tensor big = tensor({1000, 1001, 1002}, {DType::f32});
  Tensor small = tensor({0, 1, 2}, {DType::f32});
  check_close(core::softmax(big).to_vector<double>(), core::softmax(small).to_vector<double>(),
              1e-6);
  check_close(core::log_softmax(big).to_vector<double>(),
              core::log_softmax(small).to_vector<double>(), 1e-6);
  // Masked entries: probability exactly 0, log-probability -inf, along the last dim (rows)
  // and along dim 0 (the slab path).
  for (DType dtype : {DType::f32, DType::f64}) {
    Tensor masked = from_vector(std::vector<double>{0.5, -kInf, 2, -kInf, 1, 3}, {2, 3}, {dtype});
    std::vector<double> rows = core::softmax(masked, 1).to_vector<double>();
    CHECK(rows[1] == 0.0);
    CHECK(rows[3] == 0.0);
    check_close(rows, naive_softmax(masked, 1, false), 1e-6);
    std::vector<double> cols = core::softmax(masked, 0).to_vector<double>();
    CHECK(cols[1] == 0.0);  // column 1 is (-inf, 1)
    CHECK(cols[4] == 1.0);
    CHECK(cols[0] == 1.0);  // column 0 is (0.5, -inf)
    CHECK(cols[3] == 0.0);
    CHECK(core::log_softmax(masked, 1).to_vector<double>()[1] == -kInf);
  }
}

TEST_CASE("softmax: bf16 and f16 are computed in f32 and rounded once") {
  for (DType dtype : {DType::bf16, DType::f16}) {
    INFO(dtype_name(dtype));
    Tensor x = random_logits({5, 33}, dtype, 2);
    for (int64_t dim : {0, 1}) {
      Tensor y = core::softmax(x, dim);
      CHECK(y.dtype() == dtype);
      Tensor expected = core::to(core::softmax(core::to(x, DType::f32), dim), dtype);
      CHECK(y.to_vector<float>() == expected.to_vector<float>());
      Tensor ly = core::log_softmax(x, dim);
      CHECK(ly.to_vector<float>() ==
            core::to(core::log_softmax(core::to(x, DType::f32), dim), dtype).to_vector<float>());
    }
  }
}

TEST_CASE("softmax: 0-d and empty inputs") {
  CHECK(core::softmax(scalar_tensor(3.5)).item() == 1.0);
  CHECK(core::log_softmax(scalar_tensor(3.5)).item() == 0.0);
  CHECK(core::softmax(scalar_tensor(3.5)).dim() == 0);
  CHECK(core::softmax(empty({0, 5}), 1).shape() == Shape{0, 5});
  CHECK(core::log_softmax(empty({4, 0}), 1).shape() == Shape{4, 0});
}

TEST_CASE("softmax: the backward ops match their closed forms") {
  Tensor x = random_logits({4, 6, 67}, DType::f64, 3);
  Tensor dy = random_logits({4, 6, 67}, DType::f64, 4);
  for (int64_t dim : {0, 1, 2}) {
    INFO("dim ", dim);
    Tensor y = core::softmax(x, dim);
    check_close(core::softmax_backward(y, dy, dim).to_vector<double>(),
                naive_softmax_backward(y, dy, dim, false), 1e-13);
    Tensor ly = core::log_softmax(x, dim);
    check_close(core::log_softmax_backward(ly, dy, dim).to_vector<double>(),
                naive_softmax_backward(ly, dy, dim, true), 1e-13);
  }
  // A non-contiguous gradient.
  Tensor y = core::softmax(x, 2);
  Tensor dyt = core::transpose(core::contiguous(core::transpose(dy, 1, 2)), 1, 2);
  REQUIRE(!dyt.is_contiguous());
  check_close(core::softmax_backward(y, dyt, 2).to_vector<double>(),
              naive_softmax_backward(y, dy, 2, false), 1e-13);
}

TEST_CASE("softmax: same bits on any thread count") {
  // Rows, and slabs whose width follows the thread count (inner = 700 along dim 0).
  Tensor x = random_logits({64, 300, 9}, DType::f32, 5),
         wide = random_logits({5, 700}, DType::f32, 6);
  const int saved = num_threads();
  std::vector<std::vector<float>> results;
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    results.push_back(core::softmax(x, 1).to_vector<float>());
    results.push_back(core::log_softmax(x, 2).to_vector<float>());
    results.push_back(core::softmax(wide, 0).to_vector<float>());
  }
  set_num_threads(saved);
  for (size_t i = 3; i < results.size(); ++i) CHECK(results[i] == results[i % 3]);
}

TEST_CASE("softmax: errors name the op") {
  Tensor ints = from_vector(std::vector<int64_t>{1, 2, 3}, {3});
  CHECK_THROWS_AS(core::softmax(ints), Error);
  CHECK(test::error_message([&] { core::softmax(ints); }).find("softmax") != std::string::npos);
  CHECK(test::error_message([&] { core::log_softmax(ints); }).find("log_softmax") !=
        std::string::npos);
  Tensor x = random_logits({2, 3}, DType::f32, 6);
  CHECK_THROWS_AS(core::softmax(x, 2), Error);
  CHECK(test::error_message([&] { core::softmax(x, 2); }).find("softmax: dim 2") !=
        std::string::npos);
  const std::string shapes = test::error_message([&] {
    core::softmax_backward(x, random_logits({3, 2}, DType::f32, 7), 1);
  });
  CHECK(shapes.find("softmax_backward") != std::string::npos);
  CHECK(shapes.find("(2, 3)") != std::string::npos);
  CHECK(shapes.find("(3, 2)") != std::string::npos);
}

TEST_CASE("cross_entropy: loss and lse match the definition") {
  Tensor logits = random_logits({7, 5}, DType::f64, 8);
  // Row 2 uses the default ignore_index (-100); row 5 uses the last class.
  Tensor target = from_vector(std::vector<int64_t>{1, 0, -100, 4, 2, 4, 3}, {7});
  for (double smoothing : {0.0, 0.1, 1.0}) {
    INFO("label_smoothing ", smoothing);
    core::CrossEntropyOutput out = core::cross_entropy(logits, target, -100, smoothing);
    REQUIRE(out.loss.shape() == Shape{7});
    REQUIRE(out.lse.shape() == Shape{7});
    for (int64_t n = 0; n < 7; ++n) {
      const int64_t t = int64_t(target.at({n}));
      auto [loss, lse] = naive_cross_entropy_row(row_of(logits, n), t, smoothing);
      CHECK(out.lse.at({n}) == doctest::Approx(lse).epsilon(1e-14));
      CHECK(out.loss.at({n}) == doctest::Approx(t == -100 ? 0.0 : loss).epsilon(1e-13));
    }
  }
  // A custom ignore_index (a valid class id: those rows are skipped, not scored).
  Tensor target4 = from_vector(std::vector<int64_t>{1, 0, 2, 4, 2, 4, 3}, {7});
  core::CrossEntropyOutput custom = core::cross_entropy(logits, target4, 4, 0);
  CHECK(custom.loss.at({3}) == 0.0);
  CHECK(custom.loss.at({5}) == 0.0);
  CHECK(custom.loss.at({0}) > 0.0);
  // i32 targets give the same result.
  Tensor target32 = from_vector(std::vector<int32_t>{1, 0, -100, 4, 2, 4, 3}, {7});
  CHECK(core::cross_entropy(logits, target32).loss.to_vector<double>() ==
        core::cross_entropy(logits, target).loss.to_vector<double>());
}

TEST_CASE("cross_entropy: stable for large logits, f32 stats for 16-bit logits") {
  Tensor logits =
      from_vector(std::vector<double>{1e4, 1e4 + 1, 1e4 - 2, -1e4, 0, 1e4}, {2, 3}, {DType::f32});
  Tensor target = from_vector(std::vector<int64_t>{1, 0}, {2});
  core::CrossEntropyOutput out = core::cross_entropy(logits, target);
  auto [loss0, lse0] = naive_cross_entropy_row({0, 1, -2}, 1, 0);
  CHECK(out.loss.at({0}) == doctest::Approx(loss0).epsilon(1e-6));
  CHECK(out.lse.at({0}) == doctest::Approx(1e4 + lse0).epsilon(1e-7));
  CHECK(out.loss.at({1}) == doctest::Approx(2e4).epsilon(1e-6));

  Tensor half = random_logits({4, 9}, DType::bf16, 9);
  Tensor t = from_vector(std::vector<int64_t>{0, 8, 3, 3}, {4});
  core::CrossEntropyOutput h = core::cross_entropy(half, t, -100, 0.2);
  CHECK(h.loss.dtype() == DType::bf16);
  CHECK(h.lse.dtype() == DType::f32);
  core::CrossEntropyOutput f = core::cross_entropy(core::to(half, DType::f32), t, -100, 0.2);
  CHECK(h.lse.to_vector<float>() == f.lse.to_vector<float>());
  CHECK(h.loss.to_vector<float>() == core::to(f.loss, DType::bf16).to_vector<float>());
}

TEST_CASE("cross_entropy: backward is dloss * (softmax - q), 0 on ignored rows") {
  Tensor logits = random_logits({6, 4}, DType::f64, 10);
  Tensor target = from_vector(std::vector<int64_t>{3, -1, 0, 2, -1, 1}, {6});
  Tensor dloss = random_logits({6}, DType::f64, 11, 1);
  for (double s : {0.0, 0.25}) {
    INFO("label_smoothing ", s);
    core::CrossEntropyOutput out = core::cross_entropy(logits, target, -1, s);
    Tensor dz = core::cross_entropy_backward(logits, target, out.lse, dloss, -1, s);
    REQUIRE(dz.shape() == Shape{6, 4});
    for (int64_t n = 0; n < 6; ++n) {
      const int64_t t = int64_t(target.at({n}));
      const std::vector<double> z = row_of(logits, n);
      const double lse = naive_cross_entropy_row(z, 0, 0).second;
      for (int64_t c = 0; c < 4; ++c) {
        const double q = (c == t ? 1 - s : 0) + s / 4;
        const double expected = t == -1 ? 0 : dloss.at({n}) * (std::exp(z[size_t(c)] - lse) - q);
        CHECK(dz.at({n, c}) == doctest::Approx(expected).epsilon(1e-13));
      }
    }
  }
}

TEST_CASE("cross_entropy: a -inf logit gets exactly zero gradient") {
  Tensor logits = from_vector(std::vector<double>{1, -kInf, 0.5, 2}, {1, 4}, {DType::f32});
  Tensor target = from_vector(std::vector<int64_t>{3}, {1});
  core::CrossEntropyOutput out = core::cross_entropy(logits, target);
  CHECK(std::isfinite(out.loss.item()));
  Tensor dz = core::cross_entropy_backward(logits, target, out.lse, full({1}, -2.0));
  CHECK(dz.at({0, 1}) == 0.0);
  CHECK(dz.at({0, 0}) < 0.0);  // dloss < 0 flips the usual signs
  CHECK(dz.at({0, 3}) > 0.0);
}

TEST_CASE("cross_entropy: errors name the op and the offending value") {
  Tensor logits = random_logits({3, 5}, DType::f32, 12);
  Tensor bad = from_vector(std::vector<int64_t>{1, 7, 2}, {3});
  CHECK_THROWS_AS(core::cross_entropy(logits, bad), Error);
  const std::string range = test::error_message([&] { core::cross_entropy(logits, bad); });
  CHECK(range.find("cross_entropy") != std::string::npos);
  CHECK(range.find("target 7") != std::string::npos);
  CHECK(range.find("5 classes") != std::string::npos);
  Tensor negative = from_vector(std::vector<int64_t>{1, -3, 2}, {3});
  CHECK(test::error_message([&] { core::cross_entropy(logits, negative); }).find("target -3") !=
        std::string::npos);
  Tensor lse = core::cross_entropy(logits, from_vector(std::vector<int64_t>{1, 2, 3}, {3})).lse;
  CHECK(test::error_message([&] {
          core::cross_entropy_backward(logits, bad, lse, ones({3}));
        }).find("cross_entropy_backward: target 7") != std::string::npos);

  const std::string shape = test::error_message([&] {
    core::cross_entropy(logits, from_vector(std::vector<int64_t>{1, 2}, {2}));
  });
  CHECK(shape.find("cross_entropy") != std::string::npos);
  CHECK(shape.find("(2,)") != std::string::npos);
  CHECK(shape.find("(3, 5)") != std::string::npos);
  CHECK(test::error_message([&] {
          core::cross_entropy(logits, ones({3}));
        }).find("cross_entropy") != std::string::npos);
  CHECK(test::error_message([&] {
          core::cross_entropy(logits, from_vector(std::vector<int64_t>{1, 2, 3}, {3}), -100, 1.5);
        }).find("label_smoothing") != std::string::npos);
  CHECK(test::error_message([&] {
          core::cross_entropy(ones({5}), from_vector(std::vector<int64_t>{1}, {1}));
        }).find("cross_entropy") != std::string::npos);
  // The differentiable op checks (..., C) against (...).
  const std::string nd = test::error_message([&] {
    cross_entropy(random_logits({2, 3, 5}, DType::f32, 1),
                  from_vector(std::vector<int64_t>{1, 2}, {2}));
  });
  CHECK(nd.find("cross_entropy: target of shape (2,)") != std::string::npos);
  CHECK(nd.find("(2, 3)") != std::string::npos);
}

TEST_CASE("cross_entropy: reductions none, sum and mean over (..., C) logits") {
  Tensor logits = random_logits({2, 3, 4}, DType::f64, 13);
  Tensor target = from_vector(std::vector<int64_t>{0, 3, -100, 1, 2, 2}, {2, 3});
  Tensor rows = core::cross_entropy(core::reshape(logits, {6, 4}), core::reshape(target, {6})).loss;
  const std::vector<double> per_row = rows.to_vector<double>();
  double total = 0;
  for (double v : per_row) total += v;

  Tensor none = cross_entropy(logits, target, -100, 0, Reduction::none);
  CHECK(none.shape() == Shape{2, 3});
  CHECK(none.to_vector<double>() == per_row);
  CHECK(cross_entropy(logits, target, -100, 0, Reduction::sum).item() ==
        doctest::Approx(total).epsilon(1e-14));
  // mean divides by the 5 targets that are not ignored, not by 6.
  CHECK(cross_entropy(logits, target).item() == doctest::Approx(total / 5).epsilon(1e-14));

  // Every target ignored: mean is 0/0 = NaN, and the gradient is 0, not NaN.
  Tensor x = core::clone(logits).set_requires_grad();
  Tensor all_ignored = full({2, 3}, -100, {DType::i64});
  Tensor loss = cross_entropy(x, all_ignored);
  CHECK(std::isnan(loss.item()));
  backward(loss);
  CHECK(x.grad().to_vector<double>() == std::vector<double>(24, 0.0));
}

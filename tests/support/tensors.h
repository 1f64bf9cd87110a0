// Small tensor helpers shared by the tests (header-only, so that tests/cuda may use them too).
//
//   random_tensor(shape, seed)               f64 values uniform in [-1, 1), drawn from
//   random_tensor(shape, seed, f32, -2, 2)   std::mt19937_64(seed), then rounded to dtype
//   values(t)                                t's elements as doubles, row-major
//   unravel(i, shape)                        the multi-index of row-major position i
//   check_close(got, want, tol)              element-wise |got - want| <= tol (1 + max |.|);
//                                            an infinite want must come out exactly
//   check_same_bits_on_1_and_4_threads(run)  run()'s tensors do not depend on the thread count
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "core/cpu/parallel.h"
#include "core/ops/factory.h"
#include "core/tensor.h"

namespace mnemo::test {

inline Tensor random_tensor(const Shape& shape, uint64_t seed, DType dtype = DType::f64,
                            double lo = -1, double hi = 1) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(size_t(numel(shape)));
  for (double& x : v) x = dist(rng);
  return from_vector(v, shape, {dtype});
}

inline std::vector<double> values(const Tensor& t) {
  return t.to_vector<double>();
}

inline constexpr double kInf = std::numeric_limits<double>::infinity();

// doctest's Approx with scale 1: |got - want| <= tol * (1 + max(|got|, |want|)), element by
// element; infinities (masked-out rows, log 0) must match exactly.
inline void check_close(const std::vector<double>& got, const std::vector<double>& want,
                        double tol) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element ", i, ": got ", got[i], ", want ", want[i]);
    if (std::isinf(want[i])) {
      CHECK(got[i] == want[i]);
    } else {
      CHECK(got[i] == doctest::Approx(want[i]).epsilon(tol).scale(1));
    }
  }
}

inline std::vector<int64_t> unravel(int64_t i, const Shape& shape) {
  std::vector<int64_t> index(shape.size());
  for (int64_t d = int64_t(shape.size()) - 1; d >= 0; --d) {
    index[size_t(d)] = i % shape[size_t(d)];
    i /= shape[size_t(d)];
  }
  return index;
}

// Calls run with one thread and with max(num_threads(), 4), then restores the thread count;
// each tensor run returns must come out the same bits both times.
inline void check_same_bits_on_1_and_4_threads(const std::function<std::vector<Tensor>()>& run) {
  const int threads = num_threads();
  set_num_threads(1);
  const std::vector<Tensor> one = run();
  set_num_threads(std::max(threads, 4));
  const std::vector<Tensor> many = run();
  set_num_threads(threads);
  REQUIRE(one.size() == many.size());
  for (size_t i = 0; i < one.size(); ++i) {
    INFO("output ", i);
    CHECK(values(one[i]) == values(many[i]));  // bit for bit
  }
}

}  // namespace mnemo::test

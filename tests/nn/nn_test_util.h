// Small helpers shared by the nn tests: comparing tensors and naive reference loops.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"

namespace mnemo::nn::test {

// Largest |a - b| over all elements (shapes must match).
inline double max_abs_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

// Runs fn, expecting a mnemo::Error whose message contains every fragment.
template <typename Fn>
void check_error(Fn&& fn, const std::vector<std::string>& fragments) {
  try {
    fn();
    FAIL("expected mnemo::Error containing '" << fragments.at(0) << "'");
  } catch (const Error& e) {
    const std::string message = e.what();
    for (const std::string& f : fragments) {
      CHECK_MESSAGE(message.find(f) != std::string::npos, message, " lacks '", f, "'");
    }
  }
}

}  // namespace mnemo::nn::test

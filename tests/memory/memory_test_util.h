// Helpers shared by the memory tests.
#pragma once

#include <cstdint>
#include <vector>

#include "core/ops/factory.h"
#include "core/tensor.h"
#include "nn/nn_test_util.h"

namespace mnemo::memory::test {

using nn::test::max_abs_diff;

// The additive mask (1, 1, total, total) f64 under which one causal pass over a whole stream
// sees what segment-wise attention with an XL cache of the previous `window` tokens sees: a
// token of the segment that starts at `start` sees the keys from start - window on (-1e300
// before them). lengths: the segments' lengths in stream order.
inline Tensor xl_window_bias(const std::vector<int64_t>& lengths, int64_t window) {
  int64_t total = 0;
  for (int64_t n : lengths) total += n;
  std::vector<double> bias(size_t(total * total), 0.0);
  int64_t start = 0;
  for (int64_t n : lengths) {
    for (int64_t p = start; p < start + n; ++p) {
      for (int64_t j = 0; j < start - window; ++j) bias[size_t(p * total + j)] = -1e300;
    }
    start += n;
  }
  return from_vector(bias, {1, 1, total, total}, {DType::f64});
}

}  // namespace mnemo::memory::test

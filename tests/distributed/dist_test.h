// Shared state and helpers of the distributed test program (tests/distributed/main.cpp): the
// one communicator every test case uses, the world size the launcher was asked for, and the
// closed forms the collectives are checked against (test_collectives.cpp on the CPU,
// test_nccl.cpp on CUDA tensors).
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include "core/ops/factory.h"
#include "core/ops/view.h"
#include "train/distributed/communicator.h"

namespace mnemo::dist::testing {

Communicator& comm();       // made once by main with make_communicator()
int expected_world_size();  // from --expect-world-size=N (1 without mpirun)

// A 1-d tensor of n elements on device, element i = value(i), stored as dtype.
inline Tensor make(int64_t n, DType dtype, const std::function<double(int64_t)>& value,
                   Device device = Device::cpu()) {
  std::vector<double> values(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) values[size_t(i)] = value(i);
  return core::to(from_vector(values, {n}, TensorOptions{}.with_dtype(dtype)), device);
}

// How many elements of t (on any device) differ from expected(i) by more than
// atol + rtol * |expected(i)|.
inline int64_t mismatches(const Tensor& t, const std::function<double(int64_t)>& expected,
                          double atol = 0, double rtol = 0) {
  const std::vector<double> got = core::to(t, Device::cpu()).to_vector<double>();
  int64_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double want = expected(int64_t(i));
    if (std::abs(got[i] - want) > atol + rtol * std::abs(want)) ++bad;
  }
  return bad;
}

// The value rank r holds at element i in the reduction tests: (r + 1) * (i % 7) + r / 2,
// exact in every float dtype (bf16 included) for up to 8 ranks.
inline double contribution(int r, int64_t i) {
  return double(r + 1) * double(i % 7) + 0.5 * r;
}
// Its sum over W ranks: (i % 7) * W (W + 1) / 2 + W (W - 1) / 4.
inline double contribution_sum(int W, int64_t i) {
  return double(i % 7) * W * (W + 1) / 2.0 + W * (W - 1) / 4.0;
}

}  // namespace mnemo::dist::testing

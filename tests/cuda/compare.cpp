// The CPU-comparison helpers of tests/cuda/compare.h.
#include "compare.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/ops/factory.h"
#include "core/ops/random.h"
#include "core/ops/view.h"

namespace mnemo::cuda_test {

uint64_t fresh_seed() {
  if (const char* env = std::getenv("MNEMO_TEST_SEED")) return std::stoull(env);
  std::random_device device;
  return (uint64_t(device()) << 32) | device();
}

Tensor random_cpu(const Shape& shape, DType dtype, uint64_t seed, double lo, double hi) {
  Generator gen(seed);
  Tensor values = uniform(shape, lo, hi, {DType::f64}, &gen);
  return core::to(values, dtype);
}

Tensor random_cpu_any(const Shape& shape, DType dtype, uint64_t seed) {
  return is_integral(dtype) ? random_cpu(shape, dtype, seed, -40, 40)
                            : random_cpu(shape, dtype, seed);
}

Tensor to_gpu(const Tensor& x) {
  return core::to(x, kGpu);
}

Tensor strided_copy(const Tensor& x) {
  if (x.dim() == 0) return core::clone(x);
  if (x.dim() == 1) {
    Tensor buffer = zeros({2 * x.size(0)}, {x.dtype(), x.device()});
    Tensor view = core::slice(buffer, 0, 0, 2 * x.size(0), 2);
    copy_(view, x);
    return view;
  }
  Shape swapped = x.shape();
  std::swap(swapped[swapped.size() - 1], swapped[swapped.size() - 2]);
  Tensor buffer = empty(swapped, {x.dtype(), x.device()});
  copy_(core::transpose(buffer, -1, -2), x);
  return core::transpose(buffer, -1, -2);
}

double rel_error(const Tensor& got, const Tensor& want) {
  const std::vector<double> g = got.to_vector<double>();
  const std::vector<double> w = want.to_vector<double>();
  if (g.size() != w.size()) return std::numeric_limits<double>::infinity();
  double max_diff = 0, max_want = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    if (std::isnan(g[i]) != std::isnan(w[i])) return std::numeric_limits<double>::infinity();
    if (std::isnan(g[i])) continue;
    if (std::isinf(g[i]) || std::isinf(w[i])) {
      if (g[i] != w[i]) return std::numeric_limits<double>::infinity();
      continue;
    }
    max_diff = std::max(max_diff, std::abs(g[i] - w[i]));
    max_want = std::max(max_want, std::abs(w[i]));
  }
  return max_diff / std::max(max_want, 1e-30);
}

double scaled_error(const Tensor& got, const Tensor& want, double scale) {
  const std::vector<double> g = got.to_vector<double>();
  const std::vector<double> w = want.to_vector<double>();
  if (g.size() != w.size()) return std::numeric_limits<double>::infinity();
  double max_diff = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    if (std::isnan(g[i]) || std::isnan(w[i])) return std::numeric_limits<double>::infinity();
    max_diff = std::max(max_diff, std::abs(g[i] - w[i]));
  }
  return max_diff / scale;
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  const Tensor x = core::contiguous(core::to(a, Device::cpu()));
  const Tensor y = core::contiguous(core::to(b, Device::cpu()));
  return x.shape() == y.shape() && x.dtype() == y.dtype() &&
         std::memcmp(x.data_ptr(), y.data_ptr(), size_t(x.numel()) * x.element_size()) == 0;
}

Tensor gpu_or_undefined(const Tensor& t) {
  return t.defined() ? to_gpu(t) : t;
}

double tolerance(DType dtype) {
  switch (dtype) {
    case DType::f64: return 1e-12;
    case DType::f32: return 1e-5;
    case DType::bf16:
    case DType::f16: return 1e-2;
    default: return 0;
  }
}

}  // namespace mnemo::cuda_test

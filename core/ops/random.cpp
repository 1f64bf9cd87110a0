// Random ops: the reference Philox-4x32-10 block function, the generators, and the op layer
// (argument checks, one state from the generator, output allocation, one backend call).
//
// How the state's words become values is the contract spelled out in core/ops/random.h;
// the CPU kernels (core/cpu/random.cpp) implement it with a batched, vectorised Philox and
// are tested against philox4x32() below.
#include "core/ops/random.h"

#include <cmath>
#include <limits>

#include "core/ops/view.h"

namespace mnemo {

// Ten rounds of: two 32x32 -> 64-bit multiplies, a swap of the pairs, XOR with the key;
// the key gets a Weyl increment between rounds (Random123's philox4x32_R).
std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key) {
  for (int round = 0; round < philox::kRounds; ++round) {
    if (round > 0) {
      key[0] += philox::kWeyl0;
      key[1] += philox::kWeyl1;
    }
    const uint64_t p0 = uint64_t(philox::kMultiplier0) * counter[0];
    const uint64_t p1 = uint64_t(philox::kMultiplier1) * counter[2];
    counter = {uint32_t(p1 >> 32) ^ counter[1] ^ key[0], uint32_t(p1),
               uint32_t(p0 >> 32) ^ counter[3] ^ key[1], uint32_t(p0)};
  }
  return counter;
}

Generator& default_generator() {
  static Generator generator(0);
  return generator;
}

std::mutex& default_generator_mutex() {
  static std::mutex mutex;
  return mutex;
}

void manual_seed(uint64_t seed) {
  std::lock_guard<std::mutex> lock(default_generator_mutex());
  default_generator().set_state(seed, 0);
}

namespace {

// The state for one op: from gen, or from the default generator under its mutex.
PhiloxState next_state(Generator* gen) {
  if (gen != nullptr) return gen->next();
  std::lock_guard<std::mutex> lock(default_generator_mutex());
  return default_generator().next();
}

// The largest finite value of a floating dtype.
double largest_finite(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return std::numeric_limits<float>::max();
    case DType::bf16:
      return 0x1.FEp127;  // 0x7f7f
    case DType::f16:
      return 65504.0;
    default:
      return std::numeric_limits<double>::max();
  }
}

// The largest integer magnitude m such that every integer in [-m, m] is exact in dtype.
double exact_integer_limit(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return 0x1p24;
    case DType::bf16:
      return 0x1p8;
    case DType::f16:
      return 0x1p11;
    case DType::i32:
      return 0x1p31;  // the lower end; the upper end is checked separately
    default:
      return 0x1p53;  // f64, i64 (params travel as doubles)
  }
}

void check_floating(std::string_view op, DType dtype) {
  MNEMO_CHECK(is_floating(dtype), "{}: expected a floating dtype (f32, f64, bf16, f16), got {}", op,
              dtype);
}

// Allocates the output, always advances the stream (even for an empty tensor), computes.
Tensor random_op(RandomOp op, const Shape& shape, RandomParams params, TensorOptions options,
                 Generator* gen) {
  Tensor out = Tensor::empty(shape, options.dtype, options.device);
  PhiloxState state = next_state(gen);
  if (out.numel() > 0) backend_for(options.device).random(op, params, state, out);
  if (options.requires_grad) out.set_requires_grad(true);
  return out;
}

}  // namespace

Tensor uniform(const Shape& shape, double lo, double hi, TensorOptions options, Generator* gen) {
  check_floating("uniform", options.dtype);
  MNEMO_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo < hi,
              "uniform: expected finite bounds lo < hi, got lo={} hi={}", lo, hi);
  // The bounds must be finite in the output dtype, hi - lo in the compute type (f32 but for f64).
  const double limit = largest_finite(options.dtype);
  const double scale_limit = largest_finite(options.dtype == DType::f64 ? DType::f64 : DType::f32);
  MNEMO_CHECK(std::abs(lo) <= limit && std::abs(hi) <= limit && hi - lo <= scale_limit,
              "uniform: range [{}, {}) does not fit in {}", lo, hi, options.dtype);
  return random_op(RandomOp::uniform, shape, {lo, hi}, options, gen);
}

Tensor rand(const Shape& shape, TensorOptions options, Generator* gen) {
  check_floating("rand", options.dtype);
  return uniform(shape, 0, 1, options, gen);
}

Tensor normal(const Shape& shape, double mean, double stddev, TensorOptions options,
              Generator* gen) {
  check_floating("normal", options.dtype);
  MNEMO_CHECK(std::isfinite(mean) && std::isfinite(stddev) && stddev >= 0,
              "normal: expected a finite mean and a finite std >= 0, got mean={} std={}", mean,
              stddev);
  return random_op(RandomOp::normal, shape, {mean, stddev}, options, gen);
}

Tensor randn(const Shape& shape, TensorOptions options, Generator* gen) {
  check_floating("randn", options.dtype);
  return normal(shape, 0, 1, options, gen);
}

Tensor bernoulli(const Shape& shape, double p, TensorOptions options, Generator* gen) {
  MNEMO_CHECK(p >= 0 && p <= 1, "bernoulli: probability p={} is outside [0, 1]", p);
  return random_op(RandomOp::bernoulli, shape, {p, 0}, options, gen);
}

Tensor randint(int64_t lo, int64_t hi, const Shape& shape, TensorOptions options, Generator* gen) {
  MNEMO_CHECK(lo < hi, "randint: expected lo < hi, got lo={} hi={}", lo, hi);
  constexpr int64_t kParamLimit = int64_t(1) << 53;  // params travel as exact doubles
  MNEMO_CHECK(lo >= -kParamLimit && hi <= kParamLimit,
              "randint: bounds lo={} hi={} must lie within [-2^53, 2^53]", lo, hi);
  const DType dtype = options.dtype;
  double min_value = -exact_integer_limit(dtype), max_value = exact_integer_limit(dtype);
  if (dtype == DType::i32) max_value = double(std::numeric_limits<int32_t>::max());
  if (dtype == DType::boolean) min_value = 0, max_value = 1;
  MNEMO_CHECK(double(lo) >= min_value && double(hi - 1) <= max_value,
              "randint: range [{}, {}) is not exactly representable in {}", lo, hi, dtype);
  return random_op(RandomOp::randint, shape, {double(lo), double(hi)}, options, gen);
}

Tensor multinomial(const Tensor& probs, int64_t num_samples, bool replacement, Generator* gen) {
  MNEMO_CHECK(probs.defined(), "multinomial: undefined probs");
  MNEMO_CHECK(probs.dim() == 1 || probs.dim() == 2,
              "multinomial: probs must be (C,) or (R, C), got shape {}", shape_str(probs.shape()));
  check_floating("multinomial", probs.dtype());
  const int64_t categories = probs.size(-1);
  MNEMO_CHECK(categories > 0, "multinomial: probs of shape {} has no categories",
              shape_str(probs.shape()));
  MNEMO_CHECK(num_samples >= 0, "multinomial: num_samples must be >= 0, got {}", num_samples);
  MNEMO_CHECK(replacement || num_samples <= categories,
              "multinomial: cannot draw {} samples without replacement from {} categories",
              num_samples, categories);
  Tensor rows = probs.dim() == 1 ? core::unsqueeze(probs, 0) : probs;  // (R, C)
  Tensor out = Tensor::empty({rows.size(0), num_samples}, DType::i64, probs.device());
  PhiloxState state = next_state(gen);
  if (rows.size(0) > 0) {  // even for 0 samples: the backend checks the weights
    backend_for(probs.device()).multinomial(rows, num_samples, replacement, state, out);
  }
  return probs.dim() == 1 ? core::squeeze(out, 0) : out;
}

}  // namespace mnemo

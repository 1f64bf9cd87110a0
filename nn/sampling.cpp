// Token sampling: see sampling.h. The filtering runs on the host in f64 (V values per row);
// the draw itself is one multinomial over the filtered (B, V) weights.
#include "nn/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "core/ops/factory.h"
#include "core/ops/view.h"

namespace mnemo::nn {

namespace {

// Greedy: the first index of the largest logit, and its log-softmax.
Sampled greedy(const double* x, int64_t V) {
  const int64_t token = std::max_element(x, x + V) - x;  // first of the maxima
  const double max = x[token];
  double sum = 0;
  for (int64_t i = 0; i < V; ++i) sum += std::exp(x[i] - max);
  return {token, -std::log(sum)};  // x[token] - logsumexp(x), with x[token] = max
}

// The filtered, renormalised distribution of one row (sampling.h); zero outside the kept set.
std::vector<double> filtered_probs(const double* x, int64_t V, const SamplingOptions& o) {
  std::vector<double> q(static_cast<size_t>(V));
  const double max = *std::max_element(x, x + V);
  double sum = 0;
  for (int64_t i = 0; i < V; ++i) sum += q[size_t(i)] = std::exp((x[i] - max) / o.temperature);
  for (double& v : q) v /= sum;

  const int64_t k = (o.top_k == 0 || o.top_k >= V) ? V : o.top_k;
  if (k == V && o.top_p >= 1) return q;
  // Token order: most probable first, ties by lower index.
  std::vector<int64_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  auto before = [&](int64_t a, int64_t b) {
    return q[size_t(a)] != q[size_t(b)] ? q[size_t(a)] > q[size_t(b)] : a < b;
  };
  std::partial_sort(order.begin(), order.begin() + k, order.end(), before);
  double kept_mass = 0;
  for (int64_t r = 0; r < k; ++r) kept_mass += q[size_t(order[size_t(r)])];
  int64_t keep = k;
  if (o.top_p < 1) {
    double preceding = 0;  // renormalised mass of the tokens before rank r
    for (keep = 0; keep < k && (keep == 0 || preceding < o.top_p); ++keep) {
      preceding += q[size_t(order[size_t(keep)])] / kept_mass;
    }
  }
  std::vector<double> r(static_cast<size_t>(V), 0.0);
  double mass = 0;
  for (int64_t i = 0; i < keep; ++i) mass += q[size_t(order[size_t(i)])];
  for (int64_t i = 0; i < keep; ++i) {
    const int64_t t = order[size_t(i)];
    r[size_t(t)] = q[size_t(t)] / mass;
  }
  return r;
}

}  // namespace

void validate(const SamplingOptions& o) {
  MNEMO_CHECK(std::isfinite(o.temperature) && o.temperature >= 0,
              "sampling: temperature must be finite and >= 0, got {}", o.temperature);
  MNEMO_CHECK(o.top_k >= 0, "sampling: top_k must be >= 0, got {}", o.top_k);
  MNEMO_CHECK(o.top_p > 0 && o.top_p <= 1, "sampling: top_p must be in (0, 1], got {}", o.top_p);
}

std::vector<Sampled> sample_tokens(const Tensor& logits, const SamplingOptions& options,
                                   Generator& gen) {
  validate(options);
  MNEMO_CHECK(logits.defined(), "sample_tokens: undefined logits");
  MNEMO_CHECK(logits.dim() == 2, "sample_tokens: logits must be (B, V), got shape {}",
              shape_str(logits.shape()));
  MNEMO_CHECK(is_floating(logits.dtype()), "sample_tokens: logits must be floating, got {}",
              logits.dtype());
  const int64_t B = logits.size(0), V = logits.size(1);
  MNEMO_CHECK(V >= 1, "sample_tokens: logits have an empty vocabulary (shape {})",
              shape_str(logits.shape()));
  const std::vector<double> x = logits.to_vector<double>();  // (B, V) row-major
  for (int64_t b = 0; b < B; ++b) {
    const double* row = x.data() + b * V;
    MNEMO_CHECK(std::none_of(row, row + V, [](double v) { return std::isnan(v); }),
                "sample_tokens: logits row {} contains NaN", b);
    MNEMO_CHECK(std::any_of(row, row + V, [](double v) { return v > -INFINITY; }),
                "sample_tokens: logits row {} is all -inf", b);
    MNEMO_CHECK(std::none_of(row, row + V, [](double v) { return v == INFINITY; }),
                "sample_tokens: logits row {} contains +inf", b);
  }
  std::vector<Sampled> out(static_cast<size_t>(B));
  if (options.temperature == 0) {
    for (int64_t b = 0; b < B; ++b) out[size_t(b)] = greedy(x.data() + b * V, V);
    return out;
  }
  std::vector<double> probs;  // (B, V) filtered weights
  probs.reserve(size_t(B * V));
  for (int64_t b = 0; b < B; ++b) {
    std::vector<double> r = filtered_probs(x.data() + b * V, V, options);
    probs.insert(probs.end(), r.begin(), r.end());
  }
  if (B == 0) return out;
  const Tensor weights = from_vector(probs, {B, V}, {DType::f64});
  const std::vector<int64_t> tokens = multinomial(weights, 1, true, &gen).to_vector<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    const int64_t t = tokens[size_t(b)];
    out[size_t(b)] = {t, std::log(probs[size_t(b * V + t)])};
  }
  return out;
}

Sampled sample_token(const Tensor& logits, const SamplingOptions& options, Generator& gen) {
  MNEMO_CHECK(logits.defined() && logits.dim() == 1,
              "sample_token: logits must be (V,), got shape {}",
              logits.defined() ? shape_str(logits.shape()) : std::string("undefined"));
  return sample_tokens(core::unsqueeze(logits, 0), options, gen)[0];
}

}  // namespace mnemo::nn

// Token sampling: greedy is argmax with the log-softmax of the raw logits; top_k = 1 and a tiny
// top_p reduce to greedy; the kept sets of top-k and nucleus filtering on hand-made
// distributions; empirical frequencies over many draws against the renormalised distribution
// (chi-square, z ~ 5: a correct sampler fails with probability ~1e-6 and the seeds are
// fixed); determinism of the stream; misuse.
#include <doctest/doctest.h>

#include <cmath>
#include <map>

#include "autograd/ops.h"
#include "nn/sampling.h"

using namespace mnemo;
using nn::SamplingOptions;

namespace {

// log softmax of x at i, naively in f64.
double log_softmax_at(const std::vector<double>& x, size_t i, double temperature = 1) {
  double sum = 0;
  for (double v : x) sum += std::exp(v / temperature);
  return x[i] / temperature - std::log(sum);
}

// Draws n samples of the same logits row as one batch (n, V); returns the token counts and
// checks every reported logprob against want_probs.
std::vector<int64_t> draw_counts(const std::vector<double>& row, const SamplingOptions& o,
                                 int64_t n, uint64_t seed, const std::vector<double>& want_probs) {
  const int64_t V = int64_t(row.size());
  std::vector<double> all;
  for (int64_t i = 0; i < n; ++i) all.insert(all.end(), row.begin(), row.end());
  Generator gen(seed);
  const auto samples = nn::sample_tokens(from_vector(all, {n, V}), o, gen);
  std::vector<int64_t> counts(size_t(V), 0);
  for (const nn::Sampled& s : samples) {
    REQUIRE(s.token >= 0);
    REQUIRE(s.token < V);
    ++counts[size_t(s.token)];
    CHECK(s.logprob == doctest::Approx(std::log(want_probs[size_t(s.token)])).epsilon(1e-5));
  }
  return counts;
}

// Pearson's chi-square of counts against probs over the categories with probs > 0; those
// with probs == 0 must never be drawn. The bound is mean + 5 sd of the chi-square(df).
void check_frequencies(const std::vector<int64_t>& counts, const std::vector<double>& probs,
                       int64_t n) {
  double chi2 = 0;
  int df = -1;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] == 0) {
      CHECK(counts[i] == 0);
      continue;
    }
    const double expected = probs[i] * double(n);
    chi2 += (double(counts[i]) - expected) * (double(counts[i]) - expected) / expected;
    ++df;
  }
  INFO("chi-square " << chi2 << " with " << df << " degrees of freedom");
  CHECK(chi2 <= df + 5 * std::sqrt(2.0 * df));
}

// softmax(x / T) restricted to keep (indices), renormalised.
std::vector<double> renormalised(const std::vector<double>& x, double T,
                                 const std::vector<int64_t>& keep) {
  std::vector<double> p(x.size(), 0.0);
  double sum = 0;
  for (int64_t i : keep) sum += std::exp(x[size_t(i)] / T);
  for (int64_t i : keep) p[size_t(i)] = std::exp(x[size_t(i)] / T) / sum;
  return p;
}

const std::vector<double> kLogits = {0.3, 2.0, -1.0, 1.2, 0.9, -0.4, 1.9, 0.0};

}  // namespace

TEST_CASE("sampling: greedy is argmax with the log-softmax of the raw logits") {
  for (DType dtype : {DType::f32, DType::f64, DType::bf16}) {
    INFO("dtype " << dtype_name(dtype));
    Tensor logits = from_vector(kLogits, {8}, {dtype});
    const std::vector<double> x = logits.to_vector<double>();
    Generator gen(1);
    const nn::Sampled s = nn::sample_token(logits, {0.0, 3, 0.5}, gen);
    CHECK(s.token == int64_t(argmax(logits, 0).item()));
    CHECK(s.token == 1);
    CHECK(s.logprob == doctest::Approx(log_softmax_at(x, 1)).epsilon(1e-12));
    CHECK(gen.offset() == 0);  // greedy draws nothing
  }
  // Ties go to the lowest index.
  Generator gen(1);
  CHECK(nn::sample_token(tensor({1, 5, 5, -2}), {0.0}, gen).token == 1);
  // Batched greedy: one argmax per row.
  Tensor batch = from_vector(std::vector<double>{0, 1, 2, 9, 1, 2, 0, 0, -5}, {3, 3});
  const auto rows = nn::sample_tokens(batch, {0.0}, gen);
  REQUIRE(rows.size() == 3);
  CHECK(rows[0].token == 2);
  CHECK(rows[1].token == 0);
  CHECK(rows[2].token == 0);
}

TEST_CASE("sampling: top_k = 1 and a tiny top_p are greedy with logprob 0") {
  Tensor logits = from_vector(kLogits, {8});
  for (uint64_t seed = 0; seed < 20; ++seed) {
    Generator gen(seed);
    const nn::Sampled k1 = nn::sample_token(logits, {1.3, 1, 1.0}, gen);
    CHECK(k1.token == 1);
    CHECK(k1.logprob == 0.0);
    const nn::Sampled p0 = nn::sample_token(logits, {0.7, 0, 1e-9}, gen);
    CHECK(p0.token == 1);
    CHECK(p0.logprob == 0.0);
  }
}

TEST_CASE("sampling: frequencies match the renormalised top-k distribution") {
  const double T = 0.8;
  const int64_t n = 40000;
  // Top 4 of kLogits: indices 1 (2.0), 6 (1.9), 3 (1.2), 4 (0.9).
  const std::vector<double> want = renormalised(kLogits, T, {1, 6, 3, 4});
  check_frequencies(draw_counts(kLogits, {T, 4, 1.0}, n, 11, want), want, n);
  // No filter: the full softmax(x / T).
  const std::vector<double> full = renormalised(kLogits, T, {0, 1, 2, 3, 4, 5, 6, 7});
  check_frequencies(draw_counts(kLogits, {T, 0, 1.0}, n, 12, full), full, n);
  // top_k >= V keeps everything too.
  check_frequencies(draw_counts(kLogits, {T, 100, 1.0}, n, 13, full), full, n);
}

TEST_CASE("sampling: nucleus keeps the smallest set reaching top_p") {
  // Probabilities 0.5, 0.3, 0.15, 0.05 at T = 1, shuffled over the vocabulary.
  const std::vector<double> probs = {0.15, 0.5, 0.05, 0.3};
  std::vector<double> x;
  for (double p : probs) x.push_back(std::log(p));
  const int64_t n = 30000;
  // 0.75: 0.5 < 0.75, then 0.5 + 0.3 reaches it -> {1, 3}.
  const std::vector<double> two = renormalised(x, 1, {1, 3});
  check_frequencies(draw_counts(x, {1.0, 0, 0.75}, n, 21, two), two, n);
  // 0.9 -> {1, 3, 0}.
  const std::vector<double> three = renormalised(x, 1, {1, 3, 0});
  check_frequencies(draw_counts(x, {1.0, 0, 0.9}, n, 22, three), three, n);
  // 0.5 exactly: the most probable token alone already reaches it.
  const std::vector<double> one = renormalised(x, 1, {1});
  check_frequencies(draw_counts(x, {1.0, 0, 0.5}, 200, 23, one), one, 200);
  // top-k first, then top-p on the renormalised top-k: top_k = 2 gives {0.625, 0.375};
  // top_p = 0.6 keeps only the first (0.625 >= 0.6).
  check_frequencies(draw_counts(x, {1.0, 2, 0.6}, 200, 24, one), one, 200);
  // An exact boundary: four equal logits (probabilities exactly 0.25, ties by index).
  // top_p = 0.5 is reached by tokens 0 and 1 together, so token 2 is not kept.
  const std::vector<double> flat = {0, 0, 0, 0};
  const std::vector<double> first_two = renormalised(flat, 1, {0, 1});
  check_frequencies(draw_counts(flat, {1.0, 0, 0.5}, n, 26, first_two), first_two, n);
  // top_p = 0.7 keeps both.
  check_frequencies(draw_counts(x, {1.0, 2, 0.7}, n, 25, two), two, n);
}

TEST_CASE("sampling: the same seed gives the same tokens") {
  Tensor logits = from_vector(kLogits, {8});
  auto run = [&](uint64_t seed) {
    Generator gen(seed);
    std::vector<int64_t> tokens;
    for (int i = 0; i < 64; ++i)
      tokens.push_back(nn::sample_token(logits, {1.5, 6, 0.95}, gen).token);
    CHECK(gen.offset() == 64);  // one draw per call
    return tokens;
  };
  CHECK(run(5) == run(5));
  CHECK(run(5) != run(6));
  // sample_token is sample_tokens on one row.
  Generator a(9), b(9);
  for (int i = 0; i < 16; ++i) {
    const nn::Sampled one = nn::sample_token(logits, {1.0}, a);
    const nn::Sampled row = nn::sample_tokens(core::unsqueeze(logits, 0), {1.0}, b)[0];
    CHECK(one.token == row.token);
    CHECK(one.logprob == row.logprob);
  }
}

TEST_CASE("sampling: -inf logits are never drawn; misuse throws naming the option") {
  Tensor masked = tensor({-INFINITY, 0.0, -INFINITY, 0.0});
  for (uint64_t seed = 0; seed < 50; ++seed) {
    Generator gen(seed);
    const nn::Sampled s = nn::sample_token(masked, {1.0}, gen);
    CHECK((s.token == 1 || s.token == 3));
    CHECK(s.logprob == doctest::Approx(std::log(0.5)));
  }
  Generator gen(0);
  Tensor logits = from_vector(kLogits, {8});
  CHECK_THROWS_WITH_AS(nn::sample_token(logits, {-1.0}, gen), doctest::Contains("temperature"),
                       Error);
  CHECK_THROWS_WITH_AS(nn::sample_token(logits, {1.0, -2}, gen), doctest::Contains("top_k"), Error);
  CHECK_THROWS_WITH_AS(nn::sample_token(logits, {1.0, 0, 0.0}, gen), doctest::Contains("top_p"),
                       Error);
  CHECK_THROWS_WITH_AS(nn::sample_token(logits, {1.0, 0, 1.5}, gen), doctest::Contains("top_p"),
                       Error);
  CHECK_THROWS_WITH_AS(nn::sample_token(zeros({2, 4}), {}, gen), doctest::Contains("(V,)"), Error);
  CHECK_THROWS_WITH_AS(nn::sample_tokens(zeros({4}), {}, gen), doctest::Contains("(B, V)"), Error);
  CHECK_THROWS_WITH_AS(nn::sample_token(tensor({1, NAN}), {}, gen), doctest::Contains("NaN"),
                       Error);
  CHECK_THROWS_WITH_AS(nn::sample_token(tensor({-INFINITY, -INFINITY}), {}, gen),
                       doctest::Contains("all -inf"), Error);
  CHECK_THROWS_WITH_AS(nn::sample_token(zeros({3}, {DType::i64}), {}, gen),
                       doctest::Contains("floating"), Error);
}

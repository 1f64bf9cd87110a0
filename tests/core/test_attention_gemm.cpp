// attention at f32 on shapes that exercise every edge of core/cpu/attention.cpp's in-place
// product kernel (6 x 16 tiles): row counts 1..5 past the last full tile, column strips of
// 1..15 masked lanes, depths D, Dv from 1 up, query blocks cut short, grouped-query heads,
// causal offsets of both signs (the kernel skips each tile's causally dead part).
// The forward is checked against a naive f64 softmax(q k^T * scale + mask) v written with
// loops here (sharp softmaxes included), the backward against the f64 kernel (which runs its
// products on Eigen's GEMM, a separate code path), and the f32 results bit for bit across thread
// counts.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>

#include "autograd/ops.h"
#include "core/cpu/parallel.h"
#include "support/tensors.h"

using namespace mnemo;

namespace {

struct Shape4 {
  const char* label;
  int64_t B, H, Hkv, Tq, Tk, D, Dv;
  bool causal, mask;
  double scale = 0;  // 0: 1 / sqrt(D)
};

const Shape4 kShapes[] = {
    {"one of everything", 1, 1, 1, 1, 1, 1, 1, false, false},
    {"rows 37 = 6*6 + 1, D 5, Dv 19, GQA, causal", 1, 2, 1, 37, 37, 5, 19, true, false},
    {"Tq 13, Tk 50 (strip of 2), D 33, Dv 7", 2, 3, 3, 13, 50, 33, 7, false, false},
    {"several blocks, exact strips", 1, 4, 2, 70, 70, 16, 48, true, false},
    {"causal cache, mask with -inf", 1, 2, 2, 100, 130, 24, 8, true, true},
    {"rows 4 and 3 left, Dv 15", 2, 1, 1, 28, 27, 3, 15, false, true},
    {"causal Tq > Tk: early rows see no key", 2, 2, 1, 45, 30, 9, 20, true, false},
    {"causal, one long block", 1, 1, 1, 32, 200, 12, 40, true, true},
    // Score gaps of hundreds: exp underflows (the kernel's exp clamps its argument at -87).
    {"sharp softmax, scale 40", 1, 2, 2, 20, 40, 8, 8, true, false, 40.0},
};

// A (Tq, Tk) mask in [-1, 1) with about one entry in seven -inf, never a row's first key.
Tensor random_mask(int64_t Tq, int64_t Tk, uint64_t seed, DType dtype) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(-1, 1);
  std::vector<double> v(size_t(Tq * Tk));
  for (int64_t i = 0; i < Tq; ++i) {
    for (int64_t j = 0; j < Tk; ++j) {
      const double x = dist(rng);
      v[size_t(i * Tk + j)] = j > 0 && x > 0.72 ? -std::numeric_limits<double>::infinity() : x;
    }
  }
  return from_vector(v, {Tq, Tk}, {dtype});
}

struct GemmInputs {
  Tensor q, k, v, dout;
  core::AttentionOptions options;
};

GemmInputs make(const Shape4& s, DType dtype) {
  GemmInputs in;
  in.q = test::random_tensor({s.B, s.H, s.Tq, s.D}, 1, dtype);
  in.k = test::random_tensor({s.B, s.Hkv, s.Tk, s.D}, 2, dtype);
  in.v = test::random_tensor({s.B, s.Hkv, s.Tk, s.Dv}, 3, dtype);
  in.dout = test::random_tensor({s.B, s.H, s.Tq, s.Dv}, 4, dtype);
  in.options.causal = s.causal;
  in.options.scale = s.scale;
  if (s.mask) in.options.mask = random_mask(s.Tq, s.Tk, 5, dtype);
  return in;
}

// out (B, H, Tq, Dv) by the definition, in f64 loops.
std::vector<double> naive_out(const Shape4& s, const GemmInputs& in) {
  const std::vector<double> q = in.q.to_vector<double>(), k = in.k.to_vector<double>(),
                            v = in.v.to_vector<double>();
  const std::vector<double> mask =
      s.mask ? in.options.mask.to_vector<double>() : std::vector<double>();
  const double scale = s.scale != 0 ? s.scale : 1 / std::sqrt(double(s.D));
  std::vector<double> out;
  for (int64_t b = 0; b < s.B; ++b) {
    for (int64_t h = 0; h < s.H; ++h) {
      const int64_t hk = h / (s.H / s.Hkv);
      for (int64_t i = 0; i < s.Tq; ++i) {
        std::vector<double> w(size_t(s.Tk), 0.0);
        double max = -std::numeric_limits<double>::infinity(), sum = 0;
        for (int64_t j = 0; j < s.Tk; ++j) {
          if (s.causal && j > i + (s.Tk - s.Tq)) {
            w[size_t(j)] = -std::numeric_limits<double>::infinity();
            continue;
          }
          double dot = 0;
          for (int64_t d = 0; d < s.D; ++d) {
            dot += q[size_t(((b * s.H + h) * s.Tq + i) * s.D + d)] *
                   k[size_t(((b * s.Hkv + hk) * s.Tk + j) * s.D + d)];
          }
          w[size_t(j)] = dot * scale + (s.mask ? mask[size_t(i * s.Tk + j)] : 0.0);
          max = std::max(max, w[size_t(j)]);
        }
        for (double& x : w)
          sum += x == -std::numeric_limits<double>::infinity() ? 0 : std::exp(x - max);
        for (int64_t e = 0; e < s.Dv; ++e) {
          double acc = 0;
          for (int64_t j = 0; j < s.Tk; ++j) {
            if (w[size_t(j)] == -std::numeric_limits<double>::infinity()) continue;
            acc += std::exp(w[size_t(j)] - max) / sum *
                   v[size_t(((b * s.Hkv + hk) * s.Tk + j) * s.Dv + e)];
          }
          out.push_back(acc);
        }
      }
    }
  }
  return out;
}

// max |got - want| <= tol * max |want|.
void check_max_error(const Tensor& got, const std::vector<double>& want, double tol) {
  const std::vector<double> g = got.to_vector<double>();
  REQUIRE(g.size() == want.size());
  double worst = 0, scale = 1e-30;
  for (size_t i = 0; i < g.size(); ++i) {
    worst = std::max(worst, std::abs(g[i] - want[i]));
    scale = std::max(scale, std::abs(want[i]));
  }
  CHECK(worst <= tol * scale);
}

}  // namespace

TEST_CASE("attention gemm: f32 forward matches naive f64 loops on ragged shapes") {
  for (const Shape4& s : kShapes) {
    INFO(std::string(s.label));
    const GemmInputs in = make(s, DType::f32);
    core::AttentionOutput o = core::attention(in.q, in.k, in.v, in.options);
    // f32 rounds the scores to about 1e-7 of their size, which grows with the scale.
    check_max_error(o.out, naive_out(s, in), 2e-6 * std::max(1.0, s.scale));
  }
}

TEST_CASE("attention gemm: f32 backward matches the f64 kernel on ragged shapes") {
  for (const Shape4& s : kShapes) {
    INFO(std::string(s.label));
    const GemmInputs in = make(s, DType::f32);
    GemmInputs wide = in;
    for (Tensor* t : {&wide.q, &wide.k, &wide.v, &wide.dout}) *t = core::to(*t, DType::f64);
    if (s.mask) wide.options.mask = core::to(in.options.mask, DType::f64);
    core::AttentionOutput o = core::attention(in.q, in.k, in.v, in.options);
    core::AttentionOutput ow = core::attention(wide.q, wide.k, wide.v, wide.options);
    core::AttentionGrads g =
        core::attention_backward(in.q, in.k, in.v, in.options, o.out, o.lse, in.dout);
    core::AttentionGrads gw =
        core::attention_backward(wide.q, wide.k, wide.v, wide.options, ow.out, ow.lse, wide.dout);
    check_max_error(o.lse, ow.lse.to_vector<double>(), 1e-6);
    check_max_error(g.dq, gw.dq.to_vector<double>(), 1e-5);
    check_max_error(g.dk, gw.dk.to_vector<double>(), 1e-5);
    check_max_error(g.dv, gw.dv.to_vector<double>(), 1e-5);
  }
}

TEST_CASE("attention gemm: ragged f32 results are bit-identical across thread counts") {
  const int threads = num_threads();
  for (const Shape4& s : kShapes) {
    INFO(std::string(s.label));
    const GemmInputs in = make(s, DType::f32);
    auto run = [&](int n) {
      set_num_threads(n);
      core::AttentionOutput o = core::attention(in.q, in.k, in.v, in.options);
      core::AttentionGrads g =
          core::attention_backward(in.q, in.k, in.v, in.options, o.out, o.lse, in.dout);
      return std::vector<std::vector<float>>{o.out.to_vector<float>(), o.lse.to_vector<float>(),
                                             g.dq.to_vector<float>(), g.dk.to_vector<float>(),
                                             g.dv.to_vector<float>()};
    };
    const auto one = run(1), three = run(3);
    set_num_threads(threads);
    for (size_t i = 0; i < one.size(); ++i) {
      INFO("output ", i);
      CHECK(one[i] == three[i]);
    }
  }
}

// Layers against independent references: explicit matmuls, naive loops, closed forms.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/engine.h"
#include "nn/dropout.h"
#include "nn/gru.h"
#include "nn/linear.h"
#include "nn/mlp.h"
#include "nn/norm.h"
#include "nn_test_util.h"

namespace mnemo::nn {
namespace {

using test::check_error;
using test::max_abs_diff;

TEST_CASE("Linear: equals x @ W^T + b, init normal(0, 0.02) from the generator") {
  Generator gen(7);
  Linear lin(5, 3, true, &gen);
  CHECK(lin.weight.shape() == Shape{3, 5});
  const Tensor x = randn({2, 4, 5});
  const Tensor expect = matmul(x, transpose(lin.weight, 0, 1)) + lin.bias;
  CHECK(max_abs_diff(lin.forward(x), expect) < 1e-6);
  Generator gen2(7);
  CHECK(max_abs_diff(Linear(5, 3, true, &gen2).weight, lin.weight) == 0);  // seeded

  Linear big(256, 256);
  const std::vector<double> w = big.weight.to_vector<double>();
  double sq = 0;
  for (double v : w) sq += v * v;
  CHECK(std::sqrt(sq / double(w.size())) == doctest::Approx(0.02).epsilon(0.02));
  check_error([&] { lin.forward(ones({2, 4})); }, {"linear"});
}

TEST_CASE("Embedding: rows of the weight") {
  Embedding emb(10, 4);
  const Tensor ids = from_vector(std::vector<int64_t>{3, 0, 9, 3}, {2, 2});
  const Tensor out = emb.forward(ids);
  CHECK(out.shape() == Shape{2, 2, 4});
  for (int64_t i = 0; i < 4; ++i) {
    const int64_t id = int64_t(ids.at({i / 2, i % 2}));
    for (int64_t d = 0; d < 4; ++d) CHECK(out.at({i / 2, i % 2, d}) == emb.weight.at({id, d}));
  }
}

TEST_CASE("RMSNorm and LayerNorm: naive per-row formulas") {
  const int64_t C = 6;
  RMSNorm rms(C, 1e-5);
  LayerNorm ln(C);
  {
    NoGradGuard g;
    copy_(rms.weight, randn({C}));
    copy_(ln.weight, randn({C}));
    copy_(ln.bias, randn({C}));
  }
  const Tensor x = randn({3, C});
  const Tensor y_rms = rms.forward(x), y_ln = ln.forward(x);
  for (int64_t r = 0; r < 3; ++r) {
    double ms = 0, mean = 0, var = 0;
    for (int64_t c = 0; c < C; ++c) ms += x.at({r, c}) * x.at({r, c}) / C, mean += x.at({r, c}) / C;
    for (int64_t c = 0; c < C; ++c) var += (x.at({r, c}) - mean) * (x.at({r, c}) - mean) / C;
    for (int64_t c = 0; c < C; ++c) {
      CHECK(
          y_rms.at({r, c}) ==
          doctest::Approx(x.at({r, c}) / std::sqrt(ms + 1e-5) * rms.weight.at({c})).epsilon(1e-5));
      CHECK(y_ln.at({r, c}) ==
            doctest::Approx((x.at({r, c}) - mean) / std::sqrt(var + 1e-5) * ln.weight.at({c}) +
                            ln.bias.at({c}))
                .epsilon(1e-5));
    }
  }
  CHECK(RMSNorm(4).weight.to_vector<double>() == std::vector<double>(4, 1.0));
}

TEST_CASE("Dropout: masks and rescales when training, identity in eval") {
  Generator gen(3);
  Dropout drop(0.25, &gen);
  const Tensor x = ones({4000});
  const std::vector<double> y = drop.forward(x).to_vector<double>();
  int64_t zeros_seen = 0;
  for (double v : y) {
    if (v == 0)
      ++zeros_seen;
    else
      CHECK(v == doctest::Approx(1 / 0.75));
  }
  CHECK(double(zeros_seen) / 4000 == doctest::Approx(0.25).epsilon(0.1));
  drop.eval();
  CHECK(drop.forward(x).is_same(x));
  check_error([] { Dropout(1.0); }, {"Dropout", "p"});
}

TEST_CASE("SwiGLU: down(silu(gate(x)) * up(x)) with three separate matmuls, same gradients") {
  SwiGLU mlp(6, 10);
  const Tensor x = randn({2, 3, 6});
  const Tensor fused = mlp.forward(x);
  const Tensor g = linear(x, mlp.gate_proj->weight), u = linear(x, mlp.up_proj->weight);
  const Tensor ref = linear(g * sigmoid(g) * u, mlp.down_proj->weight);
  CHECK(max_abs_diff(fused, ref) < 1e-6);
  backward(sum(fused * fused));
  const Tensor dgate = mlp.gate_proj->weight.grad(), dup = mlp.up_proj->weight.grad();
  mlp.zero_grad();
  backward(sum(ref * ref));
  CHECK(max_abs_diff(dgate, mlp.gate_proj->weight.grad()) < 1e-5);
  CHECK(max_abs_diff(dup, mlp.up_proj->weight.grad()) < 1e-5);
  CHECK(mlp.named_parameters()[0].first == "gate_proj.weight");
}

TEST_CASE("MLP: proj(gelu(fc(x)))") {
  MLP mlp(4, 8);
  const Tensor x = randn({5, 4});
  const Tensor h = matmul(x, transpose(mlp.fc->weight, 0, 1)) + mlp.fc->bias;
  const Tensor ref =
      matmul(0.5 * h * (1.0 + erf(h / std::sqrt(2.0))), transpose(mlp.proj->weight, 0, 1)) +
      mlp.proj->bias;
  CHECK(max_abs_diff(mlp.forward(x), ref) < 1e-6);
}

TEST_CASE("GRUCell: PyTorch's equations, element by element") {
  const int64_t B = 2, I = 3, H = 4;
  GRUCell cell(I, H);
  const Tensor x = randn({B, I}), h = randn({B, H});
  const Tensor out = cell.forward(x, h);
  auto sig = [](double v) { return 1 / (1 + std::exp(-v)); };
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t j = 0; j < H; ++j) {
      double gi[3], gh[3];
      for (int64_t gate = 0; gate < 3; ++gate) {
        const int64_t row = gate * H + j;
        gi[gate] = cell.bias_ih.at({row});
        gh[gate] = cell.bias_hh.at({row});
        for (int64_t k = 0; k < I; ++k) gi[gate] += cell.weight_ih.at({row, k}) * x.at({b, k});
        for (int64_t k = 0; k < H; ++k) gh[gate] += cell.weight_hh.at({row, k}) * h.at({b, k});
      }
      const double r = sig(gi[0] + gh[0]), z = sig(gi[1] + gh[1]);
      const double n = std::tanh(gi[2] + r * gh[2]);
      CHECK(out.at({b, j}) == doctest::Approx((1 - z) * n + z * h.at({b, j})).epsilon(1e-5));
    }
  }
  CHECK(max_abs_diff(cell.forward(x), cell.forward(x, zeros({B, H}))) == 0);
  check_error([&] { cell.forward(ones({B, I + 1})); }, {"GRUCell"});
}

}  // namespace
}  // namespace mnemo::nn

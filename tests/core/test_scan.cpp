// scan (core op): h_t = a_t * h_{t-1} + x_t against a reference that walks multi-indices with
// Tensor::at (independent of the op's (B, T, C) flattening), along every dim, with broadcast
// a (one coefficient per step for all channels included), with and without h0, strided
// inputs, bf16, the backward against reverse loops, and the errors misuse raises.
#include <doctest/doctest.h>

#include <random>

#include "autograd/engine.h"
#include "autograd/ops.h"
#include "support/tensors.h"

using namespace mnemo;
using test::check_close;
using test::random_tensor;
using test::values;

namespace {

// t.at(index) where t broadcasts to index's shape (size-1 dims read index 0, missing leading
// dims are dropped).
double at_broadcast(const Tensor& t, const std::vector<int64_t>& index) {
  std::vector<int64_t> own(size_t(t.dim()));
  for (int64_t d = 0; d < t.dim(); ++d) {
    int64_t i = index[index.size() - size_t(t.dim() - d)];
    own[size_t(d)] = t.size(d) == 1 ? 0 : i;
  }
  return t.at(own);
}

// Calls fn(state_index) for every multi-index of shape without dim, row-major.
template <typename Fn>
void for_each_state(const Shape& shape, int64_t dim, Fn&& fn) {
  Shape state = shape;
  state.erase(state.begin() + dim);
  for (int64_t flat = 0; flat < numel(state); ++flat) {
    std::vector<int64_t> index(state.size());
    for (int64_t d = int64_t(state.size()) - 1, rest = flat; d >= 0; --d) {
      index[size_t(d)] = rest % state[size_t(d)];
      rest /= state[size_t(d)];
    }
    fn(index);
  }
}

std::vector<int64_t> with_dim(std::vector<int64_t> state_index, int64_t dim, int64_t t) {
  state_index.insert(state_index.begin() + dim, t);
  return state_index;
}

int64_t flat_index(const Shape& shape, const std::vector<int64_t>& index) {
  int64_t f = 0;
  for (size_t d = 0; d < shape.size(); ++d) f = f * shape[d] + index[d];
  return f;
}

// h in the broadcast shape, row-major.
std::vector<double> reference_scan(const Tensor& a, const Tensor& x, int64_t dim,
                                   const Tensor& h0) {
  Shape shape = broadcast_shapes(a.shape(), x.shape(), "test");
  std::vector<double> h(size_t(numel(shape)));
  for_each_state(shape, dim, [&](const std::vector<int64_t>& s) {
    double carry = h0.defined() ? at_broadcast(h0, s) : 0.0;
    for (int64_t t = 0; t < shape[dim]; ++t) {
      std::vector<int64_t> i = with_dim(s, dim, t);
      carry = at_broadcast(a, i) * carry + at_broadcast(x, i);
      h[size_t(flat_index(shape, i))] = carry;
    }
  });
  return h;
}

}  // namespace

TEST_CASE("scan: forward matches the recurrence along every dim") {
  struct Case {
    const char* label;
    Shape a, x;
    int64_t dim;
    bool h0;
  };
  const Case cases[] = {
      {"(2,5,3) dim 1", {2, 5, 3}, {2, 5, 3}, 1, false},
      {"(2,5,3) dim 1 with h0", {2, 5, 3}, {2, 5, 3}, 1, true},
      {"(4,3,2) dim 0 with h0", {4, 3, 2}, {4, 3, 2}, 0, true},
      {"(3,2,6) dim -1 (last)", {3, 2, 6}, {3, 2, 6}, -1, true},
      {"broadcast a (1,5,1) with x (2,5,3)", {1, 5, 1}, {2, 5, 3}, 1, true},
      {"broadcast a (5,1) with x (2,5,70) (two channel chunks)", {5, 1}, {2, 5, 70}, 1, true},
      {"broadcast x (4,) with a (3,4)", {3, 4}, {4}, 0, false},
      {"1-d (7,)", {7}, {7}, 0, true},
      {"size-1 scan dim (2,1,3)", {2, 1, 3}, {2, 1, 3}, 1, true},
  };
  for (DType dtype : {DType::f64, DType::f32}) {
    for (const Case& c : cases) {
      INFO(std::string(c.label), " ", dtype_name(dtype));
      Tensor a = random_tensor(c.a, 1, dtype, 0.5, 1.0);
      Tensor x = random_tensor(c.x, 2, dtype);
      Shape shape = broadcast_shapes(c.a, c.x, "test");
      int64_t dim = normalize_dim(c.dim, int64_t(shape.size()), "test");
      Shape state = shape;
      state.erase(state.begin() + dim);
      Tensor h0 = c.h0 ? random_tensor(state, 3, dtype) : Tensor();
      Tensor h = core::scan(a, x, c.dim, h0);
      CHECK(h.shape() == shape);
      CHECK(h.dtype() == dtype);
      check_close(values(h), reference_scan(a, x, dim, h0), dtype == DType::f64 ? 1e-12 : 1e-5);
    }
  }
}

TEST_CASE("scan: strided inputs, a broadcast h0, mixed dtypes and bf16") {
  Tensor a = core::transpose(random_tensor({3, 6}, 4, DType::f64, 0.5, 1), 0, 1);  // (6, 3)
  Tensor x = core::transpose(random_tensor({3, 6}, 5), 0, 1);
  REQUIRE_FALSE(a.is_contiguous());
  Tensor h0 = random_tensor({1}, 6);  // broadcasts to the state shape (3,)
  check_close(values(core::scan(a, x, 0, h0)), reference_scan(a, x, 0, h0), 1e-12);
  // f32 a with f64 x computes in f64.
  Tensor h = core::scan(core::to(a, DType::f32), x, 0);
  CHECK(h.dtype() == DType::f64);
  // bf16: the state is carried in f32 and rounded once per output.
  Tensor a16 = core::to(random_tensor({2, 200, 4}, 7, DType::f64, 0.9, 1), DType::bf16);
  Tensor x16 = core::to(random_tensor({2, 200, 4}, 8), DType::bf16);
  Tensor h16 = core::scan(a16, x16, 1);
  CHECK(h16.dtype() == DType::bf16);
  std::vector<double> ref = reference_scan(a16, x16, 1, {});
  std::vector<double> got = values(h16);
  for (size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i] == doctest::Approx(ref[i]).epsilon(1e-2).scale(std::abs(ref[i]) + 0.05));
  }
}

TEST_CASE("scan: backward matches the reverse recurrence") {
  // (2, 4, 3) along dim 1, with a broadcast over the batch: da comes back in the full shape.
  const int64_t B = 2, T = 4, C = 3;
  Tensor a = random_tensor({1, T, C}, 9, DType::f64, 0.5, 1);
  Tensor x = random_tensor({B, T, C}, 10);
  Tensor h0 = random_tensor({B, C}, 11);
  Tensor dh = random_tensor({B, T, C}, 12);
  Tensor h = core::scan(a, x, 1, h0);
  core::ScanGrads g = core::scan_backward(a, h, 1, h0, dh);
  CHECK(g.da.shape() == Shape{B, T, C});
  CHECK(g.dh0.shape() == Shape{B, C});
  std::vector<double> da(size_t(B * T * C)), dx(da.size()), dh0(size_t(B * C));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t c = 0; c < C; ++c) {
      double grad = 0;  // dL/dh_t in total
      for (int64_t t = T - 1; t >= 0; --t) {
        double a_next = t + 1 < T ? a.at({0, t + 1, c}) : 0.0;
        grad = dh.at({b, t, c}) + a_next * grad;
        double h_prev = t > 0 ? h.at({b, t - 1, c}) : h0.at({b, c});
        dx[size_t((b * T + t) * C + c)] = grad;
        da[size_t((b * T + t) * C + c)] = grad * h_prev;
      }
      dh0[size_t(b * C + c)] = a.at({0, 0, c}) * grad;
    }
  }
  check_close(values(g.da), da, 1e-12);
  check_close(values(g.dx), dx, 1e-12);
  check_close(values(g.dh0), dh0, 1e-12);
  // Without h0: no dh0, and da_0 = 0 (h_{-1} = 0).
  core::ScanGrads g2 = core::scan_backward(a, core::scan(a, x, 1), 1, {}, dh);
  CHECK_FALSE(g2.dh0.defined());
  CHECK(g2.da.at({1, 0, 2}) == 0.0);
}

TEST_CASE("scan: one coefficient per step for all channels equals the coefficient expanded") {
  // a (G, N, 1) over x (G, N, P), as for a gate per chunk applied to a memory's weights. The
  // CPU takes a as (B, T, 1) and returns da in that shape (the channel sum done by the
  // backend); P = 150 spans three of its channel chunks.
  const int64_t G = 3, N = 5, P = 150;
  for (DType dtype : {DType::f64, DType::f32}) {
    INFO(dtype_name(dtype));
    Tensor a = random_tensor({G, N, 1}, 40, dtype, 0.5, 1);
    Tensor a_full = core::contiguous(core::expand(a, {G, N, P}));
    Tensor x = random_tensor({G, N, P}, 41, dtype);
    Tensor h0 = random_tensor({G, P}, 42, dtype);
    Tensor dh = random_tensor({G, N, P}, 43, dtype);
    const double tol = dtype == DType::f64 ? 1e-12 : 1e-4;
    Tensor h = core::scan(a, x, 1, h0);
    check_close(values(h), values(core::scan(a_full, x, 1, h0)), tol);
    core::ScanGrads g = core::scan_backward(a, h, 1, h0, dh);
    core::ScanGrads full = core::scan_backward(a_full, h, 1, h0, dh);
    CHECK(g.da.shape() == Shape{G, N, 1});
    check_close(values(g.da), values(core::sum(full.da, {2}, true)), tol);
    check_close(values(g.dx), values(full.dx), tol);
    check_close(values(g.dh0), values(full.dh0), tol);
  }
  // Through autograd, a coefficient (N, 1) shared by every group: its gradient sums over both.
  Tensor a = random_tensor({N, 1}, 44, DType::f64, 0.5, 1).set_requires_grad();
  Tensor x = random_tensor({G, N, P}, 45).set_requires_grad();
  Tensor dh = random_tensor({G, N, P}, 46);
  backward(sum(scan(a, x, 1) * dh));
  Tensor a_full = core::contiguous(core::expand(detach(a), {G, N, P}));
  core::ScanGrads full = core::scan_backward(a_full, core::scan(a_full, detach(x), 1), 1, {}, dh);
  check_close(values(a.grad()), values(core::sum(full.da, {0, 2}, false)), 1e-12);
  // bf16 carries and sums in f32.
  Tensor a16 = core::to(random_tensor({G, N, 1}, 47, DType::f64, 0.9, 1), DType::bf16);
  Tensor x16 = core::to(random_tensor({G, N, P}, 48), DType::bf16);
  Tensor h16 = core::scan(a16, x16, 1);
  std::vector<double> ref = reference_scan(a16, x16, 1, {});
  std::vector<double> got = values(h16);
  for (size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i] == doctest::Approx(ref[i]).epsilon(1e-2).scale(std::abs(ref[i]) + 0.05));
  }
}

TEST_CASE("scan: an empty scan dim passes h0 through to nothing") {
  Tensor a = zeros({2, 0, 3}, {DType::f64});
  Tensor h0 = ones({2, 3}, {DType::f64});
  Tensor h = core::scan(a, a, 1, h0);
  CHECK(h.shape() == Shape{2, 0, 3});
  core::ScanGrads g = core::scan_backward(a, h, 1, h0, h);
  CHECK(values(g.dh0) == std::vector<double>(6, 0.0));
}

TEST_CASE("scan: misuse throws an error naming the op") {
  Tensor a = random_tensor({2, 5, 3}, 13);
  Tensor x = random_tensor({2, 5, 3}, 14);
  auto throws = [](auto fn, const char* op) {
    CHECK_THROWS_WITH_AS(fn(), doctest::Contains(op), Error);
  };
  throws([&] { core::scan(a, x, 1, random_tensor({2, 5}, 15)); }, "scan: h0 of shape (2, 5)");
  throws([&] { core::scan(a, x, 3); }, "scan: dim 3");
  throws([&] { core::scan(a, random_tensor({2, 4, 3}, 16), 1); }, "scan");
  throws([&] { core::scan(core::to(a, DType::i64), x, 1); }, "scan: a must be floating");
  throws([&] { core::scan(scalar_tensor(1.0, {DType::f64}), scalar_tensor(1.0, {DType::f64}), 0); },
         "scan: inputs are 0-d");
  Tensor h = core::scan(a, x, 1);
  throws(
      [&] {
        core::scan_backward(a, h, 1, {}, random_tensor({2, 5}, 17));
      },
      "scan_backward: gradient");
  throws(
      [&] {
        core::scan_backward(random_tensor({4, 5, 3}, 18), h, 1, {}, h);
      },
      "scan_backward: a of shape (4, 5, 3)");
  throws([&] { scan(a, x, 1, random_tensor({3, 2}, 19)); }, "scan");
}

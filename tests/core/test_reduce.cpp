// Reductions, scans, top-k and arg-reductions (core ops): values against naive loops written
// here (every element visited in row-major order, folded in f64), over single dims, several
// dims, all dims, negative dims, keepdim, non-contiguous and broadcast inputs, every dtype
// family; the large-shape paths (blocked and parallel) against f64 references and for bitwise
// independence of the thread count; NaN and tie rules; and the errors misuse raises.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "autograd/ops.h"
#include "core/cpu/parallel.h"
#include "support/tensors.h"

using namespace mnemo;
using mnemo::test::unravel;
using test::kInf;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Values in [-2, 2).
Tensor random_pm2(const Shape& shape, uint64_t seed, DType dtype = DType::f64) {
  return test::random_tensor(shape, seed, dtype, -2, 2);
}

// Small integers (exact in every dtype, many ties).
Tensor random_ints(const Shape& shape, uint64_t seed, DType dtype, int lo = -5, int hi = 5) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> dist(lo, hi);
  std::vector<double> v(size_t(numel(shape)));
  for (double& x : v) x = dist(rng);
  return from_vector(v, shape, {dtype});
}

// The same values as t, laid out with its last two dims transposed in memory.
Tensor transposed_layout(const Tensor& t) {
  return core::transpose(core::contiguous(core::transpose(t, -1, -2)), -1, -2);
}

// The reference reduction: op is 's' (sum), '>' (max) or '<' (min); dims normalised. Returns the
// outputs in row-major order of the kept dims.
std::vector<double> reference_reduce(const Tensor& x, const std::vector<int64_t>& dims, char op) {
  const Shape& shape = x.shape();
  Shape out_shape = reduced_shape(shape, dims, true);
  std::vector<double> xs = x.to_vector<double>();
  double init = op == 's' ? 0 : (op == '>' ? -kInf : kInf);
  std::vector<double> out(size_t(numel(out_shape)), init);
  for (int64_t i = 0; i < x.numel(); ++i) {
    std::vector<int64_t> index = unravel(i, shape);
    int64_t o = 0;
    for (size_t d = 0; d < shape.size(); ++d)
      o = o * out_shape[d] + (out_shape[d] == 1 ? 0 : index[d]);
    double& acc = out[size_t(o)];
    double v = xs[size_t(i)];
    if (op == 's') acc += v;
    if (op == '>') acc = std::isnan(v) || v > acc ? v : acc;
    if (op == '<') acc = std::isnan(v) || v < acc ? v : acc;
  }
  return out;
}

void check_near(const std::vector<double>& got, const std::vector<double>& want, double rtol,
                double atol = 0) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(want[i])) {
      CHECK_MESSAGE(std::isnan(got[i]), "element ", i);
      continue;
    }
    CHECK_MESSAGE(std::abs(got[i] - want[i]) <= atol + rtol * std::abs(want[i]), "element ", i,
                  ": got ", got[i], ", want ", want[i]);
  }
}

// Every way to pick dims of a rank-3 tensor, with some negative spellings.
const std::vector<std::vector<int64_t>> kDimSets = {{0},     {1},    {2},     {-1}, {0, 1},
                                                    {0, -1}, {1, 2}, {-3, 1}, {},   {0, 1, 2}};

void check_all_dim_sets(const Tensor& x, double rtol) {
  for (const auto& dims : kDimSets) {
    for (bool keepdim : {false, true}) {
      INFO("dims [", fmt::format("{}", fmt::join(dims, ",")), "] keepdim ", keepdim, " dtype ",
           dtype_name(x.dtype()));
      std::vector<int64_t> norm = normalize_dims(dims, x.dim(), "test");
      CHECK(core::sum(x, dims, keepdim).shape() == reduced_shape(x.shape(), norm, keepdim));
      check_near(core::sum(x, dims, keepdim).to_vector<double>(), reference_reduce(x, norm, 's'),
                 rtol, 1e-12);
      check_near(core::amax(x, dims, keepdim).to_vector<double>(), reference_reduce(x, norm, '>'),
                 0);
      check_near(core::amin(x, dims, keepdim).to_vector<double>(), reference_reduce(x, norm, '<'),
                 0);
    }
  }
}

}  // namespace

TEST_CASE("sum/amax/amin: every dim set, keepdim, layouts and dtypes against naive loops") {
  Tensor x = random_pm2({3, 4, 5}, 1);
  SUBCASE("contiguous f64") {
    check_all_dim_sets(x, 1e-12);
  }
  SUBCASE("contiguous f32") {
    check_all_dim_sets(core::to(x, DType::f32), 1e-6);
  }
  SUBCASE("bf16 and f16 (values exactly representable)") {
    check_all_dim_sets(random_ints({3, 4, 5}, 2, DType::bf16), 0);
    check_all_dim_sets(random_ints({3, 4, 5}, 3, DType::f16), 0);
  }
  SUBCASE("i32 and i64") {
    check_all_dim_sets(random_ints({3, 4, 5}, 4, DType::i32), 0);
    check_all_dim_sets(random_ints({3, 4, 5}, 5, DType::i64), 0);
  }
  SUBCASE("transposed memory layout") {
    Tensor t = transposed_layout(x);
    REQUIRE(!t.is_contiguous());
    check_all_dim_sets(t, 1e-12);
  }
  SUBCASE("permuted and strided views") {
    Tensor p = core::permute(random_pm2({5, 3, 4}, 6), {1, 2, 0});
    check_all_dim_sets(p, 1e-12);
    Tensor s = core::slice(random_pm2({3, 8, 5}, 7), 1, 0, 8, 2);
    check_all_dim_sets(s, 1e-12);
  }
  SUBCASE("broadcast (stride-0) input") {
    Tensor e = core::expand(random_pm2({3, 1, 5}, 8), {3, 4, 5});
    check_all_dim_sets(e, 1e-12);
  }
  SUBCASE("size-1 dims") {
    check_all_dim_sets(random_pm2({1, 4, 1}, 9), 1e-12);
  }
}

TEST_CASE("sum: dtype rules, integer overflow, bool counts, 0-d and empty inputs") {
  // i32 sums accumulate in i64: 3 * 2e9 does not fit in 32 bits.
  Tensor big = full({3}, 2e9, {DType::i64});
  Tensor big32 = core::to(full({3}, 1e9, {DType::i64}), DType::i32);
  CHECK(core::sum(big32).dtype() == DType::i64);
  CHECK(core::sum(big32).item() == 3e9);
  CHECK(core::sum(big).item() == 6e9);
  Tensor flags = from_vector(std::vector<double>{1, 0, 1, 1}, {4}, {DType::boolean});
  CHECK(core::sum(flags).dtype() == DType::i64);
  CHECK(core::sum(flags).item() == 3);
  CHECK(core::sum(core::to(big32, DType::f32)).dtype() == DType::f32);
  // 0-d: reducing over nothing.
  Tensor s = scalar_tensor(2.5, {DType::f64});
  CHECK(core::sum(s).item() == 2.5);
  CHECK(core::amax(s, {}, true).item() == 2.5);
  // Empty reduction: the sum is 0.
  Tensor e = zeros({3, 0});
  CHECK(core::sum(e, {1}).to_vector<double>() == std::vector<double>{0, 0, 0});
  CHECK(core::sum(e).item() == 0);
}

TEST_CASE("sum: long reductions (blocked, parallel paths) against f64 references") {
  struct Case {
    Shape shape;
    std::vector<int64_t> dims;
  };
  // Each case crosses a block boundary (16384 elements) in its reduction.
  for (const Case& c : std::vector<Case>{{{100003}, {}},       // one output, inner order
                                         {{3, 50001}, {1}},    // few outputs, inner order
                                         {{40001, 3}, {0}},    // few outputs, outer order
                                         {{20000, 300}, {0}},  // bias gradient shape
                                         {{30, 700, 40}, {0, 1}},
                                         {{64, 40000}, {1}},  // many outputs
                                         {{9, 3000, 7}, {0, 2}},
                                         {{3, 5000}, {0}},       // outputs in two tiles
                                         {{64, 100, 300}, {1}},  // kept dims (64, 300)
                                         {{50, 800, 64}, {0, 1}}}) {
    for (bool strided : {false, true}) {
      INFO("shape ", shape_str(c.shape), " strided ", strided);
      Tensor x = random_pm2(c.shape, 11, DType::f32);
      // Every other element of dim 1 (dim 0 of a 1-d x): dims that do not merge into one run.
      const int64_t d = x.dim() > 1 ? 1 : 0;
      if (strided) x = core::slice(x, d, 0, x.shape()[size_t(d)], 2);
      std::vector<int64_t> norm = normalize_dims(c.dims, x.dim(), "test");
      check_near(core::sum(x, c.dims).to_vector<double>(), reference_reduce(x, norm, 's'), 1e-5,
                 1e-3);
      check_near(core::amax(x, c.dims).to_vector<double>(), reference_reduce(x, norm, '>'), 0);
    }
  }
}

// With 1 thread, (3, 200000) over dim 1 and (3, 5000, 300) over dim 1 take the one-task-per-
// output path; with 3 or 4 threads they take the one-task-per-block path. Same bits either way.
TEST_CASE("sum: results are bitwise independent of the thread count") {
  const int saved = num_threads();
  std::vector<std::pair<Shape, std::vector<int64_t>>> cases = {
      {{1 << 20}, {}},    {{3, 200000}, {1}},      {{200000, 3}, {0}},
      {{5000, 257}, {0}}, {{64, 33, 129}, {0, 2}}, {{3, 5000, 300}, {1}}};
  for (const auto& [shape, dims] : cases) {
    Tensor x = random_pm2(shape, 12);  // f64: any change of order shows in the last bits
    set_num_threads(1);
    std::vector<double> one = core::sum(x, dims).to_vector<double>();
    std::vector<double> cum_one = core::cumsum(x, 0).to_vector<double>();
    set_num_threads(4);
    CHECK(core::sum(x, dims).to_vector<double>() == one);
    CHECK(core::cumsum(x, 0).to_vector<double>() == cum_one);
    set_num_threads(3);
    CHECK(core::sum(x, dims).to_vector<double>() == one);
  }
  set_num_threads(saved);
}

TEST_CASE("amax/amin: NaN wins, infinities") {
  Tensor x = from_vector(std::vector<double>{1, kNaN, 3, -kInf, 2, 0, kInf, 5, 1}, {3, 3});
  std::vector<double> mx = core::amax(x, {1}).to_vector<double>();
  CHECK(std::isnan(mx[0]));
  CHECK(mx[1] == 2);
  CHECK(mx[2] == kInf);
  std::vector<double> mn = core::amin(x, {0}).to_vector<double>();
  CHECK(mn[0] == -kInf);
  CHECK(std::isnan(mn[1]));
  CHECK(mn[2] == 0);
  CHECK(std::isnan(core::amax(x).item()));
}

TEST_CASE("argmax/argmin: first index on ties, NaN wins, dims and layouts") {
  Tensor x = from_vector(std::vector<double>{3, 1, 3, 0, 2, 2, 0, 1, 5, 5, 5, -1}, {3, 4});
  CHECK(argmax(x, 1).to_vector<int64_t>() == std::vector<int64_t>{0, 0, 0});
  CHECK(argmin(x, 1).to_vector<int64_t>() == std::vector<int64_t>{3, 2, 3});
  CHECK(argmax(x, 0).to_vector<int64_t>() == std::vector<int64_t>{2, 2, 2, 1});
  CHECK(argmin(x, -2).to_vector<int64_t>() == std::vector<int64_t>{1, 0, 1, 2});
  CHECK(argmax(x, 0, true).shape() == Shape{1, 4});
  CHECK(argmax(x, 1).dtype() == DType::i64);
  Tensor n = from_vector(std::vector<double>{1, kNaN, 7, kNaN}, {4});
  CHECK(argmax(n, 0).item() == 1);
  CHECK(argmin(n, 0).item() == 1);
  // Long lines (the lane-parallel scan, and tiles along a strided dim): the first NaN wins,
  // also when a later lane sees one first in its own order.
  std::vector<double> long_line(100, 0.0);
  long_line[70] = kNaN, long_line[45] = kNaN, long_line[3] = 9, long_line[90] = 9;
  Tensor l = from_vector(long_line, {100});
  CHECK(argmax(l, 0).item() == 45);
  CHECK(argmin(l, 0).item() == 45);
  long_line[45] = 0, long_line[70] = 0;
  CHECK(argmax(from_vector(long_line, {100}), 0).item() == 3);
  Tensor cols = core::expand(core::reshape(from_vector(long_line, {100}), {100, 1}), {100, 3});
  CHECK(argmax(core::contiguous(cols), 0).to_vector<int64_t>() == std::vector<int64_t>{3, 3, 3});
  long_line[50] = kNaN;
  cols = core::contiguous(
      core::expand(core::reshape(from_vector(long_line, {100}), {100, 1}), {100, 3}));
  CHECK(argmin(cols, 0).to_vector<int64_t>() == std::vector<int64_t>{50, 50, 50});
  // Against a naive scan, in both loop modes (dim contiguous, dim strided), several dtypes.
  for (DType dtype : {DType::f32, DType::bf16, DType::i32, DType::f64}) {
    Tensor r = random_ints({6, 7, 300}, 13, dtype, -40, 40);  // many ties
    for (int64_t dim : {0, 1, 2}) {
      for (const Tensor& t : {r, transposed_layout(r)}) {
        INFO("dtype ", dtype_name(dtype), " dim ", dim, " contiguous ", t.is_contiguous());
        std::vector<double> xs = t.to_vector<double>();
        Shape out_shape = reduced_shape(t.shape(), {dim}, true);
        std::vector<int64_t> want_max(size_t(numel(out_shape))), want_min(want_max.size());
        std::vector<double> best_max(want_max.size(), -kInf), best_min(want_max.size(), kInf);
        for (int64_t i = 0; i < t.numel(); ++i) {
          std::vector<int64_t> idx = unravel(i, t.shape());
          int64_t pos = idx[size_t(dim)];
          idx[size_t(dim)] = 0;
          int64_t o = 0;
          for (size_t d = 0; d < idx.size(); ++d) o = o * out_shape[d] + idx[d];
          double v = xs[size_t(i)];
          if (v > best_max[size_t(o)]) best_max[size_t(o)] = v, want_max[size_t(o)] = pos;
          if (v < best_min[size_t(o)]) best_min[size_t(o)] = v, want_min[size_t(o)] = pos;
        }
        CHECK(argmax(t, dim).to_vector<int64_t>() == want_max);
        CHECK(argmin(t, dim).to_vector<int64_t>() == want_min);
      }
    }
  }
  CHECK(argmax(scalar_tensor(4), 0).item() == 0);
}

TEST_CASE("logsumexp: against log(sum(exp)), large values, -inf rows") {
  Tensor x = random_pm2({4, 5, 6}, 14);
  for (const auto& dims : kDimSets) {
    std::vector<int64_t> norm = normalize_dims(dims, x.dim(), "test");
    std::vector<double> want = reference_reduce(core::exp(x), norm, 's');
    for (double& v : want) v = std::log(v);
    check_near(core::logsumexp(x, dims).to_vector<double>(), want, 1e-12);
  }
  // exp(1000) overflows; the shifted form does not.
  Tensor big = from_vector(std::vector<double>{1000, 1000, -kInf, -kInf}, {2, 2});
  std::vector<double> lse = core::logsumexp(big, {1}).to_vector<double>();
  CHECK(lse[0] == doctest::Approx(1000 + std::log(2.0)));
  CHECK(lse[1] == -kInf);
  CHECK(core::logsumexp(big, {1}, true).shape() == Shape{2, 1});
}

TEST_CASE("sum_to: reduces broadcast dims back to a shape") {
  Tensor g = random_pm2({2, 3, 4}, 15);
  Tensor a = core::sum_to(g, {3, 1});
  CHECK(a.shape() == Shape{3, 1});
  check_near(a.to_vector<double>(), reference_reduce(g, {0, 2}, 's'), 1e-12);
  CHECK(core::sum_to(g, {}).item() == doctest::Approx(core::sum(g).item()));
  CHECK(core::sum_to(g, {2, 3, 4}).is_same(g));
  CHECK_THROWS_WITH_AS(core::sum_to(g, {5, 4}), doctest::Contains("sum_to"), Error);
  CHECK_THROWS_WITH_AS(core::sum_to(g, {1, 2, 3, 4}), doctest::Contains("sum_to"), Error);
}

TEST_CASE("cumsum: forwards and reverse along every dim against naive prefix sums") {
  Tensor x = random_pm2({4, 5, 300}, 16);
  for (const Tensor& t : {x, transposed_layout(x), core::to(x, DType::f32)}) {
    for (int64_t dim : {0, 1, 2, -1}) {
      for (bool reverse : {false, true}) {
        INFO("dim ", dim, " reverse ", reverse, " contiguous ", t.is_contiguous());
        const int64_t d = normalize_dim(dim, 3, "test");
        std::vector<double> xs = t.to_vector<double>();
        std::vector<double> want(xs.size());
        const Shape& shape = t.shape();
        for (int64_t i = 0; i < t.numel(); ++i) {
          std::vector<int64_t> idx = unravel(i, shape);
          double s = 0;
          const int64_t pos = idx[size_t(d)];
          for (int64_t k = 0; k < shape[size_t(d)]; ++k) {
            if (reverse ? k < pos : k > pos) continue;
            idx[size_t(d)] = k;
            int64_t j = 0;
            for (size_t e = 0; e < shape.size(); ++e) j = j * shape[e] + idx[e];
            s += xs[size_t(j)];
          }
          want[size_t(i)] = s;
        }
        Tensor got = core::cumsum(t, dim, reverse);
        CHECK(got.dtype() == t.dtype());
        check_near(got.to_vector<double>(), want, t.dtype() == DType::f32 ? 1e-5 : 1e-12, 1e-5);
      }
    }
  }
  Tensor ints = from_vector(std::vector<int32_t>{1, 2, 3, 4}, {4});
  CHECK(core::cumsum(ints, 0).dtype() == DType::i64);
  CHECK(core::cumsum(ints, 0).to_vector<int64_t>() == std::vector<int64_t>{1, 3, 6, 10});
  CHECK(core::cumsum(ints, 0, true).to_vector<int64_t>() == std::vector<int64_t>{10, 9, 7, 4});
  CHECK(core::cumsum(scalar_tensor(3), 0).item() == 3);
}

TEST_CASE("topk: values and indices against a stable sort, ties, NaN, k edge cases") {
  for (DType dtype : {DType::f64, DType::f32, DType::bf16, DType::i64}) {
    Tensor x = random_ints({3, 4, 50}, 17, dtype, -10, 10);  // many ties
    for (const Tensor& t : {x, transposed_layout(x)}) {
      for (int64_t dim : {0, 2, -2}) {
        for (bool largest : {true, false}) {
          const int64_t d = normalize_dim(dim, 3, "test");
          const int64_t length = t.shape()[size_t(d)];
          for (int64_t k : {int64_t(0), int64_t(1), int64_t(3), length / 2 + 1, length}) {
            INFO("dtype ", dtype_name(dtype), " dim ", dim, " largest ", largest, " k ", k);
            core::TopK r = core::topk(t, k, dim, largest);
            Shape shape = t.shape();
            shape[size_t(d)] = k;
            REQUIRE(r.values.shape() == shape);
            REQUIRE(r.indices.shape() == shape);
            CHECK(r.values.dtype() == dtype);
            // Reference: each line sorted by (value, index) with a stable sort.
            Tensor tm = core::contiguous(core::transpose(t, d, 2));  // the dim last
            Tensor vm = core::contiguous(core::transpose(r.values, d, 2));
            Tensor im = core::contiguous(core::transpose(r.indices, d, 2));
            std::vector<double> xs = tm.to_vector<double>(), vs = vm.to_vector<double>();
            std::vector<int64_t> is = im.to_vector<int64_t>();
            const int64_t lines = tm.numel() / length;
            for (int64_t l = 0; l < lines; ++l) {
              std::vector<int64_t> order(static_cast<size_t>(length));
              std::iota(order.begin(), order.end(), 0);
              const double* line = xs.data() + l * length;
              std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
                return largest ? line[a] > line[b] : line[a] < line[b];
              });
              for (int64_t j = 0; j < k; ++j) {
                CHECK(is[size_t(l * k + j)] == order[size_t(j)]);
                CHECK(vs[size_t(l * k + j)] == line[order[size_t(j)]]);
              }
            }
          }
        }
      }
    }
  }
  // NaN counts as the largest value (first for largest, last for smallest).
  Tensor n = from_vector(std::vector<double>{2, kNaN, 5, kNaN, -1}, {5});
  core::TopK hi = core::topk(n, 3, 0, true);
  CHECK(hi.indices.to_vector<int64_t>() == std::vector<int64_t>{1, 3, 2});
  core::TopK lo = core::topk(n, 4, 0, false);
  CHECK(lo.indices.to_vector<int64_t>() == std::vector<int64_t>{4, 0, 2, 1});
  // The same rules on a long line, where small k takes the one-pass heap.
  std::vector<double> line(200);
  for (size_t i = 0; i < line.size(); ++i) line[i] = double((i * 37) % 101);  // ties
  line[150] = kNaN, line[20] = kNaN;
  Tensor long_line = from_vector(line, {200});
  CHECK(core::topk(long_line, 4, 0, true).indices.to_vector<int64_t>() ==
        std::vector<int64_t>{20, 150, 30, 131});  // the NaNs, then 100 at 30 and 131
  CHECK(core::topk(long_line, 3, 0, false).indices.to_vector<int64_t>() ==
        std::vector<int64_t>{0, 101, 71});  // 0 at 0 and 101, then 1 at 71 (and 172)
  // Large k (the value-only selection), with -inf entries (masked slots) tied at the cut,
  // and the general path again once the line holds a NaN.
  const double inf = std::numeric_limits<double>::infinity();
  Tensor masked = from_vector(std::vector<double>{-inf, 3, -inf, 1, 3, -inf}, {6});
  CHECK(core::topk(masked, 4, 0, true).indices.to_vector<int64_t>() ==
        std::vector<int64_t>{1, 4, 3, 0});
  CHECK(core::topk(masked, 3, 0, false).indices.to_vector<int64_t>() ==
        std::vector<int64_t>{0, 2, 5});
  Tensor with_nan = from_vector(std::vector<double>{-inf, 3, kNaN, 1, 3, -inf}, {6});
  CHECK(core::topk(with_nan, 4, 0, true).indices.to_vector<int64_t>() ==
        std::vector<int64_t>{2, 1, 4, 3});
}

TEST_CASE("reductions: errors name the op") {
  Tensor x = zeros({2, 3});
  CHECK_THROWS_WITH_AS(core::sum(x, {2}), doctest::Contains("sum"), Error);
  CHECK_THROWS_WITH_AS(core::sum(x, {0, -2}), doctest::Contains("sum: dim listed twice"), Error);
  CHECK_THROWS_WITH_AS(core::amax(zeros({2, 0}), {1}), doctest::Contains("max"), Error);
  CHECK_THROWS_WITH_AS(core::amin(x, {-3}), doctest::Contains("min"), Error);
  CHECK_THROWS_WITH_AS(core::logsumexp(zeros({2}, {DType::i64})),
                       doctest::Contains("logsumexp: expected a floating tensor"), Error);
  CHECK_THROWS_WITH_AS(argmax(zeros({2, 0}), 1), doctest::Contains("argmax"), Error);
  CHECK_THROWS_WITH_AS(argmin(x, 5), doctest::Contains("argmin"), Error);
  CHECK_THROWS_WITH_AS(core::cumsum(x, 2), doctest::Contains("cumsum"), Error);
  CHECK_THROWS_WITH_AS(core::topk(x, 4, 1), doctest::Contains("topk: k = 4 out of range"), Error);
  CHECK_THROWS_WITH_AS(core::topk(x, -1, 1), doctest::Contains("topk"), Error);
  CHECK_THROWS_WITH_AS(core::topk(scalar_tensor(1), 1), doctest::Contains("topk"), Error);
  CHECK_THROWS_WITH_AS(core::sum(Tensor()), doctest::Contains("sum: undefined"), Error);
}

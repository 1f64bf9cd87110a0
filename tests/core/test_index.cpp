// Indexing and joining (core ops): index_select, index_add, gather, scatter_add, embedding,
// embedding_backward, concat, stack, pad and one_hot against naive loops written here, with
// i32 and i64 indices, repeated indices, non-contiguous inputs and indices, several dtypes;
// outputs are fresh copies, never views of the inputs; accumulation is independent of the
// thread count; and misuse (bad shapes, bad dtypes, out-of-range indices) throws mnemo::Error
// naming the op, the bad index and the dim size.
#include <doctest/doctest.h>

#include <random>

#include "autograd/ops.h"
#include "core/cpu/parallel.h"
#include "support/tensors.h"

using namespace mnemo;
using mnemo::test::unravel;

namespace {

// Values in [-2, 2).
Tensor random_pm2(const Shape& shape, uint64_t seed, DType dtype = DType::f64) {
  return test::random_tensor(shape, seed, dtype, -2, 2);
}

// Random indices in [0, size).
Tensor random_index(const Shape& shape, int64_t size, uint64_t seed, DType dtype = DType::i64) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> dist(0, size - 1);
  std::vector<int64_t> v(size_t(numel(shape)));
  for (int64_t& x : v) x = dist(rng);
  return core::to(from_vector(v, shape), dtype);
}

int64_t ravel(const std::vector<int64_t>& index, const Shape& shape) {
  int64_t i = 0;
  for (size_t d = 0; d < shape.size(); ++d) i = i * shape[d] + index[d];
  return i;
}

// Naive gather: out[p] = x[p with dim -> index[p]].
std::vector<double> reference_gather(const Tensor& x, int64_t dim, const Tensor& index) {
  std::vector<double> xs = x.to_vector<double>(), out;
  std::vector<int64_t> is = index.to_vector<int64_t>();
  for (int64_t p = 0; p < index.numel(); ++p) {
    std::vector<int64_t> at = unravel(p, index.shape());
    at[size_t(dim)] = is[size_t(p)];
    out.push_back(xs[size_t(ravel(at, x.shape()))]);
  }
  return out;
}

// Naive scatter_add: out = x; out[p with dim -> index[p]] += src[p], in row-major order of p.
std::vector<double> reference_scatter_add(const Tensor& x, int64_t dim, const Tensor& index,
                                          const Tensor& src) {
  std::vector<double> out = x.to_vector<double>(), ss = src.to_vector<double>();
  std::vector<int64_t> is = index.to_vector<int64_t>();
  for (int64_t p = 0; p < index.numel(); ++p) {
    std::vector<int64_t> at = unravel(p, index.shape());
    at[size_t(dim)] = is[size_t(p)];
    out[size_t(ravel(at, x.shape()))] += ss[size_t(p)];
  }
  return out;
}

// index (n,) spread over shape: element p of the result is index[p[dim]].
Tensor spread(const Tensor& index, const Shape& shape, int64_t dim) {
  Shape view_shape(shape.size(), 1);
  view_shape[size_t(dim)] = index.numel();
  return core::contiguous(
      core::expand(core::reshape(core::to(index, DType::i64), view_shape), shape));
}

void check_within(const std::vector<double>& got, const std::vector<double>& want, double tol) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CHECK_MESSAGE(std::abs(got[i] - want[i]) <= tol, "element ", i, ": ", got[i], " vs ", want[i]);
  }
}

}  // namespace

TEST_CASE("index_select: every dim, i32/i64, repeated and strided indices, layouts, dtypes") {
  Tensor x = random_pm2({4, 5, 6}, 1);
  Tensor xt = core::transpose(core::contiguous(core::transpose(x, 0, 2)), 0, 2);
  for (DType dtype : {DType::f64, DType::bf16, DType::i32}) {
    for (const Tensor& input : {core::to(x, dtype), core::to(xt, dtype)}) {
      for (int64_t dim : {0, 1, 2, -1}) {
        const int64_t d = normalize_dim(dim, 3, "test");
        for (DType index_dtype : {DType::i64, DType::i32}) {
          INFO("dtype ", dtype_name(dtype), " dim ", dim, " index ", dtype_name(index_dtype));
          Tensor index = random_index({7}, input.shape()[size_t(d)], 2, index_dtype);
          Tensor out = core::index_select(input, dim, index);
          Shape shape = input.shape();
          shape[size_t(d)] = 7;
          REQUIRE(out.shape() == shape);
          CHECK(out.dtype() == dtype);
          CHECK(out.to_vector<double>() == reference_gather(input, d, spread(index, shape, d)));
        }
      }
    }
  }
  // A strided (stride-2) index and a 0-d index.
  Tensor wide = from_vector(std::vector<int64_t>{3, 9, 0, 9, 3, 9}, {6});
  Tensor strided = core::slice(wide, 0, 0, 6, 2);  // 3, 0, 3
  CHECK(core::index_select(x, 0, strided).to_vector<double>() ==
        core::index_select(x, 0, from_vector(std::vector<int64_t>{3, 0, 3}, {3}))
            .to_vector<double>());
  CHECK(core::index_select(x, 1, scalar_tensor(2, {DType::i64})).shape() == Shape{4, 1, 6});
  // Empty index: an empty dim.
  CHECK(core::index_select(x, 1, zeros({0}, {DType::i64})).shape() == Shape{4, 0, 6});
  // The result is a copy.
  Tensor out = core::index_select(x, 0, from_vector(std::vector<int64_t>{1}, {1}));
  fill_(out, 7);
  CHECK(x.at({1, 0, 0}) != 7);
}

TEST_CASE("index_add: repeated indices accumulate, input untouched, dtype promotion") {
  Tensor x = random_pm2({5, 3}, 3);
  std::vector<double> before = x.to_vector<double>();
  Tensor index = from_vector(std::vector<int32_t>{4, 0, 4, 4}, {4});
  Tensor src = core::transpose(random_pm2({3, 4}, 4), 0, 1);  // non-contiguous (4, 3)
  Tensor out = core::index_add(x, 0, index, src);
  CHECK(out.to_vector<double>() == reference_scatter_add(x, 0, spread(index, {4, 3}, 0), src));
  CHECK(x.to_vector<double>() == before);
  // Along dim 1, f32 into f64 (promoted).
  Tensor src1 = random_pm2({5, 2}, 5, DType::f32);
  Tensor index1 = from_vector(std::vector<int64_t>{2, 2}, {2});
  Tensor out1 = core::index_add(x, 1, index1, src1);
  CHECK(out1.dtype() == DType::f64);
  check_within(out1.to_vector<double>(),
               reference_scatter_add(x, 1, spread(index1, {5, 2}, 1), src1), 1e-12);
}

TEST_CASE("gather: every dim, index smaller than the input, layouts, dtypes") {
  Tensor x = random_pm2({4, 5, 6}, 6);
  for (DType dtype : {DType::f64, DType::f16, DType::i64}) {
    for (const Tensor& input :
         {core::to(x, dtype),
          core::permute(core::to(random_pm2({6, 4, 5}, 7), dtype), {1, 2, 0})}) {
      for (int64_t dim : {0, 1, 2}) {
        INFO("dtype ", dtype_name(dtype), " dim ", dim, " contiguous ", input.is_contiguous());
        Shape shape = {3, 4, 5};
        shape[size_t(dim)] = 8;  // longer than the input along dim: indices may repeat
        Tensor index = random_index(shape, input.shape()[size_t(dim)], 8);
        Tensor out = core::gather(input, dim, index);
        REQUIRE(out.shape() == shape);
        CHECK(out.to_vector<double>() == reference_gather(input, dim, index));
        // A transposed (non-contiguous) index gives the same as its contiguous copy.
        Tensor index_t = core::transpose(core::contiguous(core::transpose(index, 0, 1)), 0, 1);
        CHECK(core::gather(input, dim, index_t).to_vector<double>() == out.to_vector<double>());
      }
    }
  }
  // Picking one log-prob per row: gather along the last dim with an (N, 1) index.
  Tensor logits = random_pm2({3, 10}, 9);
  Tensor target = from_vector(std::vector<int32_t>{9, 0, 4}, {3, 1});
  CHECK(core::gather(logits, -1, target).to_vector<double>() ==
        std::vector<double>{logits.at({0, 9}), logits.at({1, 0}), logits.at({2, 4})});
}

TEST_CASE("scatter_add: every dim, repeated indices, input untouched, thread independence") {
  Tensor x = random_pm2({4, 5, 6}, 10);
  std::vector<double> before = x.to_vector<double>();
  for (int64_t dim : {0, 1, 2}) {
    Shape shape = {3, 4, 5};
    shape[size_t(dim)] = 9;
    Tensor index = random_index(shape, x.shape()[size_t(dim)], 11, DType::i32);
    Tensor src = random_pm2(shape, 12);
    INFO("dim ", dim);
    CHECK(core::scatter_add(x, dim, index, src).to_vector<double>() ==
          reference_scatter_add(x, dim, index, src));
    Tensor src_t = core::transpose(core::contiguous(core::transpose(src, 0, 2)), 0, 2);
    CHECK(core::scatter_add(x, dim, index, src_t).to_vector<double>() ==
          reference_scatter_add(x, dim, index, src));
  }
  CHECK(x.to_vector<double>() == before);
  // Large, heavily repeated index: same bits for 1 and 4 threads.
  const int saved = num_threads();
  Tensor big = zeros({16, 2048}, {DType::f32});
  Tensor index = random_index({20000, 2048}, 16, 13);
  Tensor src = random_pm2({20000, 2048}, 14, DType::f32);
  set_num_threads(1);
  std::vector<float> one = core::scatter_add(big, 0, index, src).to_vector<float>();
  std::vector<float> one_add =
      core::index_add(big, 0, random_index({20000}, 16, 15), src).to_vector<float>();
  set_num_threads(4);
  CHECK(core::scatter_add(big, 0, index, src).to_vector<float>() == one);
  CHECK(core::index_add(big, 0, random_index({20000}, 16, 15), src).to_vector<float>() == one_add);
  set_num_threads(saved);
}

TEST_CASE("embedding and embedding_backward: rows by id, sums of rows per id") {
  Tensor weight = random_pm2({10, 4}, 16);
  Tensor ids = from_vector(std::vector<int32_t>{3, 9, 3, 0, 1, 3}, {2, 3});
  Tensor out = core::embedding(weight, ids);
  REQUIRE(out.shape() == Shape{2, 3, 4});
  std::vector<int32_t> id_values = ids.to_vector<int32_t>();
  for (int64_t n = 0; n < 6; ++n) {
    for (int64_t c = 0; c < 4; ++c) {
      CHECK(out.at({n / 3, n % 3, c}) == weight.at({id_values[size_t(n)], c}));
    }
  }
  CHECK(core::embedding(weight, scalar_tensor(7, {DType::i64})).shape() == Shape{4});
  CHECK(core::embedding(core::transpose(random_pm2({4, 10}, 17), 0, 1), ids).shape() ==
        Shape{2, 3, 4});
  // backward: each row of grad added to its id's row; id 3 three times.
  Tensor grad = random_pm2({2, 3, 4}, 18);
  Tensor dweight = core::embedding_backward(grad, ids, 10);
  REQUIRE(dweight.shape() == Shape{10, 4});
  std::vector<double> want(40, 0.0), g = grad.to_vector<double>();
  for (int64_t n = 0; n < 6; ++n) {
    for (int64_t c = 0; c < 4; ++c)
      want[size_t(id_values[size_t(n)] * 4 + c)] += g[size_t(n * 4 + c)];
  }
  check_within(dweight.to_vector<double>(), want, 1e-12);
  // bf16 gradients accumulate in f32: 1000 ones sum to 1000 (bf16 accumulation stalls at 256).
  Tensor many =
      core::embedding_backward(ones({1000, 2}, {DType::bf16}), zeros({1000}, {DType::i64}), 3);
  CHECK(many.dtype() == DType::bf16);
  CHECK(many.to_vector<double>() == std::vector<double>{1000, 1000, 0, 0, 0, 0});
}

TEST_CASE("concat and stack: values, dtype promotion, copies, zero-size pieces") {
  Tensor a = random_pm2({2, 3}, 19), b = random_pm2({2, 5}, 20, DType::f32);
  Tensor bt = core::transpose(random_pm2({5, 2}, 21), 0, 1);  // non-contiguous (2, 5)
  Tensor c = core::concat({a, b, bt, zeros({2, 0})}, -1);
  REQUIRE(c.shape() == Shape{2, 13});
  CHECK(c.dtype() == DType::f64);
  for (int64_t i = 0; i < 2; ++i) {
    for (int64_t j = 0; j < 13; ++j) {
      double want = j < 3 ? a.at({i, j}) : (j < 8 ? b.at({i, j - 3}) : bt.at({i, j - 8}));
      CHECK(c.at({i, j}) == want);
    }
  }
  Tensor r = core::concat({a, a}, 0);
  CHECK(r.shape() == Shape{4, 3});
  CHECK(core::narrow(r, 0, 2, 2).to_vector<double>() == a.to_vector<double>());
  fill_(r, 0);  // a copy: the inputs are untouched
  CHECK(a.at({0, 0}) != 0);
  Tensor ints = from_vector(std::vector<int32_t>{1, 2}, {2});
  CHECK(core::concat({ints, from_vector(std::vector<float>{0.5f}, {1})}, 0).dtype() == DType::f32);

  Tensor s = stack({a, a * 2.0, a * 3.0}, 1);
  REQUIRE(s.shape() == Shape{2, 3, 3});
  CHECK(s.at({1, 2, 0}) == a.at({1, 0}) * 3);
  CHECK(stack({a, a}, -1).shape() == Shape{2, 3, 2});
  CHECK(stack({scalar_tensor(1), scalar_tensor(2)}).to_vector<double>() ==
        std::vector<double>{1, 2});
}

TEST_CASE("pad: positive, negative (crop) and mixed amounts against a naive loop") {
  Tensor x = random_pm2({3, 4, 5}, 22);
  for (const auto& pads : std::vector<std::vector<int64_t>>{
           {1, 2}, {0, 0}, {2, 0, 0, 3}, {-1, 2}, {-2, -1, 1, -3}, {1, 1, 1, 1, 1, 1}, {-5, 2}}) {
    INFO("pads ", fmt::format("{}", fmt::join(pads, ",")));
    for (const Tensor& input : {x, core::permute(random_pm2({5, 3, 4}, 23), {1, 2, 0})}) {
      Tensor out = core::pad(input, pads, -7.5);
      Shape shape = input.shape();
      std::vector<int64_t> before(3, 0);
      for (size_t p = 0; p < pads.size() / 2; ++p) {
        shape[2 - p] += pads[2 * p] + pads[2 * p + 1];
        before[2 - p] = pads[2 * p];
      }
      REQUIRE(out.shape() == shape);
      std::vector<double> got = out.to_vector<double>();
      for (int64_t i = 0; i < out.numel(); ++i) {
        std::vector<int64_t> at = unravel(i, shape);
        bool inside = true;
        for (size_t d = 0; d < 3; ++d) {
          at[d] -= before[d];
          inside = inside && at[d] >= 0 && at[d] < input.shape()[d];
        }
        CHECK(got[size_t(i)] == (inside ? input.at(at) : -7.5));
      }
    }
  }
  CHECK(core::pad(x, {-5, 0}).shape() == Shape{3, 4, 0});
  // Always a fresh tensor, even with nothing to pad.
  Tensor same = core::pad(x, {0, 0});
  CHECK(same.to_vector<double>() == x.to_vector<double>());
  fill_(same, 1e9);
  CHECK(x.at({0, 0, 0}) != 1e9);
}

TEST_CASE("one_hot: values, dtypes, ids of any shape") {
  Tensor ids = from_vector(std::vector<int32_t>{2, 0, 3, 2}, {2, 2});
  Tensor h = one_hot(ids, 4);
  REQUIRE(h.shape() == Shape{2, 2, 4});
  CHECK(h.dtype() == DType::f32);
  CHECK(h.to_vector<double>() ==
        std::vector<double>{0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0});
  CHECK(one_hot(ids, 5, DType::boolean).dtype() == DType::boolean);
  CHECK(core::sum(one_hot(ids, 5, DType::i64)).item() == 4);
}

TEST_CASE("indexing: errors name the op, the bad index and the dim size") {
  Tensor x = zeros({4, 5});
  Tensor bad = from_vector(std::vector<int64_t>{1, 5}, {2});
  CHECK_THROWS_WITH_AS(
      core::index_select(x, 1, bad),
      doctest::Contains("index_select: index 5 is out of range for dim 1 of size 5"), Error);
  CHECK_THROWS_WITH_AS(core::index_select(x, 0, from_vector(std::vector<int64_t>{-1}, {1})),
                       doctest::Contains("index_select: index -1"), Error);
  CHECK_THROWS_WITH_AS(core::index_select(x, 0, zeros({2})),
                       doctest::Contains("index_select: index must be i32 or i64"), Error);
  CHECK_THROWS_WITH_AS(core::index_select(x, 0, zeros({2, 1}, {DType::i64})),
                       doctest::Contains("index_select: index must be 1-d"), Error);
  CHECK_THROWS_WITH_AS(core::index_select(x, 2, bad), doctest::Contains("index_select"), Error);
  CHECK_THROWS_WITH_AS(core::index_add(x, 0, bad, zeros({2, 5})),
                       doctest::Contains("index_add: index 5 is out of range for dim 0 of size 4"),
                       Error);
  CHECK_THROWS_WITH_AS(core::index_add(x, 0, bad, zeros({3, 5})),
                       doctest::Contains("index_add: src of shape (3, 5)"), Error);
  CHECK_THROWS_WITH_AS(
      core::gather(x, 0, zeros({2}, {DType::i64})),
      doctest::Contains("gather: index of shape (2,) has rank 1 but input has rank 2"), Error);
  CHECK_THROWS_WITH_AS(core::gather(x, 0, zeros({2, 6}, {DType::i64})),
                       doctest::Contains("gather: index of shape (2, 6) is larger"), Error);
  CHECK_THROWS_WITH_AS(core::gather(x, 1, full({2, 2}, 9, {DType::i64})),
                       doctest::Contains("gather: index 9 is out of range for dim 1 of size 5"),
                       Error);
  CHECK_THROWS_WITH_AS(core::scatter_add(x, 0, zeros({2, 2}, {DType::i64}), zeros({2, 3})),
                       doctest::Contains("scatter_add: src of shape (2, 3)"), Error);
  CHECK_THROWS_WITH_AS(
      core::scatter_add(x, 0, full({2, 2}, 4, {DType::i32}), zeros({2, 2})),
      doctest::Contains("scatter_add: index 4 is out of range for dim 0 of size 4"), Error);
  CHECK_THROWS_WITH_AS(
      core::embedding(zeros({10, 3}), from_vector(std::vector<int64_t>{2, 12}, {2})),
      doctest::Contains("embedding: index_select: index 12 is out of range for dim 0 of size 10"),
      Error);
  CHECK_THROWS_WITH_AS(core::embedding(zeros({10}), bad), doctest::Contains("embedding: weight"),
                       Error);
  CHECK_THROWS_WITH_AS(core::embedding_backward(zeros({2, 3}), bad, 4),
                       doctest::Contains("embedding_backward: index_add: index 5 is out of range"),
                       Error);
  CHECK_THROWS_WITH_AS(core::embedding_backward(zeros({3, 3}), bad, 10),
                       doctest::Contains("embedding_backward: grad of shape (3, 3)"), Error);
  CHECK_THROWS_WITH_AS(core::concat({}, 0), doctest::Contains("concat"), Error);
  CHECK_THROWS_WITH_AS(core::concat({x, zeros({3, 4})}, 0),
                       doctest::Contains("concat: tensor 1 has shape (3, 4)"), Error);
  CHECK_THROWS_WITH_AS(core::concat({x, zeros({4})}, 0), doctest::Contains("concat"), Error);
  CHECK_THROWS_WITH_AS(core::concat({scalar_tensor(1)}, 0), doctest::Contains("concat"), Error);
  CHECK_THROWS_WITH_AS(stack({x, zeros({4, 4})}), doctest::Contains("stack: tensor 1"), Error);
  CHECK_THROWS_WITH_AS(stack({x, x}, 3), doctest::Contains("stack"), Error);
  CHECK_THROWS_WITH_AS(core::pad(x, {1}), doctest::Contains("pad: expected (before, after)"),
                       Error);
  CHECK_THROWS_WITH_AS(core::pad(x, {1, 1, 1, 1, 1, 1}), doctest::Contains("pad"), Error);
  CHECK_THROWS_WITH_AS(core::pad(x, {-3, -3}), doctest::Contains("pad: pads (-3, -3)"), Error);
  CHECK_THROWS_WITH_AS(one_hot(from_vector(std::vector<int64_t>{0, 3}, {2}), 3),
                       doctest::Contains("one_hot: scatter_add: index 3 is out of range"), Error);
  CHECK_THROWS_WITH_AS(one_hot(bad, 0), doctest::Contains("one_hot: num_classes"), Error);
  CHECK_THROWS_WITH_AS(one_hot(zeros({2}), 3), doctest::Contains("one_hot: index must be i32"),
                       Error);
}

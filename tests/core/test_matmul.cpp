// matmul (core op, CPU backend): values against a naive triple loop in f64, every operand
// layout the kernel distinguishes (row-major, transposed, strided, broadcast), batching with
// broadcast batch dims, the 1-d rules, empty dims, 16-bit dtypes, errors, and bitwise
// equality across thread counts.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "core/cpu/parallel.h"
#include "core/ops/elementwise.h"
#include "core/ops/factory.h"
#include "core/ops/linalg.h"
#include "core/ops/view.h"
#include "support/errors.h"
#include "support/tensors.h"

using namespace mnemo;
using test::random_tensor;

namespace {

// MatmulReference product of 2-d a (M, K) and b (K, N), in f64, with the bound sum_k |a_ik b_kj|
// that scales the rounding error of a float result.
struct MatmulReference {
  std::vector<double> value, bound;
};
MatmulReference naive_matmul(const Tensor& a, const Tensor& b) {
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  const std::vector<double> av = a.to_vector<double>(), bv = b.to_vector<double>();
  MatmulReference r{std::vector<double>(size_t(M * N)), std::vector<double>(size_t(M * N))};
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      double s = 0, bound = 0;
      for (int64_t k = 0; k < K; ++k) {
        s += av[size_t(i * K + k)] * bv[size_t(k * N + j)];
        bound += std::abs(av[size_t(i * K + k)] * bv[size_t(k * N + j)]);
      }
      r.value[size_t(i * N + j)] = s;
      r.bound[size_t(i * N + j)] = bound;
    }
  }
  return r;
}

// Allowed error relative to sum_k |a_ik b_kj|.
double tolerance_of(DType dtype) {
  switch (dtype) {
    case DType::f64: return 1e-13;
    case DType::f32: return 1e-5;
    default: return 4e-3;  // bf16/f16: f32 products, then one rounding to 8 or 11 bits
  }
}

// got (M, N) equals a @ b up to rounding.
void check_product(const Tensor& got, const Tensor& a, const Tensor& b) {
  REQUIRE(got.shape() == Shape{a.size(0), b.size(1)});
  const MatmulReference ref = naive_matmul(a, b);
  const std::vector<double> g = got.to_vector<double>();
  const double tolerance = tolerance_of(got.dtype());
  for (size_t i = 0; i < g.size(); ++i) {
    INFO("element ", i, " got ", g[i], " expected ", ref.value[i]);
    CHECK(std::abs(g[i] - ref.value[i]) <= tolerance * ref.bound[i]);
  }
}

}  // namespace

TEST_CASE("matmul: 2-d products match a naive triple loop") {
  struct Case {
    int64_t M, K, N;
  };
  const std::vector<Case> cases = {{1, 1, 1},   {4, 3, 5},     {5, 1, 6},    {1, 7, 1},
                                   {17, 33, 9}, {64, 128, 48}, {70, 700, 3}, {33, 20, 100}};
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const Case& c : cases) {
      INFO(dtype_name(dtype), " M=", c.M, " K=", c.K, " N=", c.N);
      Tensor a = random_tensor({c.M, c.K}, 1, dtype), b = random_tensor({c.K, c.N}, 2, dtype);
      Tensor out = core::matmul(a, b);
      CHECK(out.dtype() == dtype);
      CHECK(out.is_contiguous());
      check_product(out, a, b);
    }
  }
}

TEST_CASE("matmul: transposed, strided and broadcast operands") {
  const int64_t M = 23, K = 19, N = 31;
  Tensor a = random_tensor({M, K}, 3, DType::f32), b = random_tensor({K, N}, 4, DType::f32);
  // Column-major views: the transposes of stored (K, M) and (N, K) matrices.
  Tensor a_t = core::transpose(core::contiguous(core::transpose(a, 0, 1)), 0, 1);
  Tensor b_t = core::transpose(core::contiguous(core::transpose(b, 0, 1)), 0, 1);
  REQUIRE(a_t.stride(0) == 1);
  REQUIRE(b_t.stride(0) == 1);
  // Row stride larger than the row (a narrowed wider matrix), offset into storage.
  Tensor a_wide = core::narrow(random_tensor({M, K + 9}, 5, DType::f32), 1, 4, K);
  // Inner stride 2: neither layout, copied first.
  Tensor b_step = core::slice(random_tensor({K, 2 * N}, 6, DType::f32), 1, 0, 2 * N, 2);
  // A row broadcast down the matrix (row stride 0).
  Tensor a_rows = core::expand(random_tensor({1, K}, 7, DType::f32), {M, K});

  check_product(core::matmul(a_t, b), a, b);
  check_product(core::matmul(a, b_t), a, b);
  check_product(core::matmul(a_t, b_t), a, b);
  check_product(core::matmul(a_wide, b), core::contiguous(a_wide), b);
  check_product(core::matmul(a, b_step), a, core::contiguous(b_step));
  check_product(core::matmul(a_rows, b_t), core::contiguous(a_rows), b);
  check_product(core::matmul(a_wide, b_step), core::contiguous(a_wide), core::contiguous(b_step));
  // Views and copies give identical bits (same products in the same order).
  CHECK(core::matmul(a_t, b_t).to_vector<float>() == core::matmul(a, b).to_vector<float>());
}

TEST_CASE("matmul: batched products broadcast their batch dims") {
  struct Case {
    Shape a, b, out;
  };
  const std::vector<Case> cases = {
      {{2, 3, 4}, {2, 4, 5}, {2, 3, 5}}, {{2, 1, 3, 4}, {5, 4, 6}, {2, 5, 3, 6}},
      {{3, 4}, {2, 4, 5}, {2, 3, 5}},    {{2, 3, 4}, {4, 5}, {2, 3, 5}},
      {{1, 3, 4}, {3, 4, 2}, {3, 3, 2}},
  };
  for (const Case& c : cases) {
    INFO("a ", shape_str(c.a), " b ", shape_str(c.b));
    Tensor a = random_tensor(c.a, 8, DType::f64), b = random_tensor(c.b, 9, DType::f64);
    Tensor out = core::matmul(a, b);
    REQUIRE(out.shape() == c.out);
    // Each output matrix against the naive product of the matrices broadcast into it.
    const int64_t batch = out.numel() / (out.size(-2) * out.size(-1));
    Shape batch_shape(c.out.begin(), c.out.end() - 2);
    Shape a_full = batch_shape, b_full = batch_shape;
    a_full.insert(a_full.end(), {a.size(-2), a.size(-1)});
    b_full.insert(b_full.end(), {b.size(-2), b.size(-1)});
    Tensor a3 = core::reshape(core::contiguous(core::expand(a, a_full)), {batch, a.size(-2), -1});
    Tensor b3 = core::reshape(core::contiguous(core::expand(b, b_full)), {batch, b.size(-2), -1});
    Tensor out3 = core::reshape(out, {batch, out.size(-2), out.size(-1)});
    for (int64_t i = 0; i < batch; ++i) {
      check_product(core::select(out3, 0, i), core::select(a3, 0, i), core::select(b3, 0, i));
    }
  }
}

TEST_CASE("matmul: 1-d operands are a row or a column vector") {
  Tensor v = random_tensor({4}, 10, DType::f64), w = random_tensor({4}, 11, DType::f64);
  Tensor m = random_tensor({4, 3}, 12, DType::f64), n = random_tensor({5, 4}, 13, DType::f64);
  Tensor batched = random_tensor({2, 4, 3}, 14, DType::f64);

  Tensor vm = core::matmul(v, m);  // (4,) @ (4, 3) -> (3,)
  REQUIRE(vm.shape() == Shape{3});
  check_product(core::unsqueeze(vm, 0), core::unsqueeze(v, 0), m);

  Tensor nv = core::matmul(n, v);  // (5, 4) @ (4,) -> (5,)
  REQUIRE(nv.shape() == Shape{5});
  check_product(core::unsqueeze(nv, 1), n, core::unsqueeze(v, 1));

  Tensor dot = core::matmul(v, w);  // (4,) @ (4,) -> ()
  REQUIRE(dot.dim() == 0);
  double expected = 0;
  for (int64_t k = 0; k < 4; ++k) expected += v.at({k}) * w.at({k});
  CHECK(dot.item() == doctest::Approx(expected).epsilon(1e-14));

  Tensor vb = core::matmul(v, batched);  // (4,) @ (2, 4, 3) -> (2, 3)
  REQUIRE(vb.shape() == Shape{2, 3});
  for (int64_t i = 0; i < 2; ++i) {
    check_product(core::unsqueeze(core::select(vb, 0, i), 0), core::unsqueeze(v, 0),
                  core::select(batched, 0, i));
  }
  Tensor bv = core::matmul(core::transpose(batched, 1, 2), v);  // (2, 3, 4) @ (4,) -> (2, 3)
  REQUIRE(bv.shape() == Shape{2, 3});
  for (int64_t i = 0; i < 2; ++i) {
    check_product(core::unsqueeze(core::select(bv, 0, i), 1),
                  core::transpose(core::select(batched, 0, i), 0, 1), core::unsqueeze(v, 1));
  }
}

TEST_CASE("matmul: empty dims") {
  // K = 0: an empty sum, so zeros (the output buffer starts uninitialised).
  Tensor z = core::matmul(empty({3, 0}), empty({0, 4}));
  REQUIRE(z.shape() == Shape{3, 4});
  CHECK(z.to_vector<double>() == std::vector<double>(12, 0.0));
  CHECK(core::matmul(empty({0, 5}), random_tensor({5, 4}, 1, DType::f32)).shape() == Shape{0, 4});
  CHECK(core::matmul(empty({2, 0, 3, 5}), random_tensor({5, 4}, 1, DType::f32)).shape() ==
        Shape{2, 0, 3, 4});
}

TEST_CASE("matmul: bf16 and f16 multiply in f32 and round once") {
  for (DType dtype : {DType::bf16, DType::f16}) {
    INFO(dtype_name(dtype));
    Tensor a = random_tensor({37, 50}, 15, dtype), b = random_tensor({50, 29}, 16, dtype);
    Tensor out = core::matmul(a, core::transpose(core::contiguous(core::transpose(b, 0, 1)), 0, 1));
    CHECK(out.dtype() == dtype);
    // The same f32 product of the (exactly representable) inputs, rounded to dtype.
    Tensor f32 = core::matmul(core::to(a, DType::f32), core::to(b, DType::f32));
    CHECK(out.to_vector<float>() == core::to(f32, dtype).to_vector<float>());
    check_product(out, a, b);
  }
}

TEST_CASE("matmul: mixed floating dtypes promote") {
  Tensor a = random_tensor({3, 4}, 17, DType::f32), b = random_tensor({4, 2}, 18, DType::f64);
  Tensor out = core::matmul(a, b);
  CHECK(out.dtype() == DType::f64);
  check_product(out, a, b);
}

TEST_CASE("matmul: errors name the op and the shapes") {
  Tensor a = random_tensor({4, 3}, 1, DType::f32), b = random_tensor({5, 2}, 2, DType::f32);
  CHECK_THROWS_AS(core::matmul(a, b), Error);
  CHECK(test::error_message([&] { core::matmul(a, b); }) ==
        "matmul: shapes (4, 3) and (5, 2) do not align");
  CHECK(test::error_message([&] {
          core::matmul(random_tensor({3}, 1, DType::f32), b);
        }).find("matmul: shapes (3,) and (5, 2) do not align") != std::string::npos);

  const std::string batch = test::error_message([] {
    core::matmul(random_tensor({2, 4, 3}, 1, DType::f32), random_tensor({3, 3, 2}, 2, DType::f32));
  });
  CHECK(batch.find("matmul") != std::string::npos);
  CHECK(batch.find("(2, 4, 3)") != std::string::npos);
  CHECK(batch.find("(3, 3, 2)") != std::string::npos);

  Tensor ints = from_vector(std::vector<int64_t>{1, 2, 3, 4}, {2, 2});
  CHECK_THROWS_AS(core::matmul(ints, ints), Error);
  const std::string dtype = test::error_message([&] { core::matmul(ints, ints); });
  CHECK(dtype.find("matmul") != std::string::npos);
  CHECK(dtype.find("i64") != std::string::npos);

  const std::string scalar =
      test::error_message([] { core::matmul(scalar_tensor(2), scalar_tensor(3)); });
  CHECK(scalar.find("matmul") != std::string::npos);
  CHECK(scalar.find("at least one dim") != std::string::npos);
}

TEST_CASE("matmul: same bits on any thread count") {
  struct Case {
    Shape a, b;
    bool transpose_a;
    DType dtype = DType::f32;
  };
  // K above Eigen's multi-threaded depth block (320) and odd M, N; split along M (M >= N) and
  // along N (N > M); batches small and large; f64 (other register blocks).
  const std::vector<Case> cases = {
      {{203, 517}, {517, 77}, false},
      {{517, 203}, {517, 300}, true},
      {{64, 1000}, {1000, 130}, false},
      {{5, 300}, {300, 1001}, false},
      {{6, 33, 70}, {6, 70, 41}, false},
      {{2, 150, 400}, {400, 90}, false},
      {{350, 77}, {350, 211}, true, DType::f64},
      {{211, 350}, {350, 77}, false, DType::f64},
  };
  const int saved = num_threads();
  for (const Case& c : cases) {
    INFO("a ", shape_str(c.a), " b ", shape_str(c.b), c.transpose_a ? " (a transposed) " : " ",
         dtype_name(c.dtype));
    Tensor a = random_tensor(c.a, 19, c.dtype), b = random_tensor(c.b, 20, c.dtype);
    if (c.transpose_a) a = core::transpose(a, -1, -2);
    std::vector<std::vector<double>> results;  // f32 values are exact in f64
    for (int threads : {1, 2, 3, 4}) {
      set_num_threads(threads);
      results.push_back(core::matmul(a, b).to_vector<double>());
    }
    set_num_threads(saved);
    for (size_t i = 1; i < results.size(); ++i) CHECK(results[i] == results[0]);
    if (a.dim() == 2) check_product(core::matmul(a, b), core::contiguous(a), b);
  }
  set_num_threads(saved);
}

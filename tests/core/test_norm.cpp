// rms_norm and layer_norm (core ops): forward values and statistics against naive loops
// written here, every weight/bias combination, 2-d and 3-d inputs, strided inputs, bf16, the
// backward against a closed form evaluated in f64 loops, thread-count independence of the
// parameter gradients, and the errors misuse raises.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "autograd/ops.h"
#include "core/cpu/parallel.h"
#include "support/tensors.h"

using namespace mnemo;
using test::check_close;
using test::values;

namespace {

// Inputs in [-2, 2).
Tensor random_input(const Shape& shape, uint64_t seed, DType dtype = DType::f64, double lo = -2,
                    double hi = 2) {
  return test::random_tensor(shape, seed, dtype, lo, hi);
}

// NormReference statistics and outputs, row by row in f64, for x viewed as (N, C).
struct NormReference {
  std::vector<double> y, mean, rstd;
};

NormReference reference_norm(bool layer, const std::vector<double>& x, int64_t C,
                             const std::vector<double>* w, const std::vector<double>* b,
                             double eps) {
  NormReference ref;
  const int64_t N = int64_t(x.size()) / C;
  for (int64_t i = 0; i < N; ++i) {
    const double* row = x.data() + i * C;
    double mean = 0, ms = 0;
    for (int64_t c = 0; c < C; ++c) mean += row[c] / double(C);
    for (int64_t c = 0; c < C; ++c) {
      double centred = layer ? row[c] - mean : row[c];
      ms += centred * centred / double(C);
    }
    double rstd = 1 / std::sqrt(ms + eps);
    ref.mean.push_back(mean);
    ref.rstd.push_back(rstd);
    for (int64_t c = 0; c < C; ++c) {
      double v = ((layer ? row[c] - mean : row[c]) * rstd) * (w ? (*w)[c] : 1.0);
      ref.y.push_back(v + (b ? (*b)[c] : 0.0));
    }
  }
  return ref;
}

// Closed-form gradients, row by row in f64 (the formulas of core/cpu/norm.cpp's header,
// written out independently from the definitions).
struct NormReferenceGrads {
  std::vector<double> dx, dw, db;
};

NormReferenceGrads reference_grads(bool layer, const std::vector<double>& x,
                                   const std::vector<double>& dy, const std::vector<double>& w,
                                   int64_t C, double eps) {
  const int64_t N = int64_t(x.size()) / C;
  NormReference fwd = reference_norm(layer, x, C, nullptr, nullptr, eps);
  NormReferenceGrads g{std::vector<double>(x.size()), std::vector<double>(size_t(C)),
                       std::vector<double>(size_t(C))};
  for (int64_t i = 0; i < N; ++i) {
    const double r = fwd.rstd[i], m = layer ? fwd.mean[i] : 0.0;
    double mean_g = 0, mean_gxhat = 0;
    for (int64_t c = 0; c < C; ++c) {
      double xhat = (x[i * C + c] - m) * r, gc = dy[i * C + c] * w[c];
      mean_g += gc / double(C);
      mean_gxhat += gc * xhat / double(C);
      g.dw[c] += dy[i * C + c] * xhat;
      g.db[c] += dy[i * C + c];
    }
    for (int64_t c = 0; c < C; ++c) {
      double xhat = (x[i * C + c] - m) * r, gc = dy[i * C + c] * w[c];
      g.dx[i * C + c] =
          layer ? r * (gc - mean_g - xhat * mean_gxhat) : r * (gc - xhat * mean_gxhat);
    }
  }
  return g;
}

}  // namespace

TEST_CASE("rms_norm: forward and rstd match a naive reference") {
  const double eps = 1e-5;
  for (DType dtype : {DType::f64, DType::f32}) {
    for (bool with_weight : {true, false}) {
      for (Shape shape : {Shape{4, 7}, Shape{2, 3, 5}}) {
        INFO(dtype_name(dtype), " weight ", with_weight, " shape ", shape_str(shape));
        Tensor x = random_input(shape, 1, dtype);
        Tensor w = with_weight ? random_input({shape.back()}, 2, dtype) : Tensor();
        core::NormOutput out = core::rms_norm(x, w, eps);
        std::vector<double> wv = with_weight ? values(w) : std::vector<double>();
        NormReference ref = reference_norm(false, values(x), shape.back(),
                                           with_weight ? &wv : nullptr, nullptr, eps);
        double tol = dtype == DType::f64 ? 1e-12 : 1e-5;
        CHECK(out.y.shape() == shape);
        CHECK(out.y.dtype() == dtype);
        CHECK(out.rstd.shape() == Shape{numel(shape) / shape.back()});
        CHECK_FALSE(out.mean.defined());
        check_close(values(out.y), ref.y, tol);
        check_close(values(out.rstd), ref.rstd, tol);
      }
    }
  }
}

TEST_CASE("layer_norm: forward, mean and rstd match a naive reference") {
  const double eps = 1e-5;
  for (DType dtype : {DType::f64, DType::f32}) {
    for (int affine = 0; affine < 4; ++affine) {  // bit 0: weight, bit 1: bias
      for (Shape shape : {Shape{4, 7}, Shape{2, 3, 5}}) {
        INFO(dtype_name(dtype), " affine ", affine, " shape ", shape_str(shape));
        const int64_t C = shape.back();
        Tensor x = random_input(shape, 3, dtype, 1, 4);  // |mean| > std: tests centring
        Tensor w = affine & 1 ? random_input({C}, 4, dtype) : Tensor();
        Tensor b = affine & 2 ? random_input({C}, 5, dtype) : Tensor();
        core::NormOutput out = core::layer_norm(x, w, b, eps);
        std::vector<double> wv = w.defined() ? values(w) : std::vector<double>();
        std::vector<double> bv = b.defined() ? values(b) : std::vector<double>();
        NormReference ref = reference_norm(true, values(x), C, w.defined() ? &wv : nullptr,
                                           b.defined() ? &bv : nullptr, eps);
        double tol = dtype == DType::f64 ? 1e-12 : 1e-5;
        check_close(values(out.y), ref.y, tol);
        check_close(values(out.mean), ref.mean, tol);
        check_close(values(out.rstd), ref.rstd, tol);
      }
    }
  }
}

TEST_CASE("norms: a strided input gives the values of its contiguous copy") {
  Tensor base = random_input({6, 4}, 6);
  Tensor x = core::transpose(base, 0, 1);  // (4, 6), non-contiguous
  REQUIRE_FALSE(x.is_contiguous());
  Tensor w = random_input({6}, 7);
  Tensor b = random_input({6}, 8);
  CHECK(values(core::rms_norm(x, w, 1e-6).y) ==
        values(core::rms_norm(core::contiguous(x), w, 1e-6).y));
  CHECK(values(core::layer_norm(x, w, b, 1e-5).y) ==
        values(core::layer_norm(core::contiguous(x), w, b, 1e-5).y));
  // A weight of another floating dtype is cast to x's.
  CHECK(values(core::rms_norm(x, core::to(w, DType::f32), 1e-6).y) ==
        values(core::rms_norm(x, core::to(core::to(w, DType::f32), DType::f64), 1e-6).y));
}

TEST_CASE("norms: bf16 and f16 compute in f32 with f32 statistics") {
  for (DType dtype : {DType::bf16, DType::f16}) {
    INFO(dtype_name(dtype));
    Tensor x = random_input({3, 64}, 9, dtype);
    Tensor w = random_input({64}, 10, dtype);
    core::NormOutput rms = core::rms_norm(x, w, 1e-6);
    core::NormOutput ln = core::layer_norm(x, w, w, 1e-5);
    CHECK(rms.y.dtype() == dtype);
    CHECK(rms.rstd.dtype() == DType::f32);
    CHECK(ln.mean.dtype() == DType::f32);
    std::vector<double> wv = values(w);
    // x and w are exactly representable, so the reference sees the same inputs.
    NormReference ref_rms = reference_norm(false, values(x), 64, &wv, nullptr, 1e-6);
    NormReference ref_ln = reference_norm(true, values(x), 64, &wv, &wv, 1e-5);
    double tol = dtype == DType::bf16 ? 1e-2 : 2e-3;  // one rounding of the output
    check_close(values(rms.y), ref_rms.y, tol);
    check_close(values(ln.y), ref_ln.y, tol);
    check_close(values(rms.rstd), ref_rms.rstd, 1e-5);
    check_close(values(ln.rstd), ref_ln.rstd, 1e-5);
  }
}

TEST_CASE("norms: backward matches the closed form") {
  const int64_t C = 6;
  Tensor x = random_input({2, 5, C}, 11);
  Tensor dy = random_input({2, 5, C}, 12);
  Tensor w = random_input({C}, 13);
  for (bool layer : {false, true}) {
    INFO((layer ? "layer_norm" : "rms_norm"));
    NormReferenceGrads ref = reference_grads(layer, values(x), values(dy), values(w), C, 1e-5);
    core::NormGrads g;
    if (layer) {
      core::NormOutput fwd = core::layer_norm(x, w, w, 1e-5);
      g = core::layer_norm_backward(x, w, fwd.mean, fwd.rstd, dy, true);
      check_close(values(g.dbias), ref.db, 1e-12);
    } else {
      core::NormOutput fwd = core::rms_norm(x, w, 1e-5);
      g = core::rms_norm_backward(x, w, fwd.rstd, dy);
      CHECK_FALSE(g.dbias.defined());
    }
    CHECK(g.dx.shape() == x.shape());
    check_close(values(g.dx), ref.dx, 1e-12);
    check_close(values(g.dweight), ref.dw, 1e-12);
    // f32 agrees with f64 to f32 precision; a strided dy (expanded) is accepted.
    Tensor x32 = core::to(x, DType::f32), w32 = core::to(w, DType::f32);
    Tensor dy32 = core::to(dy, DType::f32);
    core::NormGrads g32 =
        layer ? core::layer_norm_backward(x32, w32, core::layer_norm(x32, w32, {}, 1e-5).mean,
                                          core::layer_norm(x32, w32, {}, 1e-5).rstd, dy32, false)
              : core::rms_norm_backward(x32, w32, core::rms_norm(x32, w32, 1e-5).rstd, dy32);
    check_close(values(g32.dx), ref.dx, 1e-4);
    check_close(values(g32.dweight), ref.dw, 1e-4);
  }
}

TEST_CASE("norms: weight gradients do not depend on the thread count") {
  Tensor x = random_input({3000, 48}, 14, DType::f32);
  Tensor dy = random_input({3000, 48}, 15, DType::f32);
  Tensor w = random_input({48}, 16, DType::f32);
  test::check_same_bits_on_1_and_4_threads([&] {
    core::NormOutput fwd = core::layer_norm(x, w, w, 1e-5);
    core::NormGrads ln = core::layer_norm_backward(x, w, fwd.mean, fwd.rstd, dy, true);
    core::NormGrads rms = core::rms_norm_backward(x, w, core::rms_norm(x, w, 1e-6).rstd, dy);
    return std::vector<Tensor>{ln.dx, ln.dweight, ln.dbias, rms.dx, rms.dweight};
  });
}

TEST_CASE("norms: zero rows give empty outputs and zero parameter gradients") {
  Tensor x = zeros({0, 4}, {DType::f64});
  Tensor w = ones({4}, {DType::f64});
  core::NormOutput fwd = core::layer_norm(x, w, w, 1e-5);
  CHECK(fwd.y.shape() == Shape{0, 4});
  core::NormGrads g = core::layer_norm_backward(x, w, fwd.mean, fwd.rstd, x, true);
  CHECK(values(g.dweight) == std::vector<double>(4, 0.0));
  CHECK(values(g.dbias) == std::vector<double>(4, 0.0));
}

TEST_CASE("norms: misuse throws an error naming the op") {
  Tensor x = random_input({3, 4}, 17);
  Tensor w = random_input({4}, 18);
  auto throws = [](auto fn, const char* op) {
    CHECK_THROWS_WITH_AS(fn(), doctest::Contains(op), Error);
  };
  throws([&] { core::rms_norm(x, random_input({5}, 19), 1e-6); }, "rms_norm: weight of shape (5,)");
  throws([&] { core::rms_norm(core::to(x, DType::i64), {}, 1e-6); }, "rms_norm");
  throws([&] { core::rms_norm(scalar_tensor(1.0, {DType::f64}), {}, 1e-6); }, "rms_norm");
  throws([&] { core::rms_norm(x, w, -1); }, "rms_norm: eps");
  throws([&] { core::layer_norm(x, w, random_input({4, 1}, 20), 1e-5); }, "layer_norm: bias");
  throws([&] { core::layer_norm(zeros({3, 0}, {DType::f64}), {}, {}, 1e-5); }, "layer_norm");
  throws([&] { core::layer_norm(x, core::to(w, DType::i32), {}, 1e-5); }, "layer_norm: weight");
  core::NormOutput fwd = core::layer_norm(x, w, {}, 1e-5);
  throws(
      [&] {
        core::layer_norm_backward(x, w, fwd.mean, fwd.rstd, random_input({4, 3}, 21), false);
      },
      "layer_norm_backward: output gradient");
  throws(
      [&] { core::layer_norm_backward(x, w, fwd.mean, core::to(fwd.rstd, DType::f32), x, false); },
      "layer_norm_backward: rstd");
  throws([&] { core::rms_norm_backward(x, w, random_input({2}, 22), x); },
         "rms_norm_backward: rstd");
  // Through the differentiable API too.
  throws([&] { rms_norm(x, random_input({3}, 23)); }, "rms_norm");
}

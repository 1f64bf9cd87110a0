// attention (core op): the fused kernel against a naive softmax(q k^T * scale + mask) v written
// here with loops over b, h, i, j; the causal offset (bottom-right alignment) and rows that see
// no key; grouped-query attention against repeated kv heads; strided inputs; bf16; the
// backward at f32 against f64; thread-count independence; and the errors misuse raises.
// (Gradients against finite differences: tests/autograd/test_gradcheck_nn.cpp.)
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>

#include "autograd/ops.h"
#include "core/cpu/parallel.h"
#include "support/tensors.h"

using namespace mnemo;
using test::check_close;
using test::kInf;
using test::random_tensor;
using test::values;

namespace {

// mask.at for a mask that broadcasts to (B, H, Tq, Tk).
double mask_at(const Tensor& mask, int64_t b, int64_t h, int64_t i, int64_t j) {
  if (!mask.defined()) return 0;
  const int64_t full[4] = {b, h, i, j};
  std::vector<int64_t> index;
  for (int64_t d = 0; d < mask.dim(); ++d) {
    int64_t at = full[4 - mask.dim() + d];
    index.push_back(mask.size(d) == 1 ? 0 : at);
  }
  return mask.at(index);
}

core::AttentionOptions options_of(bool causal, const Tensor& mask = {}, double scale = 0) {
  core::AttentionOptions o;
  o.causal = causal;
  o.mask = mask;
  o.scale = scale;
  return o;
}

struct AttentionReference {
  std::vector<double> out, lse;  // (B, H, Tq, Dv), (B, H, Tq) row-major
};

// The definition, in f64: for every (b, h, i), scores over the visible keys, softmax, sum.
AttentionReference reference_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                       const core::AttentionOptions& o) {
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), D = q.size(3);
  const int64_t Hkv = k.size(1), Tk = k.size(2), Dv = v.size(3);
  const double scale = o.scale == 0 ? 1 / std::sqrt(double(D)) : o.scale;
  AttentionReference ref;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      const int64_t hk = h / (H / Hkv);
      for (int64_t i = 0; i < Tq; ++i) {
        std::vector<double> s(size_t(Tk), -kInf);
        double max = -kInf;
        for (int64_t j = 0; j < Tk; ++j) {
          if (o.causal && j > i + (Tk - Tq)) continue;
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += q.at({b, h, i, d}) * k.at({b, hk, j, d});
          s[j] = dot * scale + mask_at(o.mask, b, h, i, j);
          max = std::max(max, s[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j < Tk && max > -kInf; ++j) sum += std::exp(s[j] - max);
        ref.lse.push_back(max > -kInf ? max + std::log(sum) : -kInf);
        for (int64_t e = 0; e < Dv; ++e) {
          double acc = 0;
          for (int64_t j = 0; j < Tk && max > -kInf; ++j) {
            acc += std::exp(s[j] - max) / sum * v.at({b, hk, j, e});
          }
          ref.out.push_back(acc);
        }
      }
    }
  }
  return ref;
}

struct Case {
  const char* label;
  int64_t B, H, Hkv, Tq, Tk, D, Dv;
  bool causal;
  Shape mask;  // empty: no mask
  double scale = 0;
};

const Case kCases[] = {
    {"plain", 2, 2, 2, 5, 5, 4, 4, false, {}},
    {"causal Tq = Tk", 2, 2, 2, 6, 6, 4, 3, true, {}},
    {"causal with a cache: Tq < Tk", 1, 2, 2, 3, 7, 4, 4, true, {}},
    {"causal Tq > Tk: early rows see no key", 1, 1, 1, 6, 4, 3, 3, true, {}},
    {"grouped-query H=4, Hkv=2, Dv != D", 2, 4, 2, 4, 6, 5, 3, false, {}},
    {"multi-query H=3, Hkv=1, causal", 1, 3, 1, 5, 5, 4, 2, true, {}},
    {"mask (Tq, Tk)", 2, 2, 2, 4, 6, 4, 4, false, {4, 6}},
    {"padding mask (B, 1, 1, Tk) with causal", 2, 2, 1, 5, 5, 4, 4, true, {2, 1, 1, 5}},
    {"custom scale", 1, 2, 2, 4, 4, 8, 4, false, {}, 0.7},
    {"several query blocks, causal cache", 1, 2, 1, 70, 100, 16, 8, true, {1, 2, 70, 100}},
};

// A mask of the given shape with a few -inf entries (hidden keys), including a whole row of
// the (Tq, Tk) case hidden.
Tensor make_mask(const Shape& shape, uint64_t seed) {
  if (shape.empty()) return {};
  std::vector<double> v = values(random_tensor(shape, seed, DType::f64, -1, 1));
  for (size_t i = 0; i < v.size(); i += 5) v[i] = -kInf;
  if (shape.size() == 2) {
    for (int64_t j = 0; j < shape[1]; ++j) v[size_t(shape[1] + j)] = -kInf;  // row 1: no key
  }
  return from_vector(v, shape, {DType::f64});
}

struct AttentionInputs {
  Tensor q, k, v;
  core::AttentionOptions options;
};

AttentionInputs make_inputs(const Case& c, DType dtype, uint64_t seed = 1) {
  AttentionInputs in;
  in.q = random_tensor({c.B, c.H, c.Tq, c.D}, seed, dtype, -2, 2);
  in.k = random_tensor({c.B, c.Hkv, c.Tk, c.D}, seed + 1, dtype, -2, 2);
  in.v = random_tensor({c.B, c.Hkv, c.Tk, c.Dv}, seed + 2, dtype);
  in.options.causal = c.causal;
  in.options.scale = c.scale;
  in.options.mask = make_mask(c.mask, seed + 3);
  if (in.options.mask.defined()) in.options.mask = core::to(in.options.mask, dtype);
  return in;
}

}  // namespace

TEST_CASE("attention: forward matches a naive softmax(q k^T * scale + mask) v") {
  for (DType dtype : {DType::f64, DType::f32}) {
    for (const Case& c : kCases) {
      INFO(std::string(c.label), " ", dtype_name(dtype));
      AttentionInputs in = make_inputs(c, dtype);
      core::AttentionOutput got = core::attention(in.q, in.k, in.v, in.options);
      AttentionReference ref = reference_attention(in.q, in.k, in.v, in.options);
      CHECK(got.out.shape() == Shape{c.B, c.H, c.Tq, c.Dv});
      CHECK(got.lse.shape() == Shape{c.B, c.H, c.Tq});
      double tol = dtype == DType::f64 ? 1e-12 : 1e-5;
      check_close(values(got.out), ref.out, tol);
      check_close(values(got.lse), ref.lse, tol);
    }
  }
}

TEST_CASE("attention: causal aligns bottom-right, and rows without keys are zero") {
  // v = identity over keys (Dv = Tk), so out[i][j] is the probability query i puts on key j.
  const int64_t Tq = 3, Tk = 5;
  Tensor q = random_tensor({1, 1, Tq, 4}, 20);
  Tensor k = random_tensor({1, 1, Tk, 4}, 21);
  std::vector<double> eye(size_t(Tk * Tk), 0.0);
  for (int64_t j = 0; j < Tk; ++j) eye[size_t(j * Tk + j)] = 1;
  Tensor v = from_vector(eye, {1, 1, Tk, Tk}, {DType::f64});
  core::AttentionOutput got = core::attention(q, k, v, options_of(true));
  for (int64_t i = 0; i < Tq; ++i) {
    double total = 0;
    for (int64_t j = 0; j < Tk; ++j) {
      INFO("query ", i, " key ", j);
      double p = got.out.at({0, 0, i, j});
      if (j <= i + (Tk - Tq)) {
        CHECK(p > 0);  // the cache (keys 0, 1) and the new keys up to the query itself
      } else {
        CHECK(p == 0);
      }
      total += p;
    }
    CHECK(total == doctest::Approx(1.0));
  }
  // Causal equals an explicit -inf mask over the hidden keys.
  std::vector<double> hidden(size_t(Tq * Tk), 0.0);
  for (int64_t i = 0; i < Tq; ++i) {
    for (int64_t j = i + (Tk - Tq) + 1; j < Tk; ++j) hidden[size_t(i * Tk + j)] = -kInf;
  }
  Tensor mask = from_vector(hidden, {Tq, Tk}, {DType::f64});
  check_close(values(core::attention(q, k, v, options_of(false, mask)).out), values(got.out),
              1e-14);

  // Tq > Tk: queries 0 .. Tq-Tk-1 see nothing: out 0, lse -inf, gradients 0, never NaN.
  Tensor q2 = random_tensor({1, 2, 6, 4}, 22);
  Tensor k2 = random_tensor({1, 2, 2, 4}, 23);
  Tensor v2 = random_tensor({1, 2, 2, 3}, 24);
  core::AttentionOptions causal = options_of(true);
  core::AttentionOutput o2 = core::attention(q2, k2, v2, causal);
  Tensor dout = random_tensor({1, 2, 6, 3}, 25);
  core::AttentionGrads g = core::attention_backward(q2, k2, v2, causal, o2.out, o2.lse, dout);
  for (int64_t h = 0; h < 2; ++h) {
    for (int64_t i = 0; i < 6; ++i) {
      INFO("head ", h, " query ", i);
      bool sees = i >= 4;
      CHECK((o2.lse.at({0, h, i}) == -kInf) == !sees);
      for (int64_t e = 0; e < 3; ++e) CHECK((o2.out.at({0, h, i, e}) == 0) == !sees);
      // (A query that sees a single key has P = 1 whatever q is: its dq is 0 too.)
      for (int64_t d = 0; d < 4; ++d) CHECK((g.dq.at({0, h, i, d}) == 0) == (i < 5));
    }
  }
  for (const Tensor& t : {g.dq, g.dk, g.dv}) {
    for (double x : values(t)) CHECK(std::isfinite(x));
  }
}

TEST_CASE("attention: no keys at all, or no queries") {
  Tensor q = random_tensor({1, 2, 3, 4}, 80);
  Tensor k = zeros({1, 2, 0, 4}, {DType::f64});
  Tensor v = zeros({1, 2, 0, 5}, {DType::f64});
  core::AttentionOutput o = core::attention(q, k, v);
  CHECK(values(o.out) == std::vector<double>(30, 0.0));
  CHECK(values(o.lse) == std::vector<double>(6, -kInf));
  core::AttentionGrads g = core::attention_backward(q, k, v, {}, o.out, o.lse, o.out);
  CHECK(values(g.dq) == std::vector<double>(24, 0.0));
  CHECK(g.dk.shape() == k.shape());
  // No queries: empty outputs, and zero gradients for the keys and values.
  Tensor q0 = zeros({1, 2, 0, 4}, {DType::f64});
  Tensor k2 = random_tensor({1, 2, 3, 4}, 81), v2 = random_tensor({1, 2, 3, 5}, 82);
  core::AttentionOutput o0 = core::attention(q0, k2, v2);
  CHECK(o0.out.shape() == Shape{1, 2, 0, 5});
  core::AttentionGrads g0 = core::attention_backward(q0, k2, v2, {}, o0.out, o0.lse, o0.out);
  CHECK(values(g0.dk) == std::vector<double>(24, 0.0));
  CHECK(values(g0.dv) == std::vector<double>(30, 0.0));
}

TEST_CASE("attention: grouped-query equals repeating each kv head over its group") {
  const int64_t H = 6, Hkv = 2;
  Tensor q = random_tensor({2, H, 7, 4}, 30);
  Tensor k = random_tensor({2, Hkv, 9, 4}, 31);
  Tensor v = random_tensor({2, Hkv, 9, 5}, 32);
  // Head h of the repeated tensors is kv head h / (H / Hkv).
  auto repeat = [&](const Tensor& t) {
    Shape shape = t.shape();
    shape[1] = H;
    std::vector<double> out;
    for (int64_t b = 0; b < shape[0]; ++b) {
      for (int64_t h = 0; h < H; ++h) {
        for (int64_t j = 0; j < shape[2]; ++j) {
          for (int64_t e = 0; e < shape[3]; ++e) out.push_back(t.at({b, h / (H / Hkv), j, e}));
        }
      }
    }
    return from_vector(out, shape, {DType::f64});
  };
  Tensor k_rep = repeat(k), v_rep = repeat(v);
  core::AttentionOptions options = options_of(true);
  core::AttentionOutput grouped = core::attention(q, k, v, options);
  core::AttentionOutput repeated = core::attention(q, k_rep, v_rep, options);
  check_close(values(grouped.out), values(repeated.out), 1e-13);
  Tensor dout = random_tensor(grouped.out.shape(), 33);
  core::AttentionGrads g =
      core::attention_backward(q, k, v, options, grouped.out, grouped.lse, dout);
  core::AttentionGrads r =
      core::attention_backward(q, k_rep, v_rep, options, repeated.out, repeated.lse, dout);
  check_close(values(g.dq), values(r.dq), 1e-12);
  // dk of a kv head is the sum of the repeated heads' dk over its group.
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t hk = 0; hk < Hkv; ++hk) {
      for (int64_t j = 0; j < 9; ++j) {
        for (int64_t d = 0; d < 4; ++d) {
          double sum = 0;
          for (int64_t h = hk * 3; h < hk * 3 + 3; ++h) sum += r.dk.at({b, h, j, d});
          CHECK(g.dk.at({b, hk, j, d}) == doctest::Approx(sum).epsilon(1e-12));
        }
        double sum_v = 0;
        for (int64_t h = hk * 3; h < hk * 3 + 3; ++h) sum_v += r.dv.at({b, h, j, 0});
        CHECK(g.dv.at({b, hk, j, 0}) == doctest::Approx(sum_v).epsilon(1e-12));
      }
    }
  }
}

TEST_CASE("attention: strided q, k, v and a strided mask give the contiguous result") {
  Tensor q = core::transpose(random_tensor({2, 3, 4, 5}, 40), 2, 3);  // (2, 3, 5, 4)
  Tensor k = core::transpose(random_tensor({2, 6, 3, 4}, 41), 1, 2);  // (2, 3, 6, 4)
  Tensor v = core::narrow(random_tensor({2, 3, 6, 7}, 42), 3, 1, 3);  // (2, 3, 6, 3)
  Tensor mask = core::transpose(random_tensor({6, 5}, 43), 0, 1);     // (5, 6)
  REQUIRE_FALSE(q.is_contiguous());
  REQUIRE_FALSE(k.is_contiguous());
  REQUIRE_FALSE(v.is_contiguous());
  core::AttentionOptions strided = options_of(true, mask);
  core::AttentionOptions dense = options_of(true, core::contiguous(mask));
  core::AttentionOutput a = core::attention(q, k, v, strided);
  core::AttentionOutput b =
      core::attention(core::contiguous(q), core::contiguous(k), core::contiguous(v), dense);
  CHECK(values(a.out) == values(b.out));
  CHECK(values(a.lse) == values(b.lse));
}

TEST_CASE("attention: f32 and bf16 agree with f64 to their precision") {
  const Case c = {"blocks, GQA, causal cache, mask", 2, 4, 2, 45, 60, 32, 16, true, {2, 1, 45, 60}};
  AttentionInputs in = make_inputs(c, DType::f64, 50);
  core::AttentionOutput ref = core::attention(in.q, in.k, in.v, in.options);
  Tensor dout = random_tensor(ref.out.shape(), 55);
  core::AttentionGrads gref =
      core::attention_backward(in.q, in.k, in.v, in.options, ref.out, ref.lse, dout);
  for (DType dtype : {DType::f32, DType::bf16}) {
    INFO(dtype_name(dtype));
    auto cast = [&](const Tensor& t) { return core::to(t, dtype); };
    core::AttentionOptions options = in.options;
    options.mask = cast(options.mask);
    core::AttentionOutput got = core::attention(cast(in.q), cast(in.k), cast(in.v), options);
    CHECK(got.lse.dtype() == DType::f32);
    core::AttentionGrads g = core::attention_backward(cast(in.q), cast(in.k), cast(in.v), options,
                                                      got.out, got.lse, cast(dout));
    // bf16 rounds every input (rel. 2^-9) before the products: compare loosely.
    double tol = dtype == DType::f32 ? 1e-4 : 5e-2;
    auto close = [&](const Tensor& x, const Tensor& want) {
      std::vector<double> a = values(x), b = values(want);
      REQUIRE(a.size() == b.size());
      double worst = 0, scale = 0;
      for (size_t i = 0; i < a.size(); ++i) {
        if (std::isinf(b[i])) {
          CHECK(a[i] == b[i]);
          continue;
        }
        worst = std::max(worst, std::abs(a[i] - b[i]));
        scale = std::max(scale, std::abs(b[i]));
      }
      CHECK(worst <= tol * scale);
    };
    close(got.out, ref.out);
    close(got.lse, ref.lse);
    close(g.dq, gref.dq);
    close(g.dk, gref.dk);
    close(g.dv, gref.dv);
  }
}

TEST_CASE("attention: results do not depend on the thread count") {
  // The LM-sized case (many tasks), and one with a single forward task but a large GEMM.
  const Case cases[] = {{"B=4, H=4, T=64 causal", 4, 4, 2, 64, 64, 32, 32, true, {}},
                        {"one block, long keys", 1, 1, 1, 16, 1500, 64, 64, false, {1500}}};
  for (const Case& c : cases) {
    INFO(std::string(c.label));
    AttentionInputs in = make_inputs(c, DType::f32, 60);
    Tensor dout = random_tensor({c.B, c.H, c.Tq, c.Dv}, 65, DType::f32);
    test::check_same_bits_on_1_and_4_threads([&] {
      core::AttentionOutput o = core::attention(in.q, in.k, in.v, in.options);
      core::AttentionGrads g =
          core::attention_backward(in.q, in.k, in.v, in.options, o.out, o.lse, dout);
      return std::vector<Tensor>{o.out, o.lse, g.dq, g.dk, g.dv};
    });
  }
}

TEST_CASE("attention: misuse throws an error naming the op") {
  Tensor q = random_tensor({2, 4, 3, 8}, 70);
  Tensor k = random_tensor({2, 2, 5, 8}, 71);
  Tensor v = random_tensor({2, 2, 5, 6}, 72);
  auto throws = [](auto fn, const char* op) {
    CHECK_THROWS_WITH_AS(fn(), doctest::Contains(op), Error);
  };
  throws([&] { core::attention(core::view(q, {8, 3, 8}), k, v); }, "attention: expected q");
  throws([&] { core::attention(q, random_tensor({2, 2, 5, 7}, 73), v); }, "attention: q");
  throws([&] { core::attention(q, k, random_tensor({2, 2, 4, 6}, 74)); }, "attention: q");
  throws(
      [&] {
        core::attention(q, random_tensor({2, 3, 5, 8}, 75), random_tensor({2, 3, 5, 6}, 76));
      },
      "attention: 4 query heads cannot be shared evenly by 3 kv heads");
  throws([&] { core::attention(q, core::to(k, DType::f32), v); }, "attention: q, k, v must share");
  throws(
      [&] {
        core::attention(q, k, v, options_of(false, random_tensor({3, 4}, 77)));
      },
      "attention: mask of shape (3, 4)");
  throws(
      [&] {
        core::attention(q, k, v, options_of(false, ones({3, 5}, {DType::boolean})));
      },
      "attention: the mask is an additive bias");
  throws([&] { core::attention(q, k, v, options_of(false, {}, std::nan(""))); },
         "attention: scale");
  core::AttentionOutput o = core::attention(q, k, v);
  throws(
      [&] {
        core::attention_backward(q, k, v, {}, o.out, o.lse, random_tensor({2, 4, 3, 5}, 78));
      },
      "attention_backward: out");
  throws([&] { core::attention_backward(q, k, v, {}, o.out, core::to(o.lse, DType::f32), o.out); },
         "attention_backward: lse");
  // The differentiable op refuses a mask that wants a gradient it would never get.
  Tensor mask = zeros({3, 5}, {DType::f64}).set_requires_grad();
  throws([&] { mnemo::attention(q, k, v, options_of(false, mask)); }, "attention: the mask");
}

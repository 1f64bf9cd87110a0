// gradcheck: the fused neural-network ops whose rules call explicit backward kernels —
// layer_norm, rms_norm, attention and scan — against f64 central finite differences, over
// tables of shapes: with and without the optional inputs, 2-d and 3-d, broadcasting,
// non-contiguous inputs and size-1 dims.
#include <doctest/doctest.h>

#include "autograd/ops.h"
#include "support/gradcheck_cases.h"

using namespace mnemo;
using namespace mnemo::test;  // tests/support/gradcheck_cases.h

TEST_GRADCHECK("layer_norm") {
  auto full = [](const TensorList& in) { return layer_norm(in[0], in[1], in[2]); };
  auto plain = [](const TensorList& in) { return layer_norm(in[0], {}, {}); };
  auto weight_only = [](const TensorList& in) { return layer_norm(in[0], in[1], {}); };
  auto bias_only = [](const TensorList& in) { return layer_norm(in[0], {}, in[1]); };
  check_gradients({
      {"(3,5) weight and bias", {{3, 5}, {5}, {5}}, full},
      {"(2,3,4) no weight, no bias", {{2, 3, 4}}, plain},
      {"(2,3,4) weight only", {{2, 3, 4}, {4}}, weight_only},
      {"(4,6) bias only", {{4, 6}, {6}}, bias_only},
      {"non-contiguous x (4,3) and weight", {{4, 3}, {3}, {3}}, full, -2, 2, {0, 1}},
      {"size-1 dims (1,3,1,4)", {{1, 3, 1, 4}, {4}, {4}}, full},
      {"one row (1,7)", {{1, 7}, {7}, {7}}, full},
  });
}

TEST_GRADCHECK("rms_norm") {
  auto weighted = [](const TensorList& in) { return rms_norm(in[0], in[1]); };
  auto plain = [](const TensorList& in) { return rms_norm(in[0], {}); };
  check_gradients({
      {"(3,5) weight", {{3, 5}, {5}}, weighted},
      {"(2,3,4) weight", {{2, 3, 4}, {4}}, weighted},
      {"(2,3,4) no weight", {{2, 3, 4}}, plain},
      {"non-contiguous x (4,3) and weight", {{4, 3}, {3}}, weighted, -2, 2, {0, 1}},
      {"size-1 dims (1,3,1,4)", {{1, 3, 1, 4}, {4}}, weighted},
      {"C = 1 (3,1)", {{3, 1}, {1}}, weighted, 0.5, 2},
      {"custom eps",
       {{2, 6}, {6}},
       [](const TensorList& in) { return rms_norm(in[0], in[1], 0.3); }},
  });
}

TEST_GRADCHECK("attention") {
  // in: q, k, v (and the mask, a constant input, where a case has one).
  auto with = [](bool causal, double scale = 0) {
    return [causal, scale](const TensorList& in) {
      core::AttentionOptions o;
      o.causal = causal;
      o.scale = scale;
      if (in.size() > 3) o.mask = in[3];
      return mnemo::attention(in[0], in[1], in[2], o);  // (core::attention is found by ADL)
    };
  };
  auto plain = with(false);
  auto causal = with(true);
  check_gradients({
      {"B=2, H=2, T=3, D=4", {{2, 2, 3, 4}, {2, 2, 3, 4}, {2, 2, 3, 4}}, plain},
      {"causal Tq = Tk = 4", {{1, 2, 4, 3}, {1, 2, 4, 3}, {1, 2, 4, 3}}, causal},
      {"causal with a cache: Tq = 2 < Tk = 5", {{1, 2, 2, 3}, {1, 2, 5, 3}, {1, 2, 5, 3}}, causal},
      {"causal Tq = 4 > Tk = 2: rows without keys",
       {{1, 1, 4, 3}, {1, 1, 2, 3}, {1, 1, 2, 3}},
       causal},
      {"mask (Tq, Tk) broadcast",
       {{2, 2, 3, 4}, {2, 2, 5, 4}, {2, 2, 5, 4}, {3, 5}},
       plain,
       -2,
       2,
       {},
       {3}},
      {"mask (B, 1, 1, Tk) with causal",
       {{2, 2, 4, 3}, {2, 2, 4, 3}, {2, 2, 4, 3}, {2, 1, 1, 4}},
       causal,
       -2,
       2,
       {},
       {3}},
      {"grouped-query H = 4, Hkv = 2", {{1, 4, 3, 3}, {1, 2, 5, 3}, {1, 2, 5, 3}}, causal},
      {"Dv = 2 != D = 5", {{2, 1, 3, 5}, {2, 1, 4, 5}, {2, 1, 4, 2}}, plain},
      {"custom scale 0.3", {{1, 2, 3, 4}, {1, 2, 3, 4}, {1, 2, 3, 4}}, with(false, 0.3)},
      {"non-contiguous q, k, v",
       {{1, 2, 4, 3}, {1, 2, 4, 3}, {1, 2, 4, 3}},
       causal,
       -2,
       2,
       {0, 1, 2}},
      {"size-1 dims B = H = Tq = 1", {{1, 1, 1, 3}, {1, 1, 4, 3}, {1, 1, 4, 2}}, plain},
      {"across query blocks: Tq = 35, Tk = 36",
       {{1, 1, 35, 2}, {1, 1, 36, 2}, {1, 1, 36, 2}},
       causal,
       -1,
       1},
  });
}

TEST_GRADCHECK("scan") {
  auto no_h0 = [](int64_t dim) {
    return [dim](const TensorList& in) { return scan(in[0], in[1], dim); };
  };
  auto with_h0 = [](int64_t dim) {
    return [dim](const TensorList& in) { return scan(in[0], in[1], dim, in[2]); };
  };
  const double lo = -1.2, hi = 1.2;
  check_gradients({
      {"(2,5,3) dim 1 without h0", {{2, 5, 3}, {2, 5, 3}}, no_h0(1), lo, hi},
      {"(2,5,3) dim 1 with h0", {{2, 5, 3}, {2, 5, 3}, {2, 3}}, with_h0(1), lo, hi},
      {"(4,3,2) dim 0 with h0", {{4, 3, 2}, {4, 3, 2}, {3, 2}}, with_h0(0), lo, hi},
      {"(3,4) dim -1 with h0", {{3, 4}, {3, 4}, {3}}, with_h0(-1), lo, hi},
      {"broadcast a (1,5,1) with x (2,5,3)", {{1, 5, 1}, {2, 5, 3}, {2, 3}}, with_h0(1), lo, hi},
      {"broadcast a (5,1) over batch and channels", {{5, 1}, {2, 5, 3}}, no_h0(1), lo, hi},
      {"broadcast h0 (1,) over the state", {{2, 4, 3}, {2, 4, 3}, {1}}, with_h0(1), lo, hi},
      {"non-contiguous a, x, h0", {{2, 4, 3}, {2, 4, 3}, {4, 3}}, with_h0(0), lo, hi, {0, 1, 2}},
      {"size-1 dims (1,4,1)", {{1, 4, 1}, {1, 4, 1}, {1, 1}}, with_h0(1), lo, hi},
  });
}

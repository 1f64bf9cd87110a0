// The Memorizing Transformer's "alibi" local positions against a naive reference (loops over
// query/key pairs), an f64 gradcheck that includes the slopes, the memory layer's unrotated
// XL cache against the same layer run on the whole stream with a sliding-window mask, and
// diagnose_memorizing on a tiny recall model.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "core/ops/random.h"
#include "memory/memorizing.h"
#include "memory/memorizing_diagnostics.h"
#include "memory/memory_test_util.h"
#include "memory/tasks.h"

namespace mnemo::memory {
namespace {

using test::max_abs_diff;

}  // namespace

TEST_CASE("KnnAttention alibi: local attention equals a naive distance-biased softmax") {
  Generator gen(11);
  const int64_t B = 2, T = 4, C = 8, H = 4, Hkv = 2, D = C / H, G = H / Hkv, M = 3;
  const Tensor x = randn({B, T, C}, {DType::f64}, &gen);
  const nn::LayerKV extra{randn({B, Hkv, M, D}, {DType::f64}, &gen),
                          randn({B, Hkv, M, D}, {DType::f64}, &gen)};
  KnnMemory mem(6, Hkv, D);
  KnnAttention layer(C, H, Hkv, mem, 3, MemoryGate::sigmoid, &gen, 0.5, -1e4, LocalPosition::alibi);
  layer.to(DType::f64);
  // ALiBi's slopes at the start: 2^-2, 2^-4, 2^-6, 2^-8 for 4 heads; then arbitrary ones.
  CHECK(layer.alibi_slopes.to_vector<double>() ==
        std::vector<double>{0.25, 0.0625, 0.015625, 0.00390625});
  layer.load_state_dict(
      {{"alibi_slopes", from_vector(std::vector<double>{0.7, -0.2, 0.0, 1.5}, {H}, {DType::f64})}},
      false);
  const KnnAttentionOutput out =
      layer.forward(x, {}, mem.initial(B, {DType::f64}), &extra);  // gate closed: local only
  // Naive: q, k, v from the weights; key j of [extra; local] sits at position j - M.
  const std::vector<double> wq = layer.q_proj->weight.to_vector<double>();
  const std::vector<double> wk = layer.k_proj->weight.to_vector<double>();
  const std::vector<double> wv = layer.v_proj->weight.to_vector<double>();
  const std::vector<double> xs = x.to_vector<double>(), ek = extra.k.to_vector<double>(),
                            ev = extra.v.to_vector<double>();
  const std::vector<double> m = layer.alibi_slopes.to_vector<double>();
  auto proj = [&](const std::vector<double>& w, int64_t b, int64_t t, int64_t row) {
    double s = 0;
    for (int64_t c = 0; c < C; ++c) s += w[size_t(row * C + c)] * xs[size_t((b * T + t) * C + c)];
    return s;
  };
  std::vector<double> o(size_t(B * T * H * D), 0.0);  // (B, T, H*D)
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      const int64_t kvh = h / G;
      for (int64_t i = 0; i < T; ++i) {
        std::vector<double> logit, val;
        for (int64_t j = 0; j < M + i + 1; ++j) {
          double s = 0;
          std::vector<double> v(static_cast<size_t>(D));
          for (int64_t d = 0; d < D; ++d) {
            const double q = proj(wq, b, i, h * D + d);
            const double k = j < M ? ek[size_t(((b * Hkv + kvh) * M + j) * D + d)]
                                   : proj(wk, b, j - M, kvh * D + d);
            v[size_t(d)] = j < M ? ev[size_t(((b * Hkv + kvh) * M + j) * D + d)]
                                 : proj(wv, b, j - M, kvh * D + d);
            s += q * k;
          }
          logit.push_back(s / std::sqrt(double(D)) - m[size_t(h)] * double(i - (j - M)));
          val.insert(val.end(), v.begin(), v.end());
        }
        const double top = *std::max_element(logit.begin(), logit.end());
        double den = 0;
        for (double l : logit) den += std::exp(l - top);
        for (size_t j = 0; j < logit.size(); ++j) {
          const double p = std::exp(logit[j] - top) / den;
          for (int64_t d = 0; d < D; ++d)
            o[size_t((b * T + i) * H * D + h * D + d)] += p * val[j * size_t(D) + size_t(d)];
        }
      }
    }
  }
  const Tensor want =
      view(linear(from_vector(o, {B * T, H * D}, {DType::f64}), layer.o_proj->weight), {B, T, C});
  CHECK(max_abs_diff(out.y, want) < 1e-12);
  CHECK(max_abs_diff(out.k_rope, out.k) == 0.0);  // no rotation
}

TEST_CASE("KnnAttention alibi: f64 gradcheck including the slopes, both gates") {
  Generator gen(12);
  const int64_t B = 2, T = 3, C = 8, H = 2, Hkv = 1, D = C / H;
  KnnMemory mem(5, Hkv, D);
  KnnMemoryState m = mem.initial(B, {DType::f64});
  m = mem.append(m, randn({B, Hkv, 4, D}, {DType::f64}, &gen),
                 randn({B, Hkv, 4, D}, {DType::f64}, &gen));
  const Tensor x = randn({B, T, C}, {DType::f64}, &gen);
  for (const MemoryGate gate : {MemoryGate::sigmoid, MemoryGate::joint}) {
    KnnAttention layer(C, H, Hkv, mem, 2, gate, &gen, 0.5, 0.3, LocalPosition::alibi);
    layer.to(DType::f64);
    const GradcheckResult r =
        gradcheck([&](const TensorList&) { return layer.forward(x, {}, m).y; }, layer.parameters());
    INFO(r.message);
    CHECK(r.ok);
    CHECK(r.elements_checked == 2 * C * C + 2 * C * Hkv * D + 2 * H);  // + gate, slopes
  }
}

TEST_CASE("MemorizingLM alibi: the memory layer's XL cache is the whole stream, windowed") {
  // One layer (the kNN layer, gate closed) with an XL cache of S tokens: segment s's query at
  // stream position p sees keys [start(s) - S, p] at their stream distances, which is the same
  // layer run on the whole stream with a sliding-window mask.
  Generator gen(13);
  const nn::LlamaConfig lc = test::micro_llama(1);
  MemorizingConfig mc{.capacity = 8,
                      .top_k = 4,
                      .xl_layers = {0},
                      .gate_init = -1e4,
                      .position = "alibi",
                      .segment_length = 4};
  MemorizingLM lm(lc, mc, &gen);
  lm.to(DType::f64);
  const int64_t B = 2;
  const std::vector<int64_t> lengths = {4, 3, 4, 2};
  int64_t total = 0;
  for (int64_t n : lengths) total += n;
  const Tensor stream = randint(0, lc.vocab_size, {B, total}, {DType::i64}, &gen);
  const KnnMemory& mem = lm.memory_block->self_attn->memory;
  const Tensor h = lm.memory_block
                       ->forward(lm.embed_tokens->forward(stream), {}, mem.initial(B, {DType::f64}),
                                 nullptr, test::xl_window_bias(lengths, mc.segment_length))
                       .y;
  const Tensor want =
      view(linear(reshape(lm.norm->forward(h), {B * total, lc.hidden_size}), lm.lm_head->weight),
           {B, total, lc.vocab_size});
  test::check_segment_logits(lm, stream, lengths, want, 1e-12);
}

TEST_CASE("diagnose_memorizing: hit rates, gate and gradients on a tiny recall model") {
  Generator gen(14);
  const auto task = make_task("recall", 3, {{"segment-length", "32"}, {"local-items", "2"}});
  const nn::LlamaConfig lc = mnemo::test::tiny_llama({.vocab_size = task->vocab_size(),
                                                      .intermediate_size = 32,
                                                      .num_attention_heads = 2,
                                                      .num_key_value_heads = 2});
  MemorizingConfig mc{.capacity = 5 * 32,
                      .xl_layers = {},
                      .gate_init = 0.0,  // g = 0.5
                      .position = "alibi",
                      .segment_length = 32};
  SUBCASE("top-K covers the whole memory: every far probe's entry is retrieved") {
    mc.top_k = 5 * 32;
    MemorizingLM lm(lc, mc, &gen);
    const nlohmann::json d = diagnose_memorizing(lm, *task, 3, 2);
    CHECK(d["far_probes"] == 3 * 8);  // 8 far pairs per stream, all queried
    CHECK(d["chance"].get<double>() == doctest::Approx(1.0));
    CHECK(d["hit_next_any_head"].get<double>() == 1.0);
    for (int h = 0; h < 2; ++h) {
      CHECK(d["hit_next"][h].get<double>() == 1.0);
      CHECK(d["hit_source"][h].get<double>() == 1.0);
      // Near-uniform weights at init over 96 or 128 entries.
      CHECK(d["p_next"][h].get<double>() > 0.0);
      CHECK(d["p_next"][h].get<double>() < 0.05);
      CHECK(d["gate"][h].get<double>() == doctest::Approx(0.5));
    }
    CHECK(d["alibi_slopes"].size() == 2);
    // In-window lookups train both projections; far probes reach the query (through the
    // retrieved logits) as well.
    CHECK(d["grad_norm_local_probes"]["k_proj"].get<double>() > 0);
    CHECK(d["grad_norm_local_probes"]["q_proj"].get<double>() > 0);
    CHECK(d["grad_norm_far_probes"]["q_proj"].get<double>() > 0);
    for (const Tensor& p : lm.parameters()) CHECK_FALSE(p.grad().defined());  // zeroed after
  }
  SUBCASE("top-1: hit rates count far probes, chance is 1 / entries held") {
    mc.top_k = 1;
    MemorizingLM lm(lc, mc, &gen);
    const nlohmann::json d = diagnose_memorizing(lm, *task, 2, 2);
    // Far probes sit in segments 3 (96 entries held) and 4 (128), 4 each.
    CHECK(d["chance"].get<double>() == doctest::Approx((1.0 / 96 + 1.0 / 128) / 2));
    const double probes = d["far_probes"].get<double>();
    for (int h = 0; h < 2; ++h) {
      // A rate is hits / far probes; a probe any head hits counts once for "any head".
      const double hits = d["hit_next"][h].get<double>() * probes;
      CHECK(hits == doctest::Approx(std::round(hits)));
      CHECK(d["hit_next_any_head"].get<double>() >= d["hit_next"][h].get<double>());
    }
  }
}

}  // namespace mnemo::memory

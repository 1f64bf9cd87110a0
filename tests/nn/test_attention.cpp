// RoPE against a per-element loop of HF's formula; attention layers against a reference
// built from plain matmul/softmax with the kv heads explicitly repeated; the KV cache against
// the full causal forward.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "nn/attention.h"
#include "nn/rotary.h"
#include "nn_test_util.h"

namespace mnemo::nn {
namespace {

using test::check_error;
using test::max_abs_diff;

// HF: inv_freq[i] = 1/theta^(2i/D); out[d] = x[d] cos(p f) + rotate_half(x)[d] sin(p f), with
// f = inv_freq[d mod D/2] and rotate_half(x)[d] = -x[d + D/2] (d < D/2), x[d - D/2] otherwise.
double rope_reference(const Tensor& x, int64_t b, int64_t h, int64_t t, int64_t d, double p,
                      double theta) {
  const int64_t D = x.size(3), half = D / 2, i = d % half;
  const double angle = p / std::pow(theta, double(2 * i) / double(D));
  const double rotated = d < half ? -x.at({b, h, t, d + half}) : x.at({b, h, t, d - half});
  return x.at({b, h, t, d}) * std::cos(angle) + rotated * std::sin(angle);
}

TEST_CASE("RoPE: HF rotate-half formula, default offsets and explicit position ids") {
  const int64_t B = 2, H = 3, T = 5, D = 8;
  const double theta = 500;
  RotaryEmbedding rope(D, 64, theta);
  const Tensor x = randn({B, H, T, D});
  const Tensor y = apply_rotary(x, rope.tables({}, 7, T));  // positions 7..11
  const Tensor pos = from_vector(std::vector<int64_t>{0, 1, 2, 3, 4, 40, 9, 9, 2, 63}, {B, T});
  const Tensor y2 = apply_rotary(x, rope.tables(pos, 0, T));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t d = 0; d < D; ++d) {
          CHECK(y.at({b, h, t, d}) ==
                doctest::Approx(rope_reference(x, b, h, t, d, double(7 + t), theta)).epsilon(1e-5));
          CHECK(
              y2.at({b, h, t, d}) ==
              doctest::Approx(rope_reference(x, b, h, t, d, pos.at({b, t}), theta)).epsilon(1e-5));
        }
  CHECK(rope.named_buffers().size() == 2);
  CHECK(rope.state_dict().empty());  // tables are non-persistent
  check_error([&] { rope.tables({}, 62, 3); }, {"max_position_embeddings"});
}

// softmax(q k^T * scale + causal bottom-right mask) v with k/v heads repeated to H.
// q (B, H, Tq, D), k/v (B, Hkv, Tk, D).
Tensor reference_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal) {
  const int64_t H = q.size(1), Hkv = k.size(1), Tq = q.size(2), Tk = k.size(2);
  std::vector<int64_t> head_map;
  for (int64_t h = 0; h < H; ++h) head_map.push_back(h / (H / Hkv));
  const Tensor map = from_vector(head_map, {H});
  const Tensor kr = index_select(k, 1, map), vr = index_select(v, 1, map);
  Tensor scores = matmul(q, transpose(kr, 2, 3)) / std::sqrt(double(q.size(3)));
  if (causal) {
    std::vector<double> mask(size_t(Tq * Tk));
    for (int64_t i = 0; i < Tq; ++i)
      for (int64_t j = 0; j < Tk; ++j)
        mask[size_t(i * Tk + j)] = j <= i + Tk - Tq ? 0 : -std::numeric_limits<double>::infinity();
    scores = scores + from_vector(mask, {Tq, Tk});
  }
  return matmul(softmax(scores, -1), vr);
}

// The layer recomputed from its parameters with separate projections and repeated kv heads.
Tensor reference_self_attention(const CausalSelfAttention& a, const Tensor& x,
                                const RopeTables& rope) {
  const int64_t B = x.size(0), T = x.size(1), D = a.head_dim;
  auto heads = [&](const Tensor& w, int64_t n) {
    return permute(reshape(linear(x, w), {B, T, n, D}), {0, 2, 1, 3});
  };
  const Tensor q = apply_rotary(heads(a.q_proj->weight, a.num_heads), rope);
  const Tensor k = apply_rotary(heads(a.k_proj->weight, a.num_kv_heads), rope);
  const Tensor v = heads(a.v_proj->weight, a.num_kv_heads);
  const Tensor o = reference_attention(q, k, v, true);
  return linear(reshape(permute(o, {0, 2, 1, 3}), {B, T, a.hidden_size}), a.o_proj->weight);
}

TEST_CASE("CausalSelfAttention: MHA and GQA (kv heads 2 of 4) match repeated-head reference") {
  const int64_t B = 2, T = 6, C = 16;
  RotaryEmbedding rope(4, 32);
  for (int64_t Hkv : {4, 2, 1}) {
    CAPTURE(Hkv);
    CausalSelfAttention attn(C, 4, Hkv, nullptr, 0.3);
    CHECK(attn.k_proj->weight.shape() == Shape{Hkv * 4, C});
    const Tensor x = randn({B, T, C});
    const RopeTables tables = rope.tables({}, 0, T);
    CHECK(max_abs_diff(attn.forward(x, tables), reference_self_attention(attn, x, tables)) < 1e-5);
  }
  check_error([] { CausalSelfAttention(16, 4, 3); }, {"num_kv_heads"});
}

TEST_CASE("CausalSelfAttention: KV cache fed one token at a time equals the full forward") {
  const int64_t B = 2, T = 7, C = 16;
  RotaryEmbedding rope(4, 32);
  CausalSelfAttention attn(C, 4, 2, nullptr, 0.3);
  const Tensor x = randn({B, T, C});
  const Tensor full = attn.forward(x, rope.tables({}, 0, T));
  LayerKV cache;
  // A prompt of 3 tokens, then single tokens.
  std::vector<Tensor> pieces{attn.forward(narrow(x, 1, 0, 3), rope.tables({}, 0, 3), &cache)};
  for (int64_t t = 3; t < T; ++t) {
    pieces.push_back(attn.forward(narrow(x, 1, t, 1), rope.tables({}, t, 1), &cache));
  }
  CHECK(cache.k.shape() == Shape{B, 2, T, 4});
  CHECK(max_abs_diff(concat(pieces, 1), full) < 1e-5);
}

TEST_CASE("CausalSelfAttention: extra key/values are fully visible, the local part causal") {
  const int64_t B = 1, T = 4, M = 3, C = 8;
  RotaryEmbedding rope(4, 32);
  CausalSelfAttention attn(C, 2, 1, nullptr, 0.3);
  const Tensor x = randn({B, T, C});
  const LayerKV extra{randn({B, 1, M, 4}), randn({B, 1, M, 4})};
  const RopeTables tables = rope.tables({}, 0, T);
  const Tensor y = attn.forward(x, tables, nullptr, &extra);
  // Reference: explicit mask, extra columns 0, local columns causal.
  auto heads = [&](const Tensor& w, int64_t n) {
    return permute(reshape(linear(x, w), {B, T, n, 4}), {0, 2, 1, 3});
  };
  const Tensor q = apply_rotary(heads(attn.q_proj->weight, 2), tables);
  const Tensor k = concat({extra.k, apply_rotary(heads(attn.k_proj->weight, 1), tables)}, 2);
  const Tensor v = concat({extra.v, heads(attn.v_proj->weight, 1)}, 2);
  std::vector<double> mask(size_t(T * (M + T)), 0);
  for (int64_t i = 0; i < T; ++i)
    for (int64_t j = 0; j < T; ++j)
      if (j > i) mask[size_t(i * (M + T) + M + j)] = -1e30;
  const Tensor k2 = index_select(k, 1, from_vector(std::vector<int64_t>{0, 0}, {2}));
  const Tensor v2 = index_select(v, 1, from_vector(std::vector<int64_t>{0, 0}, {2}));
  const Tensor p = softmax(matmul(q, transpose(k2, 2, 3)) / 2.0 + from_vector(mask, {T, M + T}));
  const Tensor o = matmul(p, v2);
  const Tensor ref = linear(reshape(permute(o, {0, 2, 1, 3}), {B, T, C}), attn.o_proj->weight);
  CHECK(max_abs_diff(y, ref) < 1e-5);
}

TEST_CASE("CrossAttention: every query sees all memory slots") {
  const int64_t B = 2, T = 3, M = 5, C = 8, Cm = 6;
  CrossAttention attn(C, Cm, 2, 2, nullptr, 0.3);
  const Tensor x = randn({B, T, C}), memory = randn({B, M, Cm});
  auto heads = [&](const Tensor& in, const Tensor& w, int64_t len) {
    return permute(reshape(linear(in, w), {B, len, 2, 4}), {0, 2, 1, 3});
  };
  const Tensor o =
      reference_attention(heads(x, attn.q_proj->weight, T), heads(memory, attn.k_proj->weight, M),
                          heads(memory, attn.v_proj->weight, M), false);
  const Tensor ref = linear(reshape(permute(o, {0, 2, 1, 3}), {B, T, C}), attn.o_proj->weight);
  CHECK(max_abs_diff(attn.forward(x, memory), ref) < 1e-5);
  check_error([&] { attn.forward(x, randn({B, M, C})); }, {"CrossAttention", "memory"});
}

}  // namespace
}  // namespace mnemo::nn

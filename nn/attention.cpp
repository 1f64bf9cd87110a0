// CausalSelfAttention, CrossAttention and the KV cache (attention.h).
#include "nn/attention.h"

#include "autograd/ops.h"
#include "core/error.h"
#include "nn/fused_linear.h"

namespace mnemo::nn {

int64_t KVCache::length() const {
  if (layers.empty() || !layers[0].k.defined()) return 0;
  return layers[0].k.size(2);
}

void KVCache::clear() {
  layers.clear();
}

namespace {

void check_heads(const char* op, int64_t C, int64_t H, int64_t Hkv) {
  MNEMO_CHECK(C > 0 && H > 0 && Hkv > 0,
              "{}: sizes must be positive, got hidden={} heads={} "
              "kv_heads={}",
              op, C, H, Hkv);
  MNEMO_CHECK(C % H == 0, "{}: hidden size {} is not divisible by num_heads {}", op, C, H);
  MNEMO_CHECK(H % Hkv == 0, "{}: num_heads {} is not divisible by num_kv_heads {}", op, H, Hkv);
}

// (B*T, heads*D) rows -> (B, heads, T, D), a view (no copy).
Tensor to_heads(const Tensor& x2, int64_t B, int64_t T, int64_t heads, int64_t D) {
  return permute(view(x2, {B, T, heads, D}), {0, 2, 1, 3});
}

// (B, H, T, D) -> (B*T, H*D): the one copy that brings heads back next to each other.
Tensor from_heads(const Tensor& o) {
  const int64_t B = o.size(0), H = o.size(1), T = o.size(2), D = o.size(3);
  return reshape(permute(o, {0, 2, 1, 3}), {B * T, H * D});
}

}  // namespace

CausalSelfAttention::CausalSelfAttention(int64_t C, int64_t H, int64_t Hkv, Generator* gen,
                                         double init_std)
    : hidden_size(C), num_heads(H), num_kv_heads(Hkv) {
  check_heads("CausalSelfAttention", C, H, Hkv);
  head_dim = C / H;
  const int64_t D = head_dim;
  q_proj = register_module("q_proj", std::make_shared<Linear>(C, H * D, false, gen, init_std));
  k_proj = register_module("k_proj", std::make_shared<Linear>(C, Hkv * D, false, gen, init_std));
  v_proj = register_module("v_proj", std::make_shared<Linear>(C, Hkv * D, false, gen, init_std));
  o_proj = register_module("o_proj", std::make_shared<Linear>(H * D, C, false, gen, init_std));
}

Tensor CausalSelfAttention::forward(const Tensor& x, const RopeTables& rope, LayerKV* cache,
                                    const LayerKV* extra, const Tensor& attn_bias) const {
  MNEMO_CHECK(x.dim() == 3 && x.size(2) == hidden_size,
              "CausalSelfAttention: input must be (B, T, {}), got {}", hidden_size,
              shape_str(x.shape()));
  const int64_t B = x.size(0), T = x.size(1), C = hidden_size;
  const int64_t H = num_heads, Hkv = num_kv_heads, D = head_dim;
  // One GEMM, three column views: (B*T, H D), (B*T, Hkv D), (B*T, Hkv D).
  const std::vector<Tensor> parts =
      fused_linear(reshape(x, {B * T, C}), {q_proj->weight, k_proj->weight, v_proj->weight});
  Tensor q, k;  // (B, H, T, D), (B, Hkv, T, D)
  if (rope.cos.defined()) {
    // RoPE on the rows viewed as (B, T, heads, D): its result is contiguous in that layout,
    // so to_heads' permute is free and dq/dk come back as plain rows for the GEMM backward.
    q = permute(apply_rotary_bthd(view(parts[0], {B, T, H, D}), rope), {0, 2, 1, 3});
    k = permute(apply_rotary_bthd(view(parts[1], {B, T, Hkv, D}), rope), {0, 2, 1, 3});
  } else {
    q = to_heads(parts[0], B, T, H, D);    // (B, H, T, D)
    k = to_heads(parts[1], B, T, Hkv, D);  // (B, Hkv, T, D)
  }
  Tensor v = to_heads(parts[2], B, T, Hkv, D);  // (B, Hkv, T, D)
  if (cache != nullptr) {
    if (cache->k.defined()) {
      MNEMO_CHECK(cache->k.size(0) == B && cache->k.size(1) == Hkv && cache->k.size(3) == D,
                  "CausalSelfAttention: KV cache holds {}, expected (B={}, Hkv={}, T, D={})",
                  shape_str(cache->k.shape()), B, Hkv, D);
      k = concat({cache->k, k}, 2);
      v = concat({cache->v, v}, 2);
    }
    cache->k = k;
    cache->v = v;
  }
  if (extra != nullptr) {
    k = concat({extra->k, k}, 2);
    v = concat({extra->v, v}, 2);
  }
  AttentionOptions options;
  options.causal = causal;
  options.mask = attn_bias;
  const Tensor o = attention(q, k, v, options);  // (B, H, T, D)
  return view(o_proj->forward(from_heads(o)), {B, T, C});
}

CrossAttention::CrossAttention(int64_t C, int64_t Cm, int64_t H, int64_t Hkv, Generator* gen,
                               double init_std)
    : hidden_size(C), memory_size(Cm), num_heads(H), num_kv_heads(Hkv) {
  check_heads("CrossAttention", C, H, Hkv);
  MNEMO_CHECK(Cm > 0, "CrossAttention: memory size must be positive, got {}", Cm);
  head_dim = C / H;
  const int64_t D = head_dim;
  q_proj = register_module("q_proj", std::make_shared<Linear>(C, H * D, false, gen, init_std));
  k_proj = register_module("k_proj", std::make_shared<Linear>(Cm, Hkv * D, false, gen, init_std));
  v_proj = register_module("v_proj", std::make_shared<Linear>(Cm, Hkv * D, false, gen, init_std));
  o_proj = register_module("o_proj", std::make_shared<Linear>(H * D, C, false, gen, init_std));
}

Tensor CrossAttention::forward(const Tensor& x, const Tensor& memory,
                               const Tensor& attn_bias) const {
  MNEMO_CHECK(x.dim() == 3 && x.size(2) == hidden_size,
              "CrossAttention: input must be (B, T, {}), got {}", hidden_size,
              shape_str(x.shape()));
  MNEMO_CHECK(memory.dim() == 3 && memory.size(0) == x.size(0) && memory.size(2) == memory_size,
              "CrossAttention: memory must be (B={}, M, {}), got {}", x.size(0), memory_size,
              shape_str(memory.shape()));
  const int64_t B = x.size(0), T = x.size(1), M = memory.size(1), C = hidden_size;
  const int64_t H = num_heads, Hkv = num_kv_heads, D = head_dim;
  const Tensor q = to_heads(q_proj->forward(reshape(x, {B * T, C})), B, T, H, D);
  const std::vector<Tensor> parts =  // 2 x (B*M, Hkv D)
      fused_linear(reshape(memory, {B * M, memory_size}), {k_proj->weight, v_proj->weight});
  AttentionOptions options;
  options.mask = attn_bias;
  const Tensor o = attention(q, to_heads(parts[0], B, M, Hkv, D), to_heads(parts[1], B, M, Hkv, D),
                             options);  // (B, H, T, D)
  return view(o_proj->forward(from_heads(o)), {B, T, C});
}

}  // namespace mnemo::nn

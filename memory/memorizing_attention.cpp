// KnnAttention and MemorizingBlock (memorizing_attention.h).
#include "memory/memorizing_attention.h"

#include <cmath>
#include <limits>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "nn/fused_linear.h"

namespace mnemo::memory {

MemoryGate parse_memory_gate(const std::string& name, const std::string& key) {
  if (name == "sigmoid") return MemoryGate::sigmoid;
  if (name == "joint") return MemoryGate::joint;
  fail("memorizing: {} must be \"sigmoid\" or \"joint\", got \"{}\"", key, name);
}

LocalPosition parse_local_position(const std::string& name, const std::string& key) {
  if (name == "rope") return LocalPosition::rope;
  if (name == "alibi") return LocalPosition::alibi;
  fail("memorizing: {} must be \"rope\" or \"alibi\", got \"{}\"", key, name);
}

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// (B, H, T, D) -> (B*T, H*D)
Tensor from_heads(const Tensor& o) {
  const int64_t B = o.size(0), H = o.size(1), T = o.size(2), D = o.size(3);
  return reshape(permute(o, {0, 2, 1, 3}), {B * T, H * D});
}

// kv (B, Hkv, S, D) -> (B, Hkv * G, S, D): kv head j serves query heads j*G .. j*G+G-1.
Tensor repeat_kv(const Tensor& kv, int64_t G) {
  if (G == 1) return kv;
  const int64_t B = kv.size(0), Hkv = kv.size(1), S = kv.size(2), D = kv.size(3);
  return reshape(expand(unsqueeze(kv, 2), {B, Hkv, G, S, D}), {B, Hkv * G, S, D});
}

// What the memory read sees: per query R candidates with logits (B, H, T, R) (they carry the
// gradient into q), a validity mask (B, H, T, R), and values in one of two layouts:
//   dense:    values (B, Hkv, R, D) shared by the G*T queries of a kv head (R = n searched
//             slots, valid = the query's top-k among them);
//   gathered: values (B, H, T, R, D), one set per query (R = K retrieved entries).
struct Candidates {
  Tensor logits, valid, values;
  int64_t groups = 0;  // G (query heads per kv head) when dense; 0 when gathered
};

// p (B, H, T, R) -> sum_r p_r v_r (B, H, T, D)
Tensor weigh_values(const Candidates& c, const Tensor& p) {
  if (c.groups == 0) {
    // (B, H, T, 1, K) @ (B, H, T, K, D): one small GEMM per query.
    return squeeze(matmul(unsqueeze(p, 3), c.values), 3);
  }
  const int64_t B = p.size(0), H = p.size(1), T = p.size(2), R = p.size(3);
  const int64_t Hkv = H / c.groups, D = c.values.size(3);
  // (B, Hkv, G*T, R) @ (B, Hkv, R, D): query head h = kv * G + g reads kv head kv.
  return reshape(matmul(reshape(p, {B, Hkv, c.groups * T, R}), c.values), {B, H, T, D});
}

// Dense candidates: q (B, H, T, D) against every searched slot of the memory.
Candidates dense_candidates(const Tensor& q, const KnnMemoryState& mem, const KnnLookup& found,
                            int64_t G, double scale) {
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3);
  const int64_t n = mem.keys.size(2) - found.first, Hkv = H / G;
  const Tensor keys = mnemo::to(narrow(mem.keys, 2, found.first, n), q.dtype());  // (B, Hkv, n, D)
  Candidates c;
  // (B, Hkv, G*T, D) @ (B, Hkv, D, n) -> (B, H, T, n)
  c.logits = mul(
      reshape(matmul(reshape(q, {B, Hkv, G * T, D}), transpose(keys, 2, 3)), {B, H, T, n}), scale);
  c.valid = found.selected;
  c.values = mnemo::to(narrow(mem.values, 2, found.first, n), q.dtype());
  c.groups = G;
  return c;
}

// Gathered candidates: q (B, H, T, D) against its own K retrieved keys.
Candidates gathered_candidates(const Tensor& q, const KnnLookup& found, double scale) {
  const Tensor keys = mnemo::to(found.keys, q.dtype());  // (B, H, T, K, D)
  Candidates c;
  // (B, H, T, 1, D) @ (B, H, T, D, K) -> (B, H, T, K)
  c.logits = mul(squeeze(matmul(unsqueeze(q, 3), transpose(keys, 3, 4)), 3), scale);
  c.valid = found.valid;
  c.values = mnemo::to(found.values, q.dtype());
  return c;
}

// The logits of each query's K retrieved slots (B, H, T, K), detached (diagnostics); 0 where
// not valid (the gathered keys are zeros there).
Tensor retrieved_logits(const Candidates& c, const KnnLookup& found) {
  if (c.groups == 0) return detach(c.logits);
  const Tensor slot =
      where(found.valid, add(found.indices, -double(found.first)), zeros_like(found.indices));
  const Tensor picked = gather(detach(c.logits), 3, slot);
  return where(found.valid, picked, zeros_like(picked));
}

// Additive masks for the candidates' logits (B, H, T, R), constants: `only_valid` is 0 on valid
// candidates and -inf elsewhere; `read` is the same except that a query with no valid
// candidate gets 0 everywhere (its softmax stays finite) and `any` (B, H, T, 1) = 0 zeroes
// its read instead.
struct CandidateMask {
  Tensor only_valid, read, any;
};
CandidateMask candidate_mask(const Candidates& c) {
  NoGradGuard no_grad;
  const TensorOptions options = options_of(c.logits);
  const Tensor valid = mnemo::to(c.valid, options.dtype);  // (B, H, T, R) 0 / 1
  const Tensor any = gt(sum(valid, {-1}, true), 0.0);      // (B, H, T, 1)
  const Tensor zero = scalar_tensor(0.0, options), minus_inf = scalar_tensor(-kInf, options);
  CandidateMask m;
  m.only_valid = where(c.valid, zero, minus_inf);
  m.read = where(logical_or(c.valid, logical_not(any)), zero, minus_inf);
  m.any = mnemo::to(any, options.dtype);
  return m;
}

// Softmax over the valid candidates, then the weighted sum of their values (B, H, T, D); a
// query with no valid candidate reads 0. The mask is added (softmax's own -inf handling
// gives masked entries exactly 0), so the backward is softmax's, with no select ops.
Tensor read_retrieved(const Candidates& c, const CandidateMask& mask) {
  const Tensor p = mul(softmax(add(c.logits, mask.read), -1), mask.any);  // (B, H, T, R)
  return weigh_values(c, p);
}

// (T, Tk) additive: -inf where key j is in query i's future (j > i + Tk - T), else 0.
Tensor causal_bias(int64_t T, int64_t Tk, TensorOptions options) {
  const Device device = options.device;
  const Tensor i = view(arange(T, {DType::i64, device}), {T, 1});
  const Tensor j = view(arange(Tk, {DType::i64, device}), {1, Tk});
  return where(gt(sub(j, i), double(Tk - T)), scalar_tensor(-kInf, options),
               scalar_tensor(0.0, options));
}

// (T, Tk) distances i - j from query i back to key j, the last T keys at positions 0 .. T-1
// and the first Tk - T at -(Tk - T) .. -1; clamped at 0 in the future (masked anyway).
Tensor key_distance(int64_t T, int64_t Tk, TensorOptions options) {
  std::vector<double> d(size_t(T * Tk));
  for (int64_t i = 0; i < T; ++i) {
    for (int64_t j = 0; j < Tk; ++j)
      d[size_t(i * Tk + j)] = double(std::max<int64_t>(0, i - j + Tk - T));
  }
  return mnemo::to(mnemo::to(from_vector(d, {T, Tk}, {DType::f64}), options.dtype), options.device);
}

// ALiBi's head slopes 2^(-8 (h + 1) / H).
Tensor alibi_init(int64_t H) {
  std::vector<double> m(static_cast<size_t>(H));
  for (int64_t h = 0; h < H; ++h) m[size_t(h)] = std::pow(2.0, -8.0 * double(h + 1) / double(H));
  return mnemo::to(from_vector(m, {H}, {DType::f64}), DType::f32);
}

}  // namespace

KnnAttention::KnnAttention(int64_t C, int64_t H, int64_t Hkv, KnnMemory mem, int64_t K,
                           MemoryGate g, Generator* gen, double init_std, double gate_init,
                           LocalPosition pos)
    : hidden_size(C),
      num_heads(H),
      num_kv_heads(Hkv),
      top_k(K),
      memory(std::move(mem)),
      gate(g),
      position(pos),
      dense_read(memory.search_kind == KnnSearch::exact) {
  MNEMO_CHECK(C > 0 && H > 0 && Hkv > 0 && C % H == 0 && H % Hkv == 0,
              "KnnAttention: hidden {} / heads {} / kv_heads {} do not divide", C, H, Hkv);
  head_dim = C / H;
  const int64_t D = head_dim;
  MNEMO_CHECK(memory.heads == Hkv && memory.head_dim == D,
              "KnnAttention: the memory has {} heads of {}, the layer {} kv heads of {}",
              memory.heads, memory.head_dim, Hkv, D);
  MNEMO_CHECK(K > 0, "KnnAttention: top_k must be positive, got {}", K);
  q_proj = register_module("q_proj", std::make_shared<nn::Linear>(C, H * D, false, gen, init_std));
  k_proj =
      register_module("k_proj", std::make_shared<nn::Linear>(C, Hkv * D, false, gen, init_std));
  v_proj =
      register_module("v_proj", std::make_shared<nn::Linear>(C, Hkv * D, false, gen, init_std));
  o_proj = register_module("o_proj", std::make_shared<nn::Linear>(H * D, C, false, gen, init_std));
  if (gate == MemoryGate::sigmoid) {
    gate_bias = register_parameter("gate_bias", full({H}, gate_init));
  } else {
    memory_log_temperature = register_parameter("memory_log_temperature", zeros({H}));
  }
  if (position == LocalPosition::alibi)
    alibi_slopes = register_parameter("alibi_slopes", alibi_init(H));
}

KnnAttentionOutput KnnAttention::forward(const Tensor& x, const nn::RopeTables& rope,
                                         const KnnMemoryState& mem, const nn::LayerKV* extra,
                                         const Tensor& attn_bias,
                                         const Tensor& memory_visible) const {
  MNEMO_CHECK(x.dim() == 3 && x.size(2) == hidden_size,
              "KnnAttention: input must be (B, T, {}), got {}", hidden_size, shape_str(x.shape()));
  const int64_t B = x.size(0), T = x.size(1), C = hidden_size;
  const int64_t H = num_heads, Hkv = num_kv_heads, D = head_dim, G = H / Hkv;
  const double scale = 1.0 / std::sqrt(double(D));
  const std::vector<Tensor> parts =  // (B*T, H D), (B*T, Hkv D), (B*T, Hkv D)
      nn::fused_linear(reshape(x, {B * T, C}), {q_proj->weight, k_proj->weight, v_proj->weight});
  KnnAttentionOutput out;
  const Tensor q_raw = permute(view(parts[0], {B, T, H, D}), {0, 2, 1, 3});  // (B, H, T, D)
  out.k = permute(view(parts[1], {B, T, Hkv, D}), {0, 2, 1, 3});             // (B, Hkv, T, D)
  out.v = permute(view(parts[2], {B, T, Hkv, D}), {0, 2, 1, 3});
  Tensor q = q_raw;
  out.k_rope = out.k;
  if (rope.cos.defined() && position == LocalPosition::rope) {
    q = permute(nn::apply_rotary_bthd(view(parts[0], {B, T, H, D}), rope), {0, 2, 1, 3});
    out.k_rope = permute(nn::apply_rotary_bthd(view(parts[1], {B, T, Hkv, D}), rope), {0, 2, 1, 3});
  }
  Tensor k_all = out.k_rope, v_all = out.v;  // (B, Hkv, S + T, D)
  if (extra != nullptr) {
    k_all = concat({extra->k, k_all}, 2);
    v_all = concat({extra->v, v_all}, 2);
  }

  // Retrieval (no gradient), then the memory logits, which carry the gradient into q.
  const KnnLookup found =
      memory.search(mem, q_raw, top_k, dense_read ? KnnResult::mask : KnnResult::entries);
  Candidates retrieved_set = dense_read ? dense_candidates(q_raw, mem, found, G, scale)
                                        : gathered_candidates(q_raw, found, scale);
  if (memory_visible.defined()) {
    MNEMO_CHECK(memory_visible.shape() == (Shape{B, T}) && memory_visible.dtype() == DType::boolean,
                "KnnAttention: memory_visible must be bool (B={}, T={}), got {} {}", B, T,
                memory_visible.dtype(), shape_str(memory_visible.shape()));
    retrieved_set.valid = logical_and(retrieved_set.valid, view(memory_visible, {B, 1, T, 1}));
  }
  out.lookup = found;
  if (keep_memory_logits) out.memory_logits = retrieved_logits(retrieved_set, found);

  const int64_t Tk = k_all.size(2);
  // Local logits (B, H, T, Tk) with the causal mask, the caller's bias and (alibi) the
  // learned distance bias: the explicit path, which also differentiates the bias.
  auto local_logits = [&] {
    const Tensor kh = repeat_kv(k_all, G);
    Tensor s = add(mul(matmul(q, transpose(kh, 2, 3)), scale), causal_bias(T, Tk, options_of(q)));
    if (attn_bias.defined()) s = add(s, attn_bias);
    if (position == LocalPosition::alibi) {
      s = sub(s, mul(view(alibi_slopes, {1, H, 1, 1}),
                     view(key_distance(T, Tk, options_of(q)), {1, 1, T, Tk})));
    }
    return s;
  };

  Tensor o;  // (B, H, T, D)
  if (gate == MemoryGate::sigmoid && position == LocalPosition::alibi) {
    const Tensor local = matmul(softmax(local_logits(), -1), repeat_kv(v_all, G));
    const Tensor retrieved = read_retrieved(retrieved_set, candidate_mask(retrieved_set));
    const Tensor g = view(sigmoid(gate_bias), {1, H, 1, 1});
    o = add(mul(g, retrieved), mul(1.0 - g, local));
  } else if (gate == MemoryGate::sigmoid) {
    AttentionOptions options;
    options.causal = true;
    options.mask = attn_bias;
    const Tensor local = attention(q, k_all, v_all, options);
    const Tensor retrieved = read_retrieved(retrieved_set, candidate_mask(retrieved_set));
    const Tensor g = view(sigmoid(gate_bias), {1, H, 1, 1});
    o = add(mul(g, retrieved), mul(1.0 - g, local));
  } else {
    const Tensor vh = repeat_kv(v_all, G);  // (B, H, Tk, D)
    const Tensor s_local = local_logits();  // (B, H, T, Tk)
    const Tensor temperature = view(exp(memory_log_temperature), {1, H, 1, 1});
    const Tensor s_m =  // every query has local keys, so no row is all -inf
        add(mul(retrieved_set.logits, temperature), candidate_mask(retrieved_set).only_valid);
    const int64_t R = s_m.size(3);
    const Tensor p = softmax(concat({s_m, s_local}, -1), -1);  // (B, H, T, R + Tk)
    o = add(weigh_values(retrieved_set, narrow(p, -1, 0, R)), matmul(narrow(p, -1, R, Tk), vh));
  }
  out.y = view(o_proj->forward(from_heads(o)), {B, T, C});
  return out;
}

MemorizingBlock::MemorizingBlock(int64_t C, int64_t H, int64_t Hkv, int64_t I, double eps,
                                 KnnMemory memory, int64_t top_k, MemoryGate gate, Generator* gen,
                                 double init_std, double gate_init, LocalPosition position) {
  // Registration order = nn::TransformerBlock's (HF's state_dict order).
  self_attn = register_module(
      "self_attn", std::make_shared<KnnAttention>(C, H, Hkv, std::move(memory), top_k, gate, gen,
                                                  init_std, gate_init, position));
  mlp = register_module("mlp", std::make_shared<nn::SwiGLU>(C, I, gen, init_std));
  input_layernorm = register_module("input_layernorm", std::make_shared<nn::RMSNorm>(C, eps));
  post_attention_layernorm =
      register_module("post_attention_layernorm", std::make_shared<nn::RMSNorm>(C, eps));
}

KnnAttentionOutput MemorizingBlock::forward(const Tensor& x, const nn::RopeTables& rope,
                                            const KnnMemoryState& memory, const nn::LayerKV* extra,
                                            const Tensor& attn_bias,
                                            const Tensor& memory_visible) const {
  KnnAttentionOutput a = self_attn->forward(input_layernorm->forward(x), rope, memory, extra,
                                            attn_bias, memory_visible);
  const Tensor h = x + a.y;
  a.y = h + mlp->forward(post_attention_layernorm->forward(h));
  return a;
}

}  // namespace mnemo::memory

// ExplicitMemory and ExplicitMemoryBlock (explicit_memory.h).
#include "memory/explicit_memory.h"

#include <algorithm>
#include <cmath>

#include "autograd/ops.h"
#include "core/error.h"
#include "memory/explicit.h"

namespace mnemo::memory {

namespace {

constexpr double kNormEps = 1e-12;

// x / |x| over the last dim (a zero row stays zero).
Tensor unit(const Tensor& x) {
  return x * rsqrt(add(sum(x * x, {-1}, /*keepdim=*/true), kNormEps));
}

}  // namespace

Tensor gumbel_noise(int64_t M, int64_t K, TensorOptions options, Generator* gen) {
  const Tensor u = uniform({M, K}, 1e-20, 1.0, options, gen);
  return neg(log(neg(log(u))));
}

Tensor gumbel_select(const Tensor& logits, const Tensor& gumbel, double temperature, bool hard,
                     Tensor* pick) {
  MNEMO_CHECK(logits.dim() == 2 && temperature > 0,
              "gumbel_select: logits must be (M, K) and the temperature positive");
  const Tensor perturbed = gumbel.defined() ? logits + gumbel : logits;
  const Tensor soft = softmax(perturbed * (1.0 / temperature), 1);
  const Tensor index = argmax(detach(perturbed), 1);
  if (pick) *pick = index;
  if (!hard) return soft;
  // one_hot + (soft - soft): the forward value is the one-hot exactly (x - x = 0), the
  // gradient is soft's.
  return one_hot(index, logits.size(1), logits.dtype()) + (soft - detach(soft));
}

ExplicitMemory::ExplicitMemory(int64_t C, const ExplicitConfig& cfg, int64_t F, Generator* gen,
                               double init_std)
    : content_keys(cfg.keys == "content"),
      candidates(cfg.candidates),
      key_dim(cfg.key_dim),
      temperature(cfg.gumbel_temperature) {
  const int64_t n = int64_t(std::llround(std::sqrt(double(cfg.bank_entries))));
  q_proj =
      register_module("q_proj", std::make_shared<nn::Linear>(C, key_dim, false, gen, init_std));
  if (content_keys) {
    // Random per-position scales, so that "a b" and "b a" get different keys from the start.
    position_scale =
        register_parameter("position_scale", normal({cfg.entry_length, C}, 0, 0.5, {}, gen));
    key_proj =
        register_module("key_proj", std::make_shared<nn::Linear>(C, key_dim, false, gen, init_std));
  } else {
    // Unit-variance scores for a unit query: q . k ~ |q|.
    const double std = 1.0 / std::sqrt(double(key_dim / 2));
    row_keys = register_parameter("row_keys", normal({n, key_dim / 2}, 0, std, {}, gen));
    col_keys = register_parameter("col_keys", normal({n, key_dim / 2}, 0, std, {}, gen));
  }
  gate_proj =
      register_module("gate_proj", std::make_shared<nn::Linear>(2 * C, F, false, gen, init_std));
  up_proj =
      register_module("up_proj", std::make_shared<nn::Linear>(2 * C, F, false, gen, init_std));
  down_proj =
      register_module("down_proj", std::make_shared<nn::Linear>(F, C, false, gen, init_std));
  alpha_in = register_module("alpha_in", std::make_shared<nn::Linear>(1, 16, true, gen, init_std));
  alpha_out =
      register_module("alpha_out", std::make_shared<nn::Linear>(16, 1, true, gen, init_std));
  alpha_bias = register_parameter("alpha_bias", full({1}, cfg.alpha_bias));
}

Tensor ExplicitMemory::represent(const BankView& bank, const Tensor& entries) {
  const Tensor ids = index_select(bank.ids, 0, entries);           // (P, L)
  const Tensor w = index_select(bank.weights, 0, entries);         // (P, L)
  const Tensor emb = embedding(bank.embedding, ids);               // (P, L, C)
  return sum(emb * mnemo::to(unsqueeze(w, 2), emb.dtype()), {1});  // (P, C)
}

void ExplicitMemory::route(const Tensor& q, const BankView& bank, Tensor& scores, Tensor& entries,
                           ExplicitTrace* trace) const {
  const int64_t M = q.size(0), K = candidates;
  if (content_keys) {
    // Every entry's key from its own tokens: pool(e) = sum_l w_el E[tok_el] * (1 + P_l).
    // The keys read the embeddings without training them: the router's loss pushes every
    // entry's key away from the query, and through the shared table that erased what the
    // fusion reads from an entry (its object) — held-out facts stayed at chance with the
    // right entry selected 90% of the time (docs/memory-results.md).
    const Tensor emb = embedding(detach(bank.embedding), bank.ids);       // (N, L, C)
    const Tensor w = unsqueeze(mnemo::to(bank.weights, emb.dtype()), 2);  // (N, L, 1)
    const Tensor pool = sum(emb * (position_scale + 1.0) * w, {1});       // (N, C)
    const Tensor keys = key_proj->forward(pool);                          // (N, dk)
    const Tensor all =
        matmul(q, transpose(keys, 0, 1)) + mnemo::to(bank.free_bias, q.dtype());  // (M, N)
    TopKResult top = topk(all, K, 1);
    scores = top.values;
    entries = top.indices;
    if (trace) trace->entry_scores = all;
    return;
  }
  // Product keys: the top-K of each half, then the top-K of the K x K sums.
  const int64_t half = key_dim / 2, n = bank.side, Kh = std::min(K, n);
  const Tensor rows = matmul(narrow(q, 1, 0, half), transpose(row_keys, 0, 1));     // (M, n)
  const Tensor cols = matmul(narrow(q, 1, half, half), transpose(col_keys, 0, 1));  // (M, n)
  TopKResult r = topk(rows, Kh, 1), c = topk(cols, Kh, 1);
  Tensor sums =
      reshape(unsqueeze(r.values, 2) + unsqueeze(c.values, 1), {M, Kh * Kh});  // (M, Kh^2)
  const Tensor ids = reshape(add(mul(unsqueeze(r.indices, 2), double(n)), unsqueeze(c.indices, 1)),
                             {M, Kh * Kh});  // entry i * n + j of each sum
  // Free entries lose to any written one among the K^2 (they stay possible only when every
  // combination is free).
  if (bank.free_bias.defined()) {
    const Tensor bias = index_select(bank.free_bias, 0, reshape(ids, {M * Kh * Kh}));
    sums = sums + mnemo::to(reshape(bias, {M, Kh * Kh}), sums.dtype());
  }
  TopKResult top = topk(sums, K, 1);
  scores = top.values;
  entries = gather(ids, 1, top.indices);
  if (trace) {
    trace->row_scores = rows;
    trace->col_scores = cols;
  }
}

Tensor ExplicitMemory::forward(const Tensor& z, const BankView& bank, Generator* noise,
                               ExplicitTrace* trace) const {
  const int64_t M = z.size(0), C = z.size(1), K = candidates;
  Tensor scores, entries;
  route(q_proj->forward(z), bank, scores, entries, trace);                         // (M, K)
  const Tensor rep = view(represent(bank, reshape(entries, {M * K})), {M, K, C});  // (M, K, C)
  const Tensor rep_unit = unit(rep);
  const Tensor cos = sum(unsqueeze(unit(z), 1) * rep_unit, {2});  // (M, K)
  const Tensor logits = scores + cos;

  // Hard Gumbel-softmax, straight through, in training; a plain argmax in evaluation (no
  // gradient reaches the router there, as none would from the discrete choice).
  Tensor pick, y;  // (M), (M, K)
  if (noise != nullptr) {
    const Tensor g = gumbel_noise(M, K, TensorOptions{z.dtype(), z.device()}, noise);
    y = gumbel_select(logits, g, temperature, /*hard=*/true, &pick);
  } else {
    pick = argmax(detach(logits), 1);
    y = one_hot(pick, K, z.dtype());
  }
  const Tensor m = sum(unsqueeze(y, 2) * rep, {1});  // (M, C) the selected entry
  const Tensor zm = concat({z, m}, 1);               // (M, 2C)
  const Tensor out = down_proj->forward(silu(gate_proj->forward(zm)) * up_proj->forward(zm));
  const Tensor mean_cos = mean(cos, {1}, /*keepdim=*/true);  // (M, 1)
  const Tensor alpha =
      clamp(sigmoid(alpha_out->forward(silu(alpha_in->forward(mean_cos)))) + alpha_bias, 0, 1);

  if (trace) {
    trace->candidates = entries;
    trace->selected = reshape(gather(entries, 1, unsqueeze(pick, 1)), {M});
    trace->alpha = alpha;
    trace->similarity = sum(y * cos, {1});
    if (K > 1) {
      const Tensor gram = matmul(rep_unit, transpose(rep_unit, 1, 2));  // (M, K, K)
      const Tensor self = sum(rep_unit * rep_unit, {2});                // (M, K) 1 (0 if empty)
      trace->diversity =
          (sum(gram * gram, {1, 2}) - sum(self * self, {1})) * (1.0 / double(K * (K - 1)));
    }
  }
  return alpha * out;
}

ExplicitMemoryBlock::ExplicitMemoryBlock(int64_t C, int64_t H, int64_t Hkv, int64_t I, double eps,
                                         const ExplicitConfig& cfg, Generator* gen,
                                         double init_std) {
  // HF Llama's layer names first (so a Llama checkpoint's layer loads by name), then memory.
  self_attn = register_module("self_attn",
                              std::make_shared<nn::CausalSelfAttention>(C, H, Hkv, gen, init_std));
  if (cfg.keep_mlp) mlp = register_module("mlp", std::make_shared<nn::SwiGLU>(C, I, gen, init_std));
  input_layernorm = register_module("input_layernorm", std::make_shared<nn::RMSNorm>(C, eps));
  post_attention_layernorm =
      register_module("post_attention_layernorm", std::make_shared<nn::RMSNorm>(C, eps));
  const int64_t F = cfg.fusion_hidden > 0 ? cfg.fusion_hidden : I;
  memory = register_module("memory", std::make_shared<ExplicitMemory>(C, cfg, F, gen, init_std));
}

Tensor ExplicitMemoryBlock::forward(const Tensor& x, const nn::RopeTables& rope,
                                    const BankView& bank, Generator* noise,
                                    ExplicitTrace* trace) const {
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2);
  const Tensor h = x + self_attn->forward(input_layernorm->forward(x), rope);
  const Tensor z = post_attention_layernorm->forward(h);  // (B, T, C)
  Tensor y = h + view(memory->forward(reshape(z, {B * T, C}), bank, noise, trace), {B, T, C});
  if (mlp) y = y + mlp->forward(z);
  return y;
}

}  // namespace mnemo::memory

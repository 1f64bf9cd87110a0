// GRPO's and PPO's losses (the math is in losses.h).
#include "train/rl/losses.h"

#include "core/error.h"

namespace mnemo::rl {

namespace {

void check_same_shape(const char* op, const Tensor& a, const Tensor& b, const char* name) {
  MNEMO_CHECK(b.defined() && b.shape() == a.shape(), "{}: {} must have the shape {}, got {}", op,
              name, shape_str(a.shape()), b.defined() ? shape_str(b.shape()) : "undefined");
}

std::vector<double> host(const Tensor& t) {
  return to(detach(t), Device::cpu()).to_vector<double>();
}

}  // namespace

LossType parse_loss_type(std::string_view name) {
  if (name == "grpo") return LossType::grpo;
  if (name == "bnpo") return LossType::bnpo;
  if (name == "dr_grpo") return LossType::dr_grpo;
  if (name == "dapo") return LossType::dapo;
  fail("rl: loss_type must be grpo, bnpo, dr_grpo or dapo, got '{}'", name);
}

std::vector<float> token_weights(const Normaliser& n, std::span<const float> mask, int64_t R,
                                 int64_t A) {
  MNEMO_CHECK(int64_t(mask.size()) == R * A, "token_weights: mask has {} entries, not {} x {}",
              mask.size(), R, A);
  MNEMO_CHECK(n.sequences > 0 && n.micro_tokens > 0 && n.update_tokens > 0 &&
                  n.max_new_tokens > 0 && n.grad_accum > 0,
              "token_weights: the counts must be positive");
  std::vector<float> w(mask.size(), 0.0f);
  const double accum = double(n.grad_accum);
  for (int64_t i = 0; i < R; ++i) {
    double length = 0;
    for (int64_t t = 0; t < A; ++t) length += mask[size_t(i * A + t)];
    double scale = 0;
    switch (n.type) {
      case LossType::grpo:
        scale = length > 0 ? 1.0 / (length * double(n.sequences) * accum) : 0;
        break;
      case LossType::bnpo: scale = 1.0 / (double(n.micro_tokens) * accum); break;
      case LossType::dr_grpo:
        scale = 1.0 / (double(n.sequences) * double(n.max_new_tokens) * accum);
        break;
      case LossType::dapo: scale = 1.0 / double(n.update_tokens); break;
    }
    for (int64_t t = 0; t < A; ++t) {
      const size_t at = size_t(i * A + t);
      w[at] = float(double(mask[at]) * scale);
    }
  }
  return w;
}

void PolicyLossStats::add(const PolicyLossStats& o) {
  tokens += o.tokens;
  clipped_low += o.clipped_low;
  clipped_high += o.clipped_high;
  ratio += o.ratio;
  kl += o.kl;
}

void ValueLossStats::add(const ValueLossStats& o) {
  tokens += o.tokens;
  loss += o.loss;
  clipped += o.clipped;
}

// d = ref - logp:  k3 = e^d - d - 1.
Tensor k3_kl(const Tensor& logprobs, const Tensor& ref_logprobs) {
  check_same_shape("k3_kl", logprobs, ref_logprobs, "ref_logprobs");
  const Tensor d = ref_logprobs - logprobs;
  return exp(d) - d - 1.0;
}

// l = -min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A) + beta k3;  loss = sum w l.
Tensor clipped_policy_loss(const Tensor& logprobs, const Tensor& old_logprobs,
                           const Tensor& advantages, const Tensor& weights,
                           const Tensor& ref_logprobs, const ClipOptions& o,
                           PolicyLossStats* stats) {
  const char* op = "clipped_policy_loss";
  MNEMO_CHECK(logprobs.defined() && logprobs.dim() == 2, "{}: logprobs must be (R, A), got {}", op,
              logprobs.defined() ? shape_str(logprobs.shape()) : "undefined");
  check_same_shape(op, logprobs, old_logprobs, "old_logprobs");
  check_same_shape(op, logprobs, advantages, "advantages");
  check_same_shape(op, logprobs, weights, "weights");
  MNEMO_CHECK(o.epsilon_low >= 0 && o.epsilon_low < 1 && o.epsilon_high >= 0 && o.beta >= 0,
              "{}: need 0 <= epsilon_low < 1, epsilon_high >= 0, beta >= 0 (got {}, {}, {})", op,
              o.epsilon_low, o.epsilon_high, o.beta);
  const Tensor ratio = exp(logprobs - detach(old_logprobs));
  const Tensor unclipped = ratio * advantages;
  const Tensor clipped = clamp(ratio, 1 - o.epsilon_low, 1 + o.epsilon_high) * advantages;
  Tensor per_token = -minimum(unclipped, clipped);
  Tensor kl;
  if (ref_logprobs.defined()) kl = k3_kl(logprobs, detach(ref_logprobs));
  if (o.beta > 0) {
    MNEMO_CHECK(kl.defined(), "{}: beta {} needs ref_logprobs", op, o.beta);
    per_token = per_token + kl * o.beta;
  }
  const Tensor loss = sum(per_token * weights);
  if (stats != nullptr) {
    const std::vector<double> r = host(ratio), a = host(advantages), w = host(weights);
    const std::vector<double> k = kl.defined() ? host(kl) : std::vector<double>(r.size(), 0.0);
    PolicyLossStats s;
    for (size_t i = 0; i < r.size(); ++i) {
      if (w[i] <= 0) continue;
      s.tokens += 1;
      s.ratio += r[i];
      s.kl += k[i];
      if (r[i] < 1 - o.epsilon_low && a[i] < 0) s.clipped_low += 1;
      if (r[i] > 1 + o.epsilon_high && a[i] > 0) s.clipped_high += 1;
    }
    stats->add(s);
  }
  return loss;
}

// v_clip = old + clip(v - old, -c, c);  lv = 1/2 max((v - R)^2, (v_clip - R)^2);  sum w lv.
Tensor clipped_value_loss(const Tensor& values, const Tensor& old_values, const Tensor& returns,
                          const Tensor& weights, double c, ValueLossStats* stats) {
  const char* op = "clipped_value_loss";
  MNEMO_CHECK(values.defined() && values.dim() == 2, "{}: values must be (R, A), got {}", op,
              values.defined() ? shape_str(values.shape()) : "undefined");
  check_same_shape(op, values, old_values, "old_values");
  check_same_shape(op, values, returns, "returns");
  check_same_shape(op, values, weights, "weights");
  MNEMO_CHECK(c > 0, "{}: cliprange_value must be positive, got {}", op, c);
  const Tensor old = detach(old_values);
  const Tensor v_clip = old + clamp(values - old, -c, c);
  const Tensor plain = pow(values - returns, 2.0);
  const Tensor cut = pow(v_clip - returns, 2.0);
  const Tensor per_token = maximum(plain, cut) * 0.5;
  const Tensor loss = sum(per_token * weights);
  if (stats != nullptr) {
    const std::vector<double> l = host(per_token), p = host(plain), q = host(cut),
                              w = host(weights);
    ValueLossStats s;
    for (size_t i = 0; i < l.size(); ++i) {
      if (w[i] <= 0) continue;
      s.tokens += 1;
      s.loss += l[i];
      if (q[i] > p[i]) s.clipped += 1;
    }
    stats->add(s);
  }
  return loss;
}

}  // namespace mnemo::rl

// The policy-gradient losses of GRPO and PPO, on per-action log-probs with masks.
//
// Nothing here knows what an action is: a token of an answer here, an insert/skip decision
// of a memory elsewhere. Every tensor is (R, A) — R sequences of A action slots — and a slot
// counts only through its weight (0 = not an action, or a sequence left out).
//
// The clipped surrogate (PPO's policy loss, and GRPO's with per-sequence advantages):
//     rho_t = exp(logp_t - old_t)                    the importance ratio to the policy that
//                                                    sampled (old_t: its log-prob, no grad)
//     l_t   = -min(rho_t A_t, clip(rho_t, 1 - eps_low, 1 + eps_high) A_t)
//             + beta k3_t                            (GRPO's KL term; PPO has beta = 0)
//     loss  = sum_t w_t l_t
// With A > 0 the ratio is cut above 1 + eps_high ("clip-higher", DAPO: eps_high > eps_low
// lets rare good tokens grow); with A < 0 below 1 - eps_low. A clipped token has no
// gradient. On the first pass over fresh rollouts old = logp, so rho = 1 exactly and the
// clipped and unclipped losses are the same.
//
// The k3 estimator of KL(pi || pi_ref) (Schulman 2020, "Approximating KL divergence"), per
// token, with d = ref_t - logp_t:
//     k3_t = e^d - d - 1  >= 0, = 0 iff logp = ref;   dk3/dlogp = 1 - e^d
// Unbiased for the KL when the token was sampled from pi, always non-negative.
//
// The normalisation is a per-token weight w, which is where the loss types differ (TRL's
// names). For this rank's rows of one micro-batch of an update of `grad_accum` micro-batches,
// with |o_i| the actions of sequence i and every count over all ranks:
//     grpo     w = 1 / (|o_i| * sequences * grad_accum)   mean per sequence, then over them
//                                                        (short answers weigh more per token)
//     bnpo     w = 1 / (tokens of the micro-batch * grad_accum)
//     dr_grpo  w = 1 / (sequences * max_new_tokens * grad_accum)   (no length bias)
//     dapo     w = 1 / (tokens of the whole update)       (micro-batches of different
//                                                        lengths weigh by their tokens)
// bnpo and dapo agree with one micro-batch per update; with several, bnpo averages the
// micro-batches' token means and dapo takes one token mean over all of them. Counts over all
// ranks make N ranks give one process's gradient (train/lib/trainer.h's convention).
//
// PPO's value loss, clipped around the values at rollout time (old_v) by c = cliprange_value:
//     v_clip_t = old_v_t + clip(v_t - old_v_t, -c, c)
//     lv_t     = 1/2 max((v_t - R_t)^2, (v_clip_t - R_t)^2),     loss_v = sum_t w_t lv_t
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "autograd/ops.h"

namespace mnemo::rl {

enum class LossType { grpo, bnpo, dr_grpo, dapo };
LossType parse_loss_type(std::string_view name);  // grpo | bnpo | dr_grpo | dapo

// The counts the weights divide by (all ranks together).
struct Normaliser {
  LossType type = LossType::dapo;
  int64_t sequences = 1;       // sequences in the micro-batch
  int64_t micro_tokens = 1;    // actions in the micro-batch
  int64_t update_tokens = 1;   // actions in the update's grad_accum micro-batches
  int64_t max_new_tokens = 1;  // dr_grpo's fixed length
  int64_t grad_accum = 1;
};

// mask (R, A) of this rank's rows (1 = an action) -> the weights w (R, A).
std::vector<float> token_weights(const Normaliser& n, std::span<const float> mask, int64_t rows,
                                 int64_t actions);

struct ClipOptions {
  double epsilon_low = 0.2;
  double epsilon_high = 0.2;
  double beta = 0;  // weight of the k3 KL term (0: ref_logprobs may be undefined)
};

// Sums over the weighted slots (w > 0) of the passes they were measured on.
struct PolicyLossStats {
  double tokens = 0;        // slots
  double clipped_low = 0;   // rho < 1 - eps_low with A < 0
  double clipped_high = 0;  // rho > 1 + eps_high with A > 0
  double ratio = 0;         // sum of rho
  double kl = 0;            // sum of k3 (when ref_logprobs is given)
  void add(const PolicyLossStats& other);
};

// k3_t per slot (differentiable in logprobs): (R, A).
Tensor k3_kl(const Tensor& logprobs, const Tensor& ref_logprobs);

// logprobs (R, A) differentiable; old_logprobs, advantages, weights (R, A) constants;
// ref_logprobs (R, A) constant or undefined when beta == 0. -> the scalar sum_t w_t l_t.
// Adds this pass's figures to stats when given.
Tensor clipped_policy_loss(const Tensor& logprobs, const Tensor& old_logprobs,
                           const Tensor& advantages, const Tensor& weights,
                           const Tensor& ref_logprobs, const ClipOptions& options,
                           PolicyLossStats* stats = nullptr);

struct ValueLossStats {
  double tokens = 0;
  double loss = 0;     // sum of lv_t
  double clipped = 0;  // slots where the clipped term was the larger
  void add(const ValueLossStats& other);
};

// values (R, A) differentiable; old_values, returns, weights (R, A) constants -> the scalar
// sum_t w_t lv_t.
Tensor clipped_value_loss(const Tensor& values, const Tensor& old_values, const Tensor& returns,
                          const Tensor& weights, double cliprange_value,
                          ValueLossStats* stats = nullptr);

}  // namespace mnemo::rl

// MemGen's trigger: a small policy that decides, at each delimiter the reasoner writes,
// whether the weaver's latents go in at all (memgen.h inserts them; memgen_generate.h asks
// the trigger; the prompt's end always gets them).
//
//   z = head(h)           h (N, C): the reasoner's last hidden state at the delimiter,
//                         detached
//   P(insert) = sigmoid(z)
//   log pi(d) = d log sigmoid(z) + (1 - d) log sigmoid(-z) = -softplus((1 - 2d) z)
//
// A Linear head over the hidden state the reasoner already computed — where the reference uses
// a second small LM with a two-way head — so that a decision costs nothing next to the
// reasoner's step and the policy's update needs only the features the rollouts kept. It is
// trained with GRPO on whole generations (train/lib/memgen_rl.h); at evaluation it inserts
// iff P(insert) >= 1/2.
#pragma once

#include <cstdint>
#include <memory>

#include "nn/linear.h"

namespace mnemo::memory {

class MemGenTrigger : public nn::Module {
 public:
  // hidden: the reasoner's width C; p_insert: the initial P(insert) (the head's bias is its
  // logit, its weight small).
  MemGenTrigger(int64_t hidden, double p_insert, Generator* gen = nullptr);

  Tensor logits(const Tensor& features) const;  // (N, C) -> (N) z
  // decisions (N) f32 in {0, 1} -> (N) log pi(d), differentiable in the head.
  Tensor log_prob(const Tensor& features, const Tensor& decisions) const;

  std::shared_ptr<nn::Linear> head;  // C -> 1
};

}  // namespace mnemo::memory

// The policy RL trains: a Llama, and for PPO a value head on its final hidden state.
//
//   ids (R, T) -> Llama -> last_hidden (R, T, C) -> lm_head -> logits     the policy pi
//                                               -> value_head -> V (R, T)  PPO's critic
//
// The value head is one Linear(C, 1) with a bias, started at zero (V = 0 everywhere: GAE then
// begins from plain Monte-Carlo returns). It shares the backbone with the policy, so the value
// loss also shapes the policy's features; vf_coef weighs it (losses.h).
//
// The module registers the Llama's own children under their own names ("model", and
// "lm_head" when untied) next to "value_head", so its parameter names are Hugging Face's plus
// value_head.weight and value_head.bias, and a checkpoint's model.safetensors loads into it.
#pragma once

#include <memory>

#include "nn/linear.h"
#include "nn/llama.h"

namespace mnemo::rl {

class PolicyModel : public nn::Module {
 public:
  PolicyModel(std::shared_ptr<nn::LlamaForCausalLM> llama, bool with_value_head);

  nn::LlamaForCausalLM& llama() const { return *llama_; }
  bool has_value_head() const { return value_head != nullptr; }
  // last_hidden (R, T, C) -> V (R, T).
  Tensor values(const Tensor& last_hidden) const;

  std::shared_ptr<nn::Linear> value_head;  // null without one

 private:
  std::shared_ptr<nn::LlamaForCausalLM> llama_;
};

}  // namespace mnemo::rl

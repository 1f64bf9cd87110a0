// PolicyModel: a Llama with an optional value head (see policy.h).
#include "train/rl/policy.h"

#include "autograd/ops.h"
#include "core/error.h"

namespace mnemo::rl {

PolicyModel::PolicyModel(std::shared_ptr<nn::LlamaForCausalLM> llama, bool with_value_head)
    : llama_(std::move(llama)) {
  MNEMO_ASSERT(llama_ != nullptr, "PolicyModel: no Llama");
  register_module("model", llama_->model);
  if (llama_->lm_head) register_module("lm_head", llama_->lm_head);
  if (with_value_head) {
    Generator unused(0);  // init_std 0: the weights are zeros; the process's generator is kept
    value_head = register_module(
        "value_head",
        std::make_shared<nn::Linear>(llama_->config.hidden_size, 1, true, &unused, 0.0));
  }
}

Tensor PolicyModel::values(const Tensor& last_hidden) const {
  MNEMO_CHECK(value_head != nullptr, "PolicyModel: this policy has no value head");
  MNEMO_CHECK(last_hidden.dim() == 3, "PolicyModel::values: last_hidden must be (R, T, C), got {}",
              shape_str(last_hidden.shape()));
  const int64_t R = last_hidden.size(0), T = last_hidden.size(1);
  return reshape(value_head->forward(last_hidden), {R, T});
}

}  // namespace mnemo::rl

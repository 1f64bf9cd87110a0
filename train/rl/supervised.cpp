// Supervised steps on a task's demonstrations (see supervised.h).
#include "train/rl/supervised.h"

#include <algorithm>

#include "autograd/engine.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "optim/clip.h"
#include "optim/param_groups.h"
#include "optim/schedule.h"

namespace mnemo::rl {

SupervisedTrainer::SupervisedTrainer(nn::LlamaForCausalLM& model, const Task& task,
                                     const SupervisedOptions& o)
    : model_(model), task_(task), options_(o), next_index_(o.first_index) {
  MNEMO_CHECK(o.batch >= 1 && o.lr > 0 && o.grad_clip >= 0 && o.warmup_steps >= 0,
              "supervised: need batch >= 1, lr > 0, grad_clip >= 0 and warmup_steps >= 0 (got "
              "{}, {}, {}, {})",
              o.batch, o.lr, o.grad_clip, o.warmup_steps);
  optimizer_ = std::make_unique<optim::AdamW>(optim::decay_groups(model.named_parameters(), 0.0),
                                              o.lr, 0.9, 0.95, 1e-8);
}

double SupervisedTrainer::step() {
  const int64_t B = options_.batch;
  const int32_t eos = task_.eos_id();
  // Each example: prompt ids (eos first), answer ids, eos; where the answer starts.
  std::vector<std::vector<int32_t>> examples;
  std::vector<size_t> answer_start;
  size_t longest = 0;
  for (int64_t b = 0; b < B; ++b) {
    const Prompt p = task_.prompt(Split::train, next_index_++);
    std::vector<int32_t> ids = p.ids;
    answer_start.push_back(ids.size());
    for (int32_t id : task_.tokenizer().encode(p.answer)) ids.push_back(id);
    ids.push_back(eos);
    longest = std::max(longest, ids.size());
    examples.push_back(std::move(ids));
  }
  const int64_t T = int64_t(longest) - 1;
  MNEMO_CHECK(T + 1 <= model_.config.max_position_embeddings,
              "supervised: examples of {} tokens exceed the model's {} positions", T + 1,
              model_.config.max_position_embeddings);
  std::vector<int64_t> inputs(size_t(B * T), eos), targets(size_t(B * T), -100);
  for (int64_t b = 0; b < B; ++b) {
    const std::vector<int32_t>& ids = examples[size_t(b)];
    for (size_t c = 0; c + 1 < ids.size(); ++c) {
      inputs[size_t(b * T) + c] = ids[c];
      // The target at column c is ids[c + 1]: scored from the answer's first token on.
      if (c + 1 >= answer_start[size_t(b)]) targets[size_t(b * T) + c] = ids[c + 1];
    }
  }
  const Device device = model_.parameters().front().device();
  const Tensor loss = model_.loss(to(from_vector(inputs, {B, T}), device),
                                  to(from_vector(targets, {B, T}), device), Reduction::mean);
  backward(loss);
  const double norm = optimizer_->grad_norm();
  optim::LrSchedule schedule;
  schedule.max_lr = schedule.min_lr = options_.lr;
  schedule.warmup_steps = options_.warmup_steps;
  schedule.total_steps = std::max(options_.warmup_steps, steps_ + 1);
  schedule.decay = optim::LrSchedule::constant;
  optimizer_->set_lr(schedule.at(steps_++));
  optimizer_->step(options_.grad_clip > 0 ? optim::clip_factor(norm, options_.grad_clip) : 1.0);
  optimizer_->zero_grad();
  examples_ += B;
  return loss.item();
}

}  // namespace mnemo::rl

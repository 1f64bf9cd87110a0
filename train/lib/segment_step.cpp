// SegmentStep: a SegmentLM trained on streams of segments (see segment_step.h).
#include "train/lib/segment_step.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "autograd/engine.h"
#include "autograd/exact_grad.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "optim/param_groups.h"
#include "train/lib/segment_checkpoint.h"

namespace mnemo::train {

SegmentStep::SegmentStep(const RunConfig& config)
    : TextStep(config), config_(config), lm_(make_run_segment_lm(config, config.train.seed)) {
  MNEMO_CHECK(lm_->segment_length() >= config.train.seq_len,
              "config: the {} model takes segments of at most {} tokens, 'train.seq_len' is {}",
              lm_->mechanism(), lm_->segment_length(), config.train.seq_len);
}

std::vector<optim::ParamGroup> SegmentStep::param_groups() const {
  // Parameters a mechanism froze (ExplicitLM's freeze_backbone) stay out of the optimizer: no
  // moments, no weight decay, and their bits never change.
  optim::NamedTensors trainable;
  for (const auto& [name, param] : lm_->named_parameters()) {
    if (param.requires_grad()) trainable.emplace_back(name, param);
  }
  std::vector<optim::ParamGroup> groups =
      optim::decay_groups(trainable, config_.train.weight_decay);
  optim::split_scalar_controls(groups, config_.memory.scalar_lr_scale);
  return groups;
}

std::string SegmentStep::describe() const {
  const nn::LlamaConfig& c = config_.model;
  return fmt::format(
      "{} SegmentLM, {} layers, hidden {}, {} heads, {} parameters; streams of {} segments x {} "
      "tokens",
      lm_->mechanism(), c.num_hidden_layers, c.hidden_size, c.num_attention_heads,
      lm_->num_parameters(), config_.memory.segments, config_.train.seq_len);
}

std::string SegmentStep::title() const {
  return "mnemo train (" + lm_->mechanism() + ")";
}

void SegmentStep::write_model(const std::filesystem::path& dir) const {
  write_segment_files(dir, *lm_, config_, *tokenizer_);
}

void SegmentStep::load_model(const std::string& checkpoint_dir) {
  load_segment_weights(checkpoint_dir, *lm_);
  resumed_ = true;
}

void SegmentStep::open_data(const RunContext& run) {
  TextStep::open_data(run);
  lm_->document_end_id = tokenizer_->eos_id();      // memories end with their document
  if (!resumed_) load_run_bank(*lm_, *tokenizer_);  // a resumed run's bank is in its weights
}

void SegmentStep::begin_step(const RunContext& run) {
  lm_->set_training_step(run.step);
}

nlohmann::json SegmentStep::end_step(const RunContext& run) {
  if (std::isfinite(run.loss)) lm_->observe_training_loss(run.loss);
  return nlohmann::json::object();
}

double SegmentStep::micro_batch(const RunContext& run) {
  const TextRows rows = draw_rows(run);
  const int64_t S = config_.memory.segments, T = config_.train.seq_len, B = rows.rows;
  std::vector<Tensor> ids, targets;  // S segments of (B, T)
  for (int64_t s = 0; s < S; ++s) {
    std::vector<int64_t> segment_ids(size_t(B * T)), segment_targets(segment_ids.size());
    for (int64_t r = 0; r < B; ++r) {
      const int64_t from = r * S * T + s * T;
      std::copy_n(rows.inputs.begin() + from, T, segment_ids.begin() + r * T);
      std::copy_n(rows.targets.begin() + from, T, segment_targets.begin() + r * T);
    }
    ids.push_back(to(from_vector(segment_ids, {B, T}), run.device));
    targets.push_back(to(from_vector(segment_targets, {B, T}), run.device));
  }
  // forward_backward leaves grad_scale x the gradient of this rank's mean loss, so the
  // convention's factor on the summed loss becomes scored * loss_scale on the mean.
  const double grad_scale = double(rows.scored) * rows.loss_scale;
  std::optional<autograd::ExactGradGuard> exact;
  if (run.exact_grads) exact.emplace(T);  // rows of a segment: one stream's T tokens
  const double mean =
      lm_->forward_backward(ids, targets, lm_->initial_state(B), nullptr, grad_scale);
  return mean * grad_scale;
}

Validation SegmentStep::validate(const RunContext& run) {
  const TrainSettings& t = run.config.train;
  return text_validation(evaluate_streams(*lm_, val_ids_, t.seq_len, config_.memory.segments,
                                          t.batch_size, token_bytes_,
                                          t.eval_batches * t.batch_size));
}

}  // namespace mnemo::train

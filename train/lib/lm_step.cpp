// LmStep: a Llama trained on windows of text (see lm_step.h).
#include "train/lib/lm_step.h"

#include <optional>

#include "autograd/engine.h"
#include "autograd/exact_grad.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "optim/param_groups.h"
#include "train/lib/checkpoint.h"

namespace mnemo::train {

LmStep::LmStep(const RunConfig& config)
    : TextStep(config),
      config_(config),
      model_(std::make_shared<nn::LlamaForCausalLM>(config.model)) {
  // A memory section belongs to SegmentStep (segment_step.h); here it would be dropped.
  MNEMO_CHECK(!config.memory.enabled,
              "train: this config has a memory section ({}); the plain LM step cannot train it",
              config.memory.mechanism);
}

std::vector<optim::ParamGroup> LmStep::param_groups() const {
  return optim::decay_groups(model_->named_parameters(), config_.train.weight_decay);
}

std::string LmStep::describe() const {
  const nn::LlamaConfig& c = config_.model;
  return fmt::format("Llama, {} layers, hidden {}, {} heads ({} kv), {} parameters",
                     c.num_hidden_layers, c.hidden_size, c.num_attention_heads,
                     c.num_key_value_heads, model_->num_parameters());
}

void LmStep::write_model(const std::filesystem::path& dir) const {
  write_llama_files(dir, *model_, *tokenizer_,
                    config_.json["model"].value("torch_dtype", std::string("float32")));
}

void LmStep::load_model(const std::string& checkpoint_dir) {
  const LoadedCheckpoint saved = load_checkpoint(checkpoint_dir);  // checked against its config
  model_->load_state_dict(saved.model->state_dict());
}

// loss = sum over this rank's tokens of -log p(target); backward of loss * loss_scale.
double LmStep::micro_batch(const RunContext& run) {
  const TextRows rows = draw_rows(run);
  const auto tensor = [&](const std::vector<int64_t>& ids) {
    Tensor t = from_vector(ids, {rows.rows, rows.length});
    return run.device.is_cpu() ? t : to(t, run.device);
  };
  Tensor loss = model_->loss(tensor(rows.inputs), tensor(rows.targets), Reduction::sum);
  const double share = loss.item() * rows.loss_scale;
  std::optional<autograd::ExactGradGuard> exact;
  if (run.exact_grads) exact.emplace(rows.length);  // one sequence per segment of rows
  backward(loss, full({}, rows.loss_scale, options_of(loss)));
  return share;
}

Validation LmStep::validate(const RunContext& run) {
  const TrainSettings& t = run.config.train;
  return text_validation(evaluate_windows(*model_, val_ids_, t.seq_len + 1, t.batch_size,
                                          token_bytes_, t.eval_batches * t.batch_size));
}

}  // namespace mnemo::train

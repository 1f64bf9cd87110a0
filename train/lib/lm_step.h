// LmStep: the plain language model's step of `mnemo train` — a Llama-style decoder
// (nn/llama.h) trained on random windows of the corpus, the run skeleton of trainer.h around
// it.
//
//   model        nn::LlamaForCausalLM(config.model), weights from the generator seeded by
//                train.seed; AdamW groups from optim::decay_groups (no decay on norms,
//                biases and embeddings)
//   micro-batch  this rank's rows of batch_size / grad_accum windows of seq_len + 1 ids
//                (text_step.h): the fused loss summed over the rows' tokens, backward of
//                that sum times the convention's scale (trainer.h); with exact gradients the
//                weight gradients are summed per sequence (autograd/exact_grad.h)
//   validation   the val shard cut into consecutive windows of seq_len + 1 ids, eval_batches
//                x batch_size of them (evaluate.h: evaluate_windows)
//   checkpoint   a Hugging Face LlamaForCausalLM directory (checkpoint.h: write_llama_files)
//                in the model section's torch_dtype (float32 or bfloat16)
#pragma once

#include <memory>

#include "nn/llama.h"
#include "train/lib/text_step.h"

namespace mnemo::train {

class LmStep final : public TextStep {
 public:
  explicit LmStep(const RunConfig& config);

  nn::Module& model() override { return *model_; }
  std::vector<optim::ParamGroup> param_groups() const override;
  std::string describe() const override;
  std::string title() const override { return "mnemo train"; }
  void write_model(const std::filesystem::path& dir) const override;
  void load_model(const std::string& checkpoint_dir) override;
  double micro_batch(const RunContext& run) override;
  Validation validate(const RunContext& run) override;

 private:
  int64_t window() const override { return config_.train.seq_len; }

  RunConfig config_;
  std::shared_ptr<nn::LlamaForCausalLM> model_;
};

}  // namespace mnemo::train

// A checkpoint directory: everything needed to sample from, evaluate or resume a run.
//
//   config.json             HF LlamaForCausalLM config (loads in transformers unchanged)
//   model.safetensors       the weights under HF's names (F32, or BF16 when torch_dtype says)
//   tokenizer.json          mnemo's tokenizer (docs/tokenizer.md)
//   optimizer.safetensors   AdamW moments, "<param name>.exp_avg" / ".exp_avg_sq"
//   trainer_state.json      step, the full run config, data-sampler position, RNG state
//
// Written into a temporary directory and then published as RUN/step-XXXXXXXX with RUN/latest
// switched to it by one atomic rename (train/io/checkpoint_dir.h): a crash at any moment
// leaves the previous checkpoint complete and `latest` pointing at it.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "nn/llama.h"
#include "optim/optimizer.h"
#include "train/text/tokenizer.h"

namespace mnemo::train {

struct CheckpointContents {
  const nn::LlamaForCausalLM* model = nullptr;
  const optim::Optimizer* optimizer = nullptr;  // may be null (weights only)
  optim::NamedTensors optimizer_state;          // used instead when optimizer is null
                                                // (a sharded optimizer gathers it first)
  const text::Tokenizer* tokenizer = nullptr;
  nlohmann::json trainer_state;  // must hold "step"
  std::string torch_dtype = "float32";
};

// Writes a checkpoint of `contents` for `step` into run_dir; returns its final path.
std::string save_checkpoint(const std::string& run_dir, int64_t step,
                            const CheckpointContents& contents, int keep = 2);

// A loaded checkpoint (model on the CPU, in f32).
struct LoadedCheckpoint {
  std::string path;  // the checkpoint directory
  nn::LlamaConfig config;
  std::shared_ptr<nn::LlamaForCausalLM> model;
  std::unique_ptr<text::Tokenizer> tokenizer;
  nlohmann::json trainer_state;  // empty object if the file is absent
};

// `path` is a run directory (its latest is used) or a checkpoint directory. Checks every
// tensor's name, shape and dtype against the config; errors name the file and the tensor.
LoadedCheckpoint load_checkpoint(const std::string& path);

// Restores the optimizer moments saved next to the model (checkpoint_dir/optimizer.safetensors).
void load_optimizer_state(const std::string& checkpoint_dir, optim::Optimizer& optimizer);
// The saved moments themselves (for an optimizer that keeps only a shard of them).
optim::NamedTensors read_optimizer_state(const std::string& checkpoint_dir);

}  // namespace mnemo::train

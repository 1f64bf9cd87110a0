// A checkpoint directory: everything needed to sample from, evaluate or resume a run. A
// plain LM's (a memory-augmented one: train/lib/segment_checkpoint.h):
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
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "nn/llama.h"
#include "optim/optimizer.h"
#include "train/text/tokenizer.h"

namespace mnemo::train {

// Writes a checkpoint for `step` into run_dir: write_files(dir) fills a fresh temporary
// directory, which is then published as RUN/step-XXXXXXXX with RUN/latest switched to it
// (keeping the newest `keep`). Returns the final path. If write_files throws, nothing is
// published and `latest` stays where it was.
std::string save_checkpoint(const std::string& run_dir, int64_t step,
                            const std::function<void(const std::filesystem::path&)>& write_files,
                            int keep = 2);

// A Llama's files in `dir`: config.json (HF's), model.safetensors (HF's names; the tied
// lm_head.weight left out; F32, or BF16 when torch_dtype is "bfloat16") and tokenizer.json.
void write_llama_files(const std::filesystem::path& dir, const nn::LlamaForCausalLM& model,
                       const text::Tokenizer& tokenizer, std::string_view torch_dtype = "float32");
// dir/optimizer.safetensors: the optimizer's state tensors ("<param name>.<slot>").
void write_optimizer_state(const std::filesystem::path& dir, const optim::NamedTensors& state);

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

// Restores the optimizer state saved next to the model (checkpoint_dir/optimizer.safetensors);
// errors name the file.
void load_optimizer_state(const std::string& checkpoint_dir, optim::Optimizer& optimizer);

}  // namespace mnemo::train

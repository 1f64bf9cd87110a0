// Checkpoints of memory-augmented LMs (memory/segment_lm.h), as `mnemo train` writes them for
// a config with a "memory" section (train/lib/segment_step.h):
//
//   config.json            HF-style model keys + "memory" (the resolved section) and
//                          "architectures": ["MnemoSegmentLM"]
//   model.safetensors      the SegmentLM's state_dict (f32)
//   tokenizer.json         the run's tokenizer (its eos ends a document's memory)
//   optimizer.safetensors, trainer_state.json   as for any run (train/lib/trainer.h)
//
// `mnemo eval` and `mnemo sample` tell the two kinds of checkpoint apart by the memory section
// (is_segment_checkpoint) and load this kind with load_segment_checkpoint.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "memory/segment_lm.h"
#include "train/lib/run_config.h"
#include "train/text/tokenizer.h"

namespace mnemo::train {

// The SegmentLM of a run config with a memory section, its weights drawn from `seed`. Errors
// from make_segment_lm (an unknown or bad mechanism key) are rethrown as one line naming the
// memory section and the key.
std::unique_ptr<memory::SegmentLM> make_run_segment_lm(const RunConfig& rc, uint64_t seed);

// The model files of a checkpoint in `dir`: config.json, model.safetensors, tokenizer.json.
void write_segment_files(const std::filesystem::path& dir, const memory::SegmentLM& lm,
                         const RunConfig& rc, const text::Tokenizer& tokenizer);
// model.safetensors alone (written atomically: `mnemo bank` rewrites it in place).
void save_segment_weights(const std::filesystem::path& dir, const memory::SegmentLM& lm);
// Loads model.safetensors of checkpoint_dir into lm; errors name the file.
void load_segment_weights(const std::string& checkpoint_dir, memory::SegmentLM& lm);

// The bank of a fresh explicit run: memory.bank (a bank file or a text file of entries,
// train/lib/bank_file.h), read for the model with the run's tokenizer and set. Nothing for
// another mechanism or an empty key; a resumed run's bank comes with its checkpoint's weights.
// Errors name 'memory.bank' and the file.
void load_run_bank(memory::SegmentLM& lm, const text::Tokenizer& tokenizer);

// True when `path` (a run or checkpoint directory) holds a memory-augmented checkpoint: its
// config.json has a "memory" section.
bool is_segment_checkpoint(const std::string& path);

struct LoadedSegmentCheckpoint {
  std::string path;  // the checkpoint directory
  RunConfig run_config;
  std::unique_ptr<memory::SegmentLM> lm;  // on the CPU, eval mode
  std::unique_ptr<text::Tokenizer> tokenizer;
  nlohmann::json trainer_state;
};
// `path` is a run directory (its latest) or a checkpoint directory; errors name the file.
LoadedSegmentCheckpoint load_segment_checkpoint(const std::string& path);

}  // namespace mnemo::train

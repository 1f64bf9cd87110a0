// The `mnemo` subcommands that work on text and checkpoints: eval, sample, tokenize and
// tokenizer train. Each takes its parsed options and writes its result to `out` (stdout in the
// CLI); errors are mnemo::Error naming the file or option (exit status 2 in the CLI).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>

#include "train/lib/trainer.h"

namespace mnemo::train {

// The step `mnemo train` trains with for a run config: a memory-augmented SegmentLM
// (segment_step.h) when the config has a "memory" section, else the plain LM (lm_step.h).
std::unique_ptr<TrainStep> make_text_step(const RunConfig& rc);
// `mnemo train`: the run skeleton (trainer.h) with make_text_step. The config decides:
// --config with the --set overrides for a new run, the checkpoint's saved config for --resume.
TrainSummary run_train(const TrainOptions& options, std::ostream& log);

struct EvalOptions {
  std::string checkpoint;  // run dir (its latest) or checkpoint dir
  std::string text;        // file to score
  int64_t seq = 0;         // window length; 0 = max_position_embeddings
  int64_t batch = 8;
  std::string device = "auto";
};
// One JSON line: {"loss_nats_per_token", "bits_per_byte", "tokens", "bytes", "windows", "seq"}
// (evaluate.h has the windowing rule and what "bytes" counts). A memory-augmented checkpoint
// (segment_checkpoint.h) reads the whole text as one stream, in segments of --seq tokens
// (default: its train.seq_len) with the memory state carried, and prints "mechanism" and
// "segments" instead of "windows".
void run_eval(const EvalOptions& options, std::ostream& out);

struct SampleOptions {
  std::string checkpoint;
  std::string prompt;
  int64_t max_tokens = 100;
  double temperature = 1.0;
  int64_t top_k = 0;
  double top_p = 1.0;
  uint64_t seed = 0;
  bool use_cache = true;
  std::string device = "auto";
  // An explicit memory checkpoint only (train/lib/bank_command.h): print which bank entry each
  // position read; add the prompt's sentences to the bank first (fifo, lru or similar).
  bool show_retrieval = false;
  std::string bank_update;
};
// Prints the prompt followed by its continuation. The model sees an eos id before the prompt
// (the start of a document, as in training) and stops at the next eos. A memory-augmented
// checkpoint generates in segments of its train.seq_len with the memory state carried
// (segment_generate.h); it has no KV cache, so use_cache changes nothing there.
void run_sample(const SampleOptions& options, std::ostream& out);

// Writes the ids of the text (as the checkpoint's tokenizer encodes it) as a JSON array.
void run_tokenize(const std::string& checkpoint, const std::string& text_file,
                  const std::string& out_file);

// Trains a tokenizer ("bpe" or "byte") on a text file or directory and saves it.
void run_tokenizer_train(const std::string& text_path, int64_t vocab_size, const std::string& type,
                         const std::string& out_file, std::ostream& out);

}  // namespace mnemo::train

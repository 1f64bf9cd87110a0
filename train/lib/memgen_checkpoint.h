// A MemGen checkpoint: the frozen reasoner, the weaver and the trigger, and how to insert —
// what `mnemo memory-bench memgen --out DIR` writes and `mnemo sample` reads.
//
//   RUN/latest -> RUN/step-XXXXXXXX/       published atomically (train/io/checkpoint_dir.h)
//     memgen.json          {"memgen": the MemGenConfig (memory/memgen.h), "insert": the mode
//                          `sample` uses (trigger when a trigger was trained), "trigger": bool}
//     memgen.safetensors   the MemGenLM's state dict (weaver.*, the maps, the queries, or
//                          soft_prompt) and the trigger's under "trigger."
//     reasoner/            a plain Llama checkpoint (config.json, model.safetensors,
//                          tokenizer.json: train/lib/checkpoint.h)
#pragma once

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>

#include "memory/memgen.h"
#include "memory/memgen_generate.h"
#include "memory/memgen_trigger.h"
#include "train/lib/commands.h"
#include "train/text/tokenizer.h"

namespace mnemo::train {

// Publishes a checkpoint of `lm` (and `trigger`, may be null) as run_dir/step-<step>.
std::string save_memgen_checkpoint(const std::string& run_dir, int64_t step,
                                   const memory::MemGenLM& lm, const memory::MemGenTrigger* trigger,
                                   memory::InsertMode mode, const text::Tokenizer& tokenizer);

// Whether `path` (a run or checkpoint directory) holds a MemGen checkpoint.
bool is_memgen_checkpoint(const std::string& path);

struct LoadedMemGen {
  std::string path;  // the checkpoint directory
  std::unique_ptr<memory::MemGenLM> lm;
  std::unique_ptr<memory::MemGenTrigger> trigger;  // null when none was saved
  memory::InsertMode mode = memory::InsertMode::delimiters;
  std::unique_ptr<text::Tokenizer> tokenizer;
};
// Errors name the file and the key or tensor.
LoadedMemGen load_memgen_checkpoint(const std::string& path);

// `mnemo sample` on a MemGen checkpoint: the prompt's continuation with the latents' places
// marked ("[+K]" after the token they follow; insertions at the prompt's end show after it),
// then a line listing them. Greedy or sampled as the options say.
void run_sample_memgen(const SampleOptions& options, std::ostream& out);

}  // namespace mnemo::train

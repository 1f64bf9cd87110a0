// `mnemo bank` and the bank options of `mnemo sample`: reading and editing the explicit memory
// bank of an ExplicitLM checkpoint (memory/explicit.h) without retraining.
//
//   mnemo bank show --checkpoint DIR --entry I
//       one JSON line: the entry's token ids, its decoded text, its written / last_used
//       counters, whether it is free and whether it is in the frozen base part
//   mnemo bank add --checkpoint DIR --text FILE [--policy fifo|lru|similar]
//       each non-blank line of FILE (tokenized with the checkpoint's tokenizer) becomes a new
//       entry: free slots first, then the oldest (fifo), least recently used (lru) or most
//       similar (similar) entries outside the frozen part; prints the slots written
//   mnemo bank edit --checkpoint DIR --entry I --text "..."
//       rewrites entry I (any entry, frozen ones too: an edit by index is deliberate)
//
// add and edit load the checkpoint, change the bank, and write the checkpoint's
// model.safetensors back atomically (a rename over the old file): the bank lives in the
// model's "bank.*" buffers, so the edited checkpoint samples, evaluates and resumes training
// with the new bank. A checkpoint of another mechanism is an error (exit 2).
//
// `similar` compares the new entries with the existing ones as the model sees them: the cosine
// between ExplicitLM::represent() of each new entry and represent_entries() of each open slot.
//
// For `mnemo sample` (train/lib/commands.h):
//   --bank-update POLICY  the prompt is split into sentences (split_sentences: a plain
//                         splitter that stands in for the reference's LLMLingua fact
//                         extractor) and each is added to the bank with that policy before
//                         generating; only in memory, the checkpoint is untouched
//   --show-retrieval      RetrievalLog: for each position read (the prompt's and the generated
//                         ones), each memory layer's selected entry, its text and alpha
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

#include "memory/explicit.h"
#include "train/text/tokenizer.h"

namespace mnemo::train {

struct BankOptions {
  std::string checkpoint;       // run dir (its latest) or checkpoint dir
  int64_t entry = -1;           // show, edit
  std::string text;             // add: a file of entries, one per line; edit: the entry's new text
  std::string policy = "fifo";  // add: fifo | lru | similar
};
void run_bank_show(const BankOptions& options, std::ostream& out);
void run_bank_add(const BankOptions& options, std::ostream& out);
void run_bank_edit(const BankOptions& options, std::ostream& out);

// The ExplicitLM behind a SegmentLM; `what` (a command) names the error when it is another
// mechanism.
memory::ExplicitLM& explicit_lm(memory::SegmentLM& lm, std::string_view what);

// Adds `entries` to lm's bank under `policy` (similar: by the cosine of the model's
// representations) and updates the model's copy; returns the slots written.
std::vector<int64_t> add_bank_entries(memory::ExplicitLM& lm,
                                      const std::vector<std::vector<int32_t>>& entries,
                                      memory::BankPolicy policy);

// "A b. C d!  E?\nF" -> {"A b.", "C d!", "E?", "F"}: a sentence ends at '.', '!' or '?' (with
// any run of them) before a space or the end of the text, or at a line break; sentences are
// trimmed, empty ones dropped.
std::vector<std::string> split_sentences(std::string_view text);

// `sample --bank-update`: the sentences of `prompt` added to the bank; a note of the slots on
// `log`. A sentence longer than the entry length is an error naming it.
void update_bank_from_prompt(memory::ExplicitLM& lm, const text::Tokenizer& tokenizer,
                             std::string_view prompt, memory::BankPolicy policy, std::ostream& log);

// `sample --show-retrieval`: collects, after each forward of generate_segments (its observer),
// the retrievals of the positions that forward read for the first time, then prints them.
class RetrievalLog {
 public:
  explicit RetrievalLog(memory::ExplicitLM& lm) : lm_(lm), layers_(lm.config.layers.size()) {}
  // The forward just run read `fresh` new positions: the last `fresh` of its segment.
  void record(int64_t fresh);
  // One line per memory layer and position: position, its token, the entry read, alpha and
  // the entry's text. `tokens` are the ids the model read, in order.
  void print(const std::vector<int32_t>& tokens, const text::Tokenizer& tokenizer,
             std::ostream& out) const;

 private:
  struct Read {
    int64_t entry;
    float alpha;
  };
  memory::ExplicitLM& lm_;
  std::vector<std::vector<Read>> layers_;  // [memory layer][position]
};

}  // namespace mnemo::train

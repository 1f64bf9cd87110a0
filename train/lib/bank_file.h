// Bank files: ExplicitLM's memory bank (memory/explicit_bank.h) on disk, in two forms.
//
//   bank file (safetensors, train/io/safetensors.h; written atomically):
//     "tokens"     (N, L) I32   entry e's token ids in row e, -1 after its last token
//     "written"    (N)    I64   the bank clock when each entry was last written (fifo)
//     "last_used"  (N)    I64   the bank clock when the model last selected it (lru)
//     "clock"      (1)    I64   the bank clock
//     __metadata__ {"format": "mnemo-bank", "side": "n", "length": "L",
//                   "freeze_ratio": "0.2"}            N = n * n
//   It holds exactly what a checkpoint's "bank.*" buffers hold, so a bank moves between runs
//   with its replacement bookkeeping.
//
//   text file: one entry per line, in order from entry 0; blank lines are skipped, each other
//     line (without its surrounding spaces) is tokenized with the model's tokenizer. The rest
//     of the bank stays free.
//
// Every error names the file, and the tensor, metadata key or line it is about: a corrupt,
// truncated or mismatched file is bad input (mnemo::Error, exit 2), never a crash.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "memory/explicit_bank.h"
#include "train/text/tokenizer.h"

namespace mnemo::train {

// Writes `bank` to `path` (atomically: PATH.tmp, then a rename).
void save_bank(const std::string& path, const memory::MemoryBank& bank);

// Reads a bank file, its side, length and freeze_ratio from the metadata.
memory::MemoryBank load_bank(const std::string& path);

// The entries of a text file: its non-blank lines, trimmed and tokenized. More than
// `max_entries` of them, or a line of more than `length` tokens, is an error naming the file
// and the line number.
std::vector<std::vector<int32_t>> read_text_entries(const std::string& path,
                                                    const text::Tokenizer& tokenizer,
                                                    int64_t length, int64_t max_entries);

// A bank of n * n entries of `length` tokens whose entries 0, 1, ... are the text file's
// entries (read_text_entries); the rest stay free.
memory::MemoryBank read_bank_text(const std::string& path, const text::Tokenizer& tokenizer,
                                  int64_t n, int64_t length, double freeze_ratio);

// True when `path` is a bank file rather than text: its name ends in ".safetensors", or it
// starts like one (an 8-byte header length that fits in the file, then '{').
bool is_bank_file(const std::string& path);

// The bank for a model of n * n entries of `length` tokens whose tokenizer is `tokenizer`: a
// bank file must have exactly that shape and only tokens the tokenizer knows (it takes the
// model's freeze_ratio); a text file is read with read_bank_text.
memory::MemoryBank read_bank_for_model(const std::string& path, const text::Tokenizer& tokenizer,
                                       int64_t n, int64_t length, double freeze_ratio);

}  // namespace mnemo::train

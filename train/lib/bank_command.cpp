// `mnemo bank` and the bank options of `mnemo sample` (see bank_command.h).
#include "train/lib/bank_command.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <ostream>
#include <span>

#include "autograd/grad_mode.h"
#include "core/error.h"
#include "train/io/checkpoint_dir.h"
#include "train/lib/bank_file.h"
#include "train/lib/segment_checkpoint.h"

namespace mnemo::train {

using memory::BankPolicy;
using memory::ExplicitLM;
using memory::MemoryBank;
using nlohmann::json;

namespace {

// JSON text of a value holding decoded tokens, which need not be valid UTF-8 (a byte-level
// token may end inside a character): invalid bytes print as U+FFFD.
std::string dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

// A checkpoint whose model is an ExplicitLM; any other checkpoint is an error naming it.
LoadedSegmentCheckpoint load_explicit_checkpoint(const std::string& path, std::string_view what) {
  MNEMO_CHECK(is_segment_checkpoint(path),
              "{}: {} is a plain Llama checkpoint; only an explicit memory checkpoint has a bank",
              what, path);
  LoadedSegmentCheckpoint ckpt = load_segment_checkpoint(path);
  explicit_lm(*ckpt.lm, what);
  return ckpt;
}

int64_t checked_entry(const MemoryBank& bank, int64_t entry, std::string_view what) {
  MNEMO_CHECK(entry >= 0 && entry < bank.entries(), "{}: --entry must be in [0, {}), got {}", what,
              bank.entries(), entry);
  return entry;
}

// cos(a, b) of two rows of C floats; 0 when either is zero (a free entry).
double cosine(const float* a, const float* b, int64_t C) {
  double dot = 0, aa = 0, bb = 0;
  for (int64_t c = 0; c < C; ++c) {
    dot += double(a[c]) * b[c];
    aa += double(a[c]) * a[c];
    bb += double(b[c]) * b[c];
  }
  return aa > 0 && bb > 0 ? dot / std::sqrt(aa * bb) : 0.0;
}

// (M, open) row-major: the cosine between new entry k and open slot frozen + j, as the model
// represents them. The open slots are read in chunks, so a bank of 1024^2 entries never needs
// all its representations at once.
std::vector<float> cosine_to_open_slots(const ExplicitLM& lm,
                                        const std::vector<std::vector<int32_t>>& entries) {
  NoGradGuard no_grad;
  const MemoryBank& bank = lm.bank();
  const int64_t first = bank.frozen(), open = bank.entries() - first;
  const int64_t M = int64_t(entries.size());
  const std::vector<float> fresh = lm.represent(entries).to_vector<float>();  // (M, C)
  const int64_t C = int64_t(fresh.size()) / std::max<int64_t>(M, 1);
  std::vector<float> out(size_t(M * open));
  constexpr int64_t kChunk = 4096;
  for (int64_t begin = 0; begin < open; begin += kChunk) {
    const int64_t n = std::min(kChunk, open - begin);
    std::vector<int64_t> ids(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) ids[size_t(j)] = first + begin + j;
    const std::vector<float> reps = lm.represent_entries(ids).to_vector<float>();  // (n, C)
    for (int64_t k = 0; k < M; ++k) {
      for (int64_t j = 0; j < n; ++j) {
        out[size_t(k * open + begin + j)] =
            float(cosine(fresh.data() + k * C, reps.data() + j * C, C));
      }
    }
  }
  return out;
}

// The one-line view of an entry that show and edit print.
json entry_json(const MemoryBank& bank, int64_t e, const text::Tokenizer& tokenizer) {
  const std::vector<int32_t> tokens = bank.entry(e);
  return json{{"entry", e},
              {"tokens", tokens},
              {"text", tokenizer.decode(tokens)},
              {"written", bank.written()[size_t(e)]},
              {"last_used", bank.last_used()[size_t(e)]},
              {"free", bank.is_free(e)},
              {"frozen", e < bank.frozen()}};
}

// An entry's text as a JSON string, or what stands in its place.
std::string quoted_entry(const MemoryBank& bank, int64_t e, const text::Tokenizer& tokenizer) {
  if (e < 0 || e >= bank.entries()) return "(no entry)";
  if (bank.is_free(e)) return "(free)";
  return dump(tokenizer.decode(bank.entry(e)));
}

}  // namespace

ExplicitLM& explicit_lm(memory::SegmentLM& lm, std::string_view what) {
  auto* model = dynamic_cast<ExplicitLM*>(&lm);
  MNEMO_CHECK(model != nullptr,
              "{}: the checkpoint's memory mechanism is '{}'; only an explicit memory checkpoint "
              "has a bank",
              what, lm.mechanism());
  return *model;
}

std::vector<int64_t> add_bank_entries(ExplicitLM& lm,
                                      const std::vector<std::vector<int32_t>>& entries,
                                      BankPolicy policy) {
  MemoryBank& bank = lm.bank();
  const int64_t first = bank.frozen(), open = bank.entries() - first;
  std::vector<float> cos;  // computed when choose_slots first asks: only if a slot is replaced
  MemoryBank::Similarity similarity;
  if (policy == BankPolicy::similar) {
    similarity = [&](int64_t k, int64_t e) {
      if (cos.empty()) cos = cosine_to_open_slots(lm, entries);
      return double(cos[size_t(k * open + e - first)]);
    };
  }
  const std::vector<int64_t> slots = bank.add(entries, policy, similarity);
  lm.bank_changed();
  return slots;
}

void run_bank_show(const BankOptions& o, std::ostream& out) {
  LoadedSegmentCheckpoint ckpt = load_explicit_checkpoint(o.checkpoint, "bank show");
  const MemoryBank& bank = explicit_lm(*ckpt.lm, "bank show").bank();
  out << dump(entry_json(bank, checked_entry(bank, o.entry, "bank show"), *ckpt.tokenizer)) << "\n";
}

void run_bank_add(const BankOptions& o, std::ostream& out) {
  const BankPolicy policy = memory::parse_bank_policy(o.policy);
  LoadedSegmentCheckpoint ckpt = load_explicit_checkpoint(o.checkpoint, "bank add");
  ExplicitLM& lm = explicit_lm(*ckpt.lm, "bank add");
  const MemoryBank& bank = lm.bank();
  const auto entries =
      read_text_entries(o.text, *ckpt.tokenizer, bank.length(), bank.entries() - bank.frozen());
  const std::vector<int64_t> slots = add_bank_entries(lm, entries, policy);
  save_segment_weights(ckpt.path, *ckpt.lm);  // atomically: the old file or the new
  out << json{{"checkpoint", ckpt.path}, {"policy", o.policy}, {"slots", slots}}.dump() << "\n";
}

void run_bank_edit(const BankOptions& o, std::ostream& out) {
  LoadedSegmentCheckpoint ckpt = load_explicit_checkpoint(o.checkpoint, "bank edit");
  ExplicitLM& lm = explicit_lm(*ckpt.lm, "bank edit");
  const int64_t e = checked_entry(lm.bank(), o.entry, "bank edit");
  const std::vector<int32_t> tokens = ckpt.tokenizer->encode(o.text);
  MNEMO_CHECK(int64_t(tokens.size()) <= lm.bank().length(),
              "bank edit: --text is {} tokens, more than the entry length {}", tokens.size(),
              lm.bank().length());
  lm.bank().set(e, tokens);
  lm.bank_changed();
  save_segment_weights(ckpt.path, *ckpt.lm);  // atomically: the old file or the new
  out << dump(entry_json(lm.bank(), e, *ckpt.tokenizer)) << "\n";
}

std::vector<std::string> split_sentences(std::string_view text) {
  std::vector<std::string> sentences;
  const auto flush = [&](std::string_view piece) {
    const size_t first = piece.find_first_not_of(" \t\r\v\f");
    if (first == std::string_view::npos) return;
    sentences.emplace_back(piece.substr(first, piece.find_last_not_of(" \t\r\v\f") - first + 1));
  };
  const auto is_end = [](char c) { return c == '.' || c == '!' || c == '?'; };
  size_t start = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\n') {
      flush(text.substr(start, i - start));
      start = i + 1;
    } else if (is_end(text[i])) {
      size_t end = i + 1;
      while (end < text.size() && is_end(text[end])) ++end;
      if (end == text.size() || std::isspace(static_cast<unsigned char>(text[end]))) {
        flush(text.substr(start, end - start));
        start = end;
      }
      i = end - 1;
    }
  }
  flush(text.substr(start));
  return sentences;
}

void update_bank_from_prompt(ExplicitLM& lm, const text::Tokenizer& tokenizer,
                             std::string_view prompt, BankPolicy policy, std::ostream& log) {
  const std::vector<std::string> sentences = split_sentences(prompt);
  std::vector<std::vector<int32_t>> entries;
  for (size_t s = 0; s < sentences.size(); ++s) {
    entries.push_back(tokenizer.encode(sentences[s]));
    MNEMO_CHECK(int64_t(entries.back().size()) <= lm.bank().length(),
                "sample --bank-update: sentence {} ({}) is {} tokens, more than the bank's entry "
                "length {}",
                s + 1, dump(sentences[s]), entries.back().size(), lm.bank().length());
  }
  const std::vector<int64_t> slots = add_bank_entries(lm, entries, policy);
  log << "bank-update (" << bank_policy_name(policy) << "): " << slots.size()
      << " sentences of the prompt written to entries " << dump(slots)
      << " (split on . ! ? and line breaks, standing in for an LLMLingua fact extractor)\n";
}

void RetrievalLog::record(int64_t fresh) {
  const std::vector<memory::Retrieval>& reads = lm_.last_retrieval();
  MNEMO_ASSERT(reads.size() == layers_.size(),
               "RetrievalLog: {} retrievals from a model with {} memory layers", reads.size(),
               layers_.size());
  for (size_t i = 0; i < reads.size(); ++i) {
    const std::vector<int64_t> selected = reads[i].selected.to_vector<int64_t>();  // (1, T)
    const std::vector<float> alpha = reads[i].alpha.to_vector<float>();            // (1, T)
    MNEMO_ASSERT(selected.size() == alpha.size() && int64_t(selected.size()) >= fresh,
                 "RetrievalLog: {} selections and {} alphas for {} new positions", selected.size(),
                 alpha.size(), fresh);
    for (size_t t = selected.size() - size_t(fresh); t < selected.size(); ++t) {
      layers_[i].push_back({selected[t], alpha[t]});
    }
  }
}

void RetrievalLog::print(const std::vector<int32_t>& tokens, const text::Tokenizer& tokenizer,
                         std::ostream& out) const {
  const MemoryBank& bank = lm_.bank();
  for (size_t i = 0; i < layers_.size(); ++i) {
    out << "retrieval, memory layer " << lm_.config.layers[i]
        << " (position, token -> entry, alpha, the entry's text):\n";
    const size_t positions = std::min(layers_[i].size(), tokens.size());
    for (size_t t = 0; t < positions; ++t) {
      const Read& read = layers_[i][t];
      out << fmt::format("{:>6} {:<16} -> {:>7}  alpha {:.3f}  {}\n", t,
                         dump(tokenizer.decode(std::span(&tokens[t], 1))), read.entry, read.alpha,
                         quoted_entry(bank, read.entry, tokenizer));
    }
  }
}

}  // namespace mnemo::train

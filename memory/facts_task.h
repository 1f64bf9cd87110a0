// The synthetic facts task of `mnemo memory-bench facts` (train/lib/facts_bench.h): knowledge
// that lives in an explicit memory bank (memory/explicit.h) rather than in the weights, and
// questions that only a model which finds the right entry can answer.
//
// Facts. Subjects are made-up two-syllable names "s_i s_j" over n syllables (i, j in [0, n)),
// so there are n * n subjects, as many as the entries of a bank whose product keys have side n
// (memory/explicit_bank.h). Each subject has exactly one fact "s_i s_j r o": a relation r (one
// of R) and an object o (one of O), drawn uniformly from the seed. Nothing is downloaded; the
// facts, splits, layout and batches are a pure function of the seed and the options.
//
// Vocabulary (V = 2 + n + R + O, 138 at the defaults):
//   0 pad, 1 "?", then the n syllables, the R relations, the O objects.
//
// Splits of the subjects (a seeded permutation, cut in three):
//   reserved   a small part (default 1/16): NOT in the bank at the start and never in
//              training text; the bench writes them into the bank after training (the
//              `inserted` facts), into free slots that are not their layout slots;
//   held_out   in the bank, never in training text (default 1/4): only retrieval answers them;
//   trained    the rest: in the bank and asked in training text.
//
// Bank layout (N = n * n entries of L = 4 tokens "s_i s_j r o"):
//   grid       subject (i, j) in entry i * n + j, so the product keys' grid factors like the
//              subjects (learned sub-keys generalise from trained to held-out subjects);
//   shuffled   a seeded permutation of the entries: only keys computed from an entry's own
//              tokens can find an entry that no training question pointed at.
// Reserved subjects' entries are left free. The bank has no frozen part (freeze_ratio 0), so
// `add` may write any free slot.
//
// Text. A question is the five tokens "s_i s_j r ? o": the target at the "?" position is o
// (the model predicts the object while reading "?"), every other target is -100, and the
// router target at "?" is the fact's bank entry (-1 elsewhere: memory/explicit.h,
// set_router_targets). A row of T tokens holds floor(T / 5) questions, padded at the end.
// Training rows ask trained facts only, each epoch over them in a fresh seeded order.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "memory/explicit_bank.h"
#include "memory/task_options.h"

namespace mnemo::memory {

struct Fact {
  int64_t first = 0, second = 0;  // the subject's syllables i, j in [0, n)
  int64_t relation = 0;           // [0, R)
  int64_t object = 0;             // [0, O)
  int64_t slot = -1;              // its bank entry; -1 when it is not in the bank

  int64_t subject(int64_t n) const { return first * n + second; }
};

enum class FactSplit { trained, held_out, reserved };

// Rows of questions, on the host: B rows of T tokens, row-major (b, t).
struct FactQuestions {
  int64_t rows = 0, length = 0;                       // B, T
  std::vector<int64_t> ids, targets, router_targets;  // (B, T); -100 / -1 where not asked
  std::vector<int64_t> answer_at;  // (Q): position b * T + t of question q's "?", in the order
                                   // the facts were given

  Tensor ids_tensor(Device device = Device::cpu()) const;             // (B, T) i64
  Tensor targets_tensor(Device device = Device::cpu()) const;         // (B, T) i64
  Tensor router_targets_tensor(Device device = Device::cpu()) const;  // (B, T) i64
};

class FactsTask {
 public:
  static constexpr int64_t kPad = 0, kQuestion = 1, kSpecials = 2;
  static constexpr int64_t kQuestionLength = 5;  // "s_i s_j r ? o"
  static constexpr int64_t kEntryLength = 4;     // "s_i s_j r o"

  // Options (memory/task_options.h): syllables (n, 64), relations (8), objects (64),
  // held-out (0.25), reserved (0.0625), layout (grid | shuffled), edits (K: how many facts
  // the bench edits; 256, or a quarter of the facts of a smaller bank), segment-length (T, 40).
  // Throws mnemo::Error naming a bad or unknown option.
  FactsTask(uint64_t seed, const TaskOptions& options);

  std::string name() const { return "facts"; }
  int64_t syllables() const { return n_; }      // n
  int64_t objects() const { return objects_; }  // O: chance is 1 / O
  int64_t vocab_size() const { return kSpecials + n_ + relations_ + objects_; }
  int64_t segment_length() const { return length_; }  // T
  int64_t questions_per_row() const { return length_ / kQuestionLength; }
  int64_t bank_entries() const { return n_ * n_; }  // N
  const std::string& layout() const { return layout_; }
  int64_t edit_count() const { return edits_; }  // K
  nlohmann::json config() const;                 // the options, defaults filled in

  // Token ids.
  int64_t syllable_token(int64_t i) const { return kSpecials + i; }
  int64_t relation_token(int64_t r) const { return kSpecials + n_ + r; }
  int64_t object_token(int64_t o) const { return kSpecials + n_ + relations_ + o; }

  // The facts of a split, in subject order; reserved facts have slot -1.
  const std::vector<Fact>& facts(FactSplit split) const;
  // The bank entry of a fact: "s_i s_j r o".
  std::vector<int32_t> entry(const Fact& fact) const;
  // N = n * n entries of L = 4: trained and held-out facts at their slots, the rest free.
  MemoryBank bank() const;

  // Training rows of step `step`: `rows` rows of questions about trained facts.
  FactQuestions train_batch(int64_t step, int64_t rows) const;
  // The questions about `facts`, packed into ceil(|facts| / questions_per_row()) rows; the
  // router targets are the facts' slots.
  FactQuestions ask(std::span<const Fact> facts) const;

  // K facts drawn from trained and held-out ones, each with a different object than its own:
  // the bench writes them into the bank and asks them again.
  std::vector<Fact> edits() const;
  // The reserved facts in the order the bench adds them to the bank (seeded, not subject
  // order: free slots are taken in index order, so with the grid layout the facts do not
  // land in their own layout slots).
  std::vector<Fact> insertions() const;

 private:
  uint64_t seed_;
  int64_t n_, relations_, objects_, length_, edits_;
  double held_out_fraction_, reserved_fraction_;
  std::string layout_;
  std::vector<Fact> trained_, held_out_, reserved_;
};

}  // namespace mnemo::memory

// MemoryBank: ExplicitLM's explicit memory (memory/explicit.h) — N entries of at most L token
// ids each, readable and editable text rather than weights.
//
//   entry e (0 <= e < N) = up to L token ids, stored as one row of `tokens` (N, L) with -1 in
//   the unused positions; an empty entry (all -1) is a free slot.
//   N = n * n, so that the router's product keys (n row keys x n column keys) address every
//   entry as e = i * n + j.
//
// The bank is not a parameter: the model reads it (each entry's representation is computed
// from its tokens), training never changes it, and a user may rewrite it at any time. The
// first frozen() = floor(freeze_ratio * N) entries are the base knowledge that `add` never
// replaces (the seed's freeze_ratio); `set` may still edit them by index.
//
// Bookkeeping for the replacement policies of `add`, one counter per entry:
//   written[e]    the bank clock when entry e was last written (fifo replaces the smallest)
//   last_used[e]  the bank clock when the model last selected entry e (lru: the smallest)
// The clock advances on every write and every recorded use. Both counters are kept with the
// tokens, so a saved bank resumes its policies where it stopped.
//
// This is host data and plain C++: no tensors, no file formats (train/lib/bank_file.h reads
// and writes banks as safetensors and text; memory/explicit.h mirrors the tokens to the
// model's device).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace mnemo::memory {

enum class BankPolicy { fifo, lru, similar };
BankPolicy parse_bank_policy(const std::string& name);  // "fifo" | "lru" | "similar"
std::string bank_policy_name(BankPolicy policy);

class MemoryBank {
 public:
  MemoryBank() = default;
  // n * n entries of `length` tokens, all empty. n >= 1, length >= 1, freeze_ratio in [0, 1].
  MemoryBank(int64_t n, int64_t length, double freeze_ratio = 0.0);

  int64_t side() const { return n_; }          // n
  int64_t entries() const { return n_ * n_; }  // N
  int64_t length() const { return length_; }   // L
  double freeze_ratio() const { return freeze_ratio_; }
  int64_t frozen() const;  // floor(freeze_ratio * N): entries 0 .. frozen()-1 are base knowledge

  // Entry e's tokens without the -1 padding (empty for a free slot).
  std::vector<int32_t> entry(int64_t e) const;
  bool is_free(int64_t e) const;
  // Writes entry e (the padding added). Throws mnemo::Error naming the entry when e is out of
  // range, tokens is longer than L, or a token is negative.
  void set(int64_t e, const std::vector<int32_t>& tokens);
  void clear(int64_t e);

  // Where `count` new entries go under `policy`, never among the frozen entries: free slots
  // first (in index order), then, for fifo the least recently written, for lru the least
  // recently used, for similar the entries most similar to the new ones (`similarity(k, e)`:
  // how close new entry k is to existing entry e, higher = closer; each new entry takes the
  // free-or-most-similar slot not yet taken). Distinct slots; throws when count exceeds the
  // entries that are not frozen.
  using Similarity = std::function<double(int64_t k, int64_t e)>;
  std::vector<int64_t> choose_slots(int64_t count, BankPolicy policy,
                                    const Similarity& similarity = {}) const;
  // choose_slots, then set each new entry there; returns the slots written.
  std::vector<int64_t> add(const std::vector<std::vector<int32_t>>& new_entries, BankPolicy policy,
                           const Similarity& similarity = {});

  // The model selected these entries (ids outside [0, N) are ignored): advances last_used.
  void record_use(const std::vector<int64_t>& used);

  // Raw rows, for the model and for files.
  const std::vector<int32_t>& tokens() const { return tokens_; }  // (N, L), -1 = unused
  const std::vector<int64_t>& written() const { return written_; }
  const std::vector<int64_t>& last_used() const { return last_used_; }
  int64_t clock() const { return clock_; }
  // Rebuilds a bank from raw rows (a file): checks every size and token (-1 or >= 0, padding
  // only after the tokens), throwing mnemo::Error that names `source`.
  static MemoryBank from_rows(int64_t n, int64_t length, double freeze_ratio,
                              std::vector<int32_t> tokens, std::vector<int64_t> written,
                              std::vector<int64_t> last_used, int64_t clock,
                              const std::string& source);

  // Bumped on every change of the tokens: the model re-mirrors the bank when it moved.
  uint64_t version() const { return version_; }

 private:
  void check_entry(int64_t e, const char* what) const;

  int64_t n_ = 0, length_ = 0;
  double freeze_ratio_ = 0;
  std::vector<int32_t> tokens_;
  std::vector<int64_t> written_, last_used_;
  int64_t clock_ = 0;
  uint64_t version_ = 0;
};

}  // namespace mnemo::memory

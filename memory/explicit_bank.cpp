// MemoryBank (explicit_bank.h): entries, the replacement policies and their bookkeeping.
#include "memory/explicit_bank.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/error.h"

namespace mnemo::memory {

BankPolicy parse_bank_policy(const std::string& name) {
  if (name == "fifo") return BankPolicy::fifo;
  if (name == "lru") return BankPolicy::lru;
  if (name == "similar") return BankPolicy::similar;
  fail("bank policy '{}' is not one of fifo, lru, similar", name);
}

std::string bank_policy_name(BankPolicy policy) {
  switch (policy) {
    case BankPolicy::fifo: return "fifo";
    case BankPolicy::lru: return "lru";
    case BankPolicy::similar: return "similar";
  }
  fail_internal("bank_policy_name: unknown policy {}", int(policy));
}

MemoryBank::MemoryBank(int64_t n, int64_t length, double freeze_ratio)
    : n_(n), length_(length), freeze_ratio_(freeze_ratio) {
  MNEMO_CHECK(n >= 1 && length >= 1, "MemoryBank: side n ({}) and entry length ({}) must be >= 1",
              n, length);
  MNEMO_CHECK(n <= (int64_t(1) << 15), "MemoryBank: side n ({}) must be at most 32768", n);
  MNEMO_CHECK(freeze_ratio >= 0 && freeze_ratio <= 1,
              "MemoryBank: freeze_ratio must be in [0, 1], got {}", freeze_ratio);
  tokens_.assign(size_t(entries() * length), -1);
  written_.assign(size_t(entries()), 0);
  last_used_.assign(size_t(entries()), 0);
}

int64_t MemoryBank::frozen() const {
  return int64_t(std::floor(freeze_ratio_ * double(entries())));
}

void MemoryBank::check_entry(int64_t e, const char* what) const {
  MNEMO_CHECK(e >= 0 && e < entries(), "bank {}: entry {} is out of range [0, {})", what, e,
              entries());
}

std::vector<int32_t> MemoryBank::entry(int64_t e) const {
  check_entry(e, "entry");
  std::vector<int32_t> out;
  for (int64_t l = 0; l < length_; ++l) {
    const int32_t tok = tokens_[size_t(e * length_ + l)];
    if (tok < 0) break;
    out.push_back(tok);
  }
  return out;
}

bool MemoryBank::is_free(int64_t e) const {
  check_entry(e, "is_free");
  return tokens_[size_t(e * length_)] < 0;
}

void MemoryBank::set(int64_t e, const std::vector<int32_t>& tokens) {
  check_entry(e, "set");
  MNEMO_CHECK(int64_t(tokens.size()) <= length_,
              "bank set: entry {} has {} tokens, more than the entry length {}", e, tokens.size(),
              length_);
  for (size_t l = 0; l < tokens.size(); ++l) {
    MNEMO_CHECK(tokens[l] >= 0, "bank set: entry {} token {} is negative ({})", e, l, tokens[l]);
  }
  int32_t* row = tokens_.data() + e * length_;
  std::fill(row, row + length_, -1);
  std::copy(tokens.begin(), tokens.end(), row);
  written_[size_t(e)] = ++clock_;
  ++version_;
}

void MemoryBank::clear(int64_t e) {
  set(e, {});
}

std::vector<int64_t> MemoryBank::choose_slots(int64_t count, BankPolicy policy,
                                              const Similarity& similarity) const {
  const int64_t first = frozen(), open = entries() - first;
  MNEMO_CHECK(count >= 0 && count <= open,
              "bank add: {} new entries, but only {} entries are not frozen (freeze_ratio {})",
              count, open, freeze_ratio_);
  MNEMO_CHECK(policy != BankPolicy::similar || similarity,
              "bank add: the 'similar' policy needs a similarity function");
  std::vector<int64_t> chosen;
  std::vector<char> taken(size_t(entries()), 0);
  // Free slots first, in index order, whatever the policy.
  for (int64_t e = first; e < entries() && int64_t(chosen.size()) < count; ++e) {
    if (is_free(e)) {
      chosen.push_back(e);
      taken[size_t(e)] = 1;
    }
  }
  if (int64_t(chosen.size()) == count) return chosen;
  if (policy == BankPolicy::similar) {
    for (int64_t k = int64_t(chosen.size()); k < count; ++k) {
      int64_t best = -1;
      double best_score = -std::numeric_limits<double>::infinity();
      for (int64_t e = first; e < entries(); ++e) {
        if (taken[size_t(e)]) continue;
        const double s = similarity(k, e);
        if (best < 0 || s > best_score) best = e, best_score = s;
      }
      chosen.push_back(best);
      taken[size_t(best)] = 1;
    }
    return chosen;
  }
  // fifo / lru: the smallest counter first (ties by index).
  const std::vector<int64_t>& age = policy == BankPolicy::fifo ? written_ : last_used_;
  std::vector<int64_t> order;
  for (int64_t e = first; e < entries(); ++e) {
    if (!taken[size_t(e)]) order.push_back(e);
  }
  const size_t need = size_t(count) - chosen.size();
  std::partial_sort(
      order.begin(), order.begin() + ptrdiff_t(need), order.end(), [&](int64_t a, int64_t b) {
        return age[size_t(a)] != age[size_t(b)] ? age[size_t(a)] < age[size_t(b)] : a < b;
      });
  chosen.insert(chosen.end(), order.begin(), order.begin() + ptrdiff_t(need));
  return chosen;
}

std::vector<int64_t> MemoryBank::add(const std::vector<std::vector<int32_t>>& new_entries,
                                     BankPolicy policy, const Similarity& similarity) {
  for (size_t k = 0; k < new_entries.size(); ++k) {
    MNEMO_CHECK(int64_t(new_entries[k].size()) <= length_,
                "bank add: new entry {} has {} tokens, more than the entry length {}", k,
                new_entries[k].size(), length_);
  }
  const std::vector<int64_t> slots = choose_slots(int64_t(new_entries.size()), policy, similarity);
  for (size_t k = 0; k < slots.size(); ++k) set(slots[k], new_entries[k]);
  return slots;
}

void MemoryBank::record_use(const std::vector<int64_t>& used) {
  if (used.empty()) return;
  ++clock_;
  for (int64_t e : used) {
    if (e >= 0 && e < entries()) last_used_[size_t(e)] = clock_;
  }
}

MemoryBank MemoryBank::from_rows(int64_t n, int64_t length, double freeze_ratio,
                                 std::vector<int32_t> tokens, std::vector<int64_t> written,
                                 std::vector<int64_t> last_used, int64_t clock,
                                 const std::string& source) {
  MNEMO_CHECK(n >= 1 && length >= 1, "{}: bank side {} and entry length {} must be >= 1", source, n,
              length);
  MemoryBank bank(n, length, freeze_ratio);
  const size_t N = size_t(bank.entries());
  MNEMO_CHECK(tokens.size() == N * size_t(length),
              "{}: bank tokens hold {} values, expected {} entries x {} = {}", source,
              tokens.size(), N, length, N * size_t(length));
  MNEMO_CHECK(written.size() == N && last_used.size() == N,
              "{}: bank counters hold {} and {} values, expected {}", source, written.size(),
              last_used.size(), N);
  for (size_t e = 0; e < N; ++e) {
    bool padding = false;
    for (int64_t l = 0; l < length; ++l) {
      const int32_t tok = tokens[e * size_t(length) + size_t(l)];
      MNEMO_CHECK(tok >= -1, "{}: bank entry {} holds token {} (tokens are >= 0, -1 pads)", source,
                  e, tok);
      MNEMO_CHECK(!(padding && tok >= 0),
                  "{}: bank entry {} has a token after its padding at position {}", source, e, l);
      padding = padding || tok < 0;
    }
  }
  bank.tokens_ = std::move(tokens);
  bank.written_ = std::move(written);
  bank.last_used_ = std::move(last_used);
  bank.clock_ = clock;
  bank.version_ = 1;
  return bank;
}

}  // namespace mnemo::memory

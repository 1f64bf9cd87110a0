// BpeTokenizer: the vocabulary built from merges, encoding by merge rank, and to_json.
// (Training is in bpe_train.cpp.)
//
// Encoding a text: cut it into chunks (pretokenize.h); each chunk starts as its bytes and the
// merges are applied in rank order: while some adjacent pair has a merge, take the pair of
// lowest rank and replace all its occurrences, left to right, by the merged token. Equal
// chunks encode equally, so encode() remembers the ids of each chunk it has seen in the call.
#include <queue>

#include "core/error.h"
#include "train/text/hex.h"
#include "train/text/pretokenize.h"
#include "train/text/tokenizer.h"

namespace mnemo::text {

namespace {
uint64_t pair_key(int32_t a, int32_t b) {
  return uint64_t(uint32_t(a)) << 32 | uint32_t(b);
}
}  // namespace

BpeTokenizer::BpeTokenizer(std::vector<Pair> merges) : merges_(std::move(merges)) {
  vocab_.reserve(256 + merges_.size());
  for (int i = 0; i < 256; ++i) vocab_.emplace_back(1, char(i));
  ranks_.reserve(merges_.size() * 2);
  for (size_t r = 0; r < merges_.size(); ++r) {
    auto [a, b] = merges_[r];
    const int32_t next_id = 256 + int32_t(r);
    MNEMO_CHECK(a >= 0 && a < next_id && b >= 0 && b < next_id,
                "BpeTokenizer: merge {} = ({}, {}) uses an id outside [0, {})", r, a, b, next_id);
    bool fresh = ranks_.emplace(pair_key(a, b), int32_t(r)).second;
    MNEMO_CHECK(fresh, "BpeTokenizer: merge {} = ({}, {}) repeats an earlier merge", r, a, b);
    vocab_.push_back(vocab_[size_t(a)] + vocab_[size_t(b)]);
  }
}

int32_t BpeTokenizer::rank_of(int32_t a, int32_t b) const {
  auto it = ranks_.find(pair_key(a, b));
  return it == ranks_.end() ? -1 : it->second;
}

std::string_view BpeTokenizer::token_bytes(int32_t id) const {
  MNEMO_CHECK(id >= 0 && id < vocab_size(), "bpe tokenizer: id {} is outside [0, {})", id,
              vocab_size());
  if (id == eos_id()) return kEndOfText;
  return vocab_[size_t(id)];
}

void BpeTokenizer::encode_chunk(std::string_view chunk, std::vector<int32_t>& out,
                                int algorithm) const {
  const size_t n = chunk.size();
  if (algorithm == 0) algorithm = n <= 32 ? 1 : 2;
  std::vector<int32_t> sym(n);
  for (size_t i = 0; i < n; ++i) sym[i] = static_cast<unsigned char>(chunk[i]);

  if (algorithm == 1) {
    // Rescan: O(L) per merge applied, fine for word-sized chunks.
    while (sym.size() > 1) {
      int32_t best = -1;
      for (size_t i = 0; i + 1 < sym.size(); ++i) {
        int32_t r = rank_of(sym[i], sym[i + 1]);
        if (r >= 0 && (best < 0 || r < best)) best = r;
      }
      if (best < 0) break;
      auto [a, b] = merges_[size_t(best)];
      size_t w = 0;
      for (size_t i = 0; i < sym.size(); ++i) {
        if (i + 1 < sym.size() && sym[i] == a && sym[i + 1] == b) {
          sym[w++] = 256 + best;
          ++i;
        } else {
          sym[w++] = sym[i];
        }
      }
      sym.resize(w);
    }
    out.insert(out.end(), sym.begin(), sym.end());
    return;
  }

  // Heap over a doubly linked list of symbols: entries (rank, position of the left symbol),
  // smallest first, so all occurrences of the lowest rank go left to right, as above. An
  // entry is stale once either symbol has changed; it is then skipped.
  struct Entry {
    int32_t rank;
    int32_t pos;
    int32_t a, b;
    bool operator>(const Entry& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::vector<int32_t> prev(n), next(n);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = int32_t(i) - 1;
    next[i] = i + 1 < n ? int32_t(i + 1) : -1;
  }
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
  auto push = [&](int32_t pos) {
    if (pos < 0 || next[size_t(pos)] < 0) return;
    int32_t a = sym[size_t(pos)], b = sym[size_t(next[size_t(pos)])];
    int32_t r = rank_of(a, b);
    if (r >= 0) heap.push({r, pos, a, b});
  };
  for (size_t i = 0; i + 1 < n; ++i) push(int32_t(i));
  std::vector<char> alive(n, 1);
  while (!heap.empty()) {
    Entry e = heap.top();
    heap.pop();
    const size_t p = size_t(e.pos);
    if (!alive[p] || next[p] < 0 || sym[p] != e.a || sym[size_t(next[p])] != e.b) continue;
    const size_t q = size_t(next[p]);
    sym[p] = 256 + e.rank;
    alive[q] = 0;
    next[p] = next[q];
    if (next[q] >= 0) prev[size_t(next[q])] = int32_t(p);
    push(prev[p]);
    push(int32_t(p));
  }
  for (int32_t i = n ? 0 : -1; i >= 0; i = next[size_t(i)]) out.push_back(sym[size_t(i)]);
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view bytes) const {
  std::vector<int32_t> out;
  out.reserve(bytes.size() / 2 + 16);
  // chunk -> (offset, length) of its ids in out; views point into `bytes`, valid for the call.
  std::unordered_map<std::string_view, std::pair<size_t, size_t>> seen;
  for_each_chunk(bytes, [&](std::string_view chunk) {
    if (chunk.size() == 1) {
      out.push_back(static_cast<unsigned char>(chunk[0]));
      return;
    }
    auto it = seen.find(chunk);
    if (it != seen.end()) {
      auto [offset, length] = it->second;
      for (size_t k = 0; k < length; ++k) out.push_back(out[offset + k]);
      return;
    }
    size_t offset = out.size();
    encode_chunk(chunk, out);
    seen.emplace(chunk, std::make_pair(offset, out.size() - offset));
  });
  return out;
}

nlohmann::json BpeTokenizer::to_json() const {
  nlohmann::json merges = nlohmann::json::array();
  for (auto [a, b] : merges_) merges.push_back({a, b});
  nlohmann::json vocab = nlohmann::json::object();
  for (size_t id = 256; id < vocab_.size(); ++id)
    vocab[std::to_string(id)] = hex_encode(vocab_[id]);
  return {{"type", "bpe"},     {"version", 1},       {"vocab_size", vocab_size()},
          {"eos", kEndOfText}, {"eos_id", eos_id()}, {"pretokenizer", "mnemo-v1"},
          {"merges", merges},  {"vocab", vocab}};
}

}  // namespace mnemo::text

// BPE training (BpeTokenizer::train): learn merges from a corpus.
//
//   1. Cut every document into chunks (pretokenize.h) and count each distinct chunk ("word").
//      Merges never cross chunk boundaries.
//   2. Count every adjacent symbol pair over all words, weighted by word count, and remember
//      which words contain each pair.
//   3. Repeat until the vocabulary is full: take the most frequent pair (a, b) (ties: the
//      smallest (a, b)), give it the next id N, and rewrite the words that contain it,
//      replacing occurrences left to right. Only those words' pairs change, so only they are
//      re-counted (their old pairs subtracted, their new pairs added): the counts are kept
//      up to date incrementally instead of being recomputed over the corpus per merge.
//
// The most frequent pair is found with a max-heap of (count, pair) entries; when a count
// changes a new entry is pushed and the old one becomes stale (its count no longer matches
// the table), and is skipped when it reaches the top ("lazy deletion").
#include <algorithm>
#include <queue>

#include "core/error.h"
#include "train/text/pretokenize.h"
#include "train/text/tokenizer.h"

namespace mnemo::text {

namespace {

uint64_t pair_key(int32_t a, int32_t b) {
  return uint64_t(uint32_t(a)) << 32 | uint32_t(b);
}

struct Word {
  std::vector<int32_t> symbols;
  int64_t count = 0;
};

std::vector<Word> count_words(const std::vector<std::string>& documents) {
  std::unordered_map<std::string_view, int64_t> counts;
  for (const std::string& doc : documents) {
    for_each_chunk(doc, [&](std::string_view chunk) { ++counts[chunk]; });
  }
  std::vector<Word> words;
  words.reserve(counts.size());
  for (const auto& [chunk, count] : counts) {
    if (chunk.size() < 2) continue;  // a single byte has no pair to merge
    Word w;
    w.count = count;
    for (unsigned char c : chunk) w.symbols.push_back(c);
    words.push_back(std::move(w));
  }
  return words;
}

struct HeapEntry {
  int64_t count;
  uint64_t key;
  // Max-heap order: larger count first, then the smaller pair.
  bool operator<(const HeapEntry& o) const {
    return count != o.count ? count < o.count : key > o.key;
  }
};

class PairCounter {
 public:
  explicit PairCounter(std::vector<Word> words) : words_(std::move(words)) {
    visited_.assign(words_.size(), -1);
    for (size_t w = 0; w < words_.size(); ++w) {
      add_word(int32_t(w), +1, /*new_id=*/-1);
    }
    for (const auto& [key, count] : counts_) heap_.push({count, key});
    changed_.clear();
  }

  // The most frequent pair with a positive count, or false if none is left.
  bool best(uint64_t& key) {
    while (!heap_.empty()) {
      HeapEntry e = heap_.top();
      auto it = counts_.find(e.key);
      if (it == counts_.end() || it->second != e.count || e.count <= 0) {
        heap_.pop();  // stale
        continue;
      }
      key = e.key;
      return true;
    }
    return false;
  }

  // Replaces every occurrence of the pair `key` by new_id and updates the counts.
  void merge(uint64_t key, int32_t new_id) {
    const int32_t a = int32_t(key >> 32), b = int32_t(key & 0xffffffffu);
    std::vector<int32_t> containing = std::move(where_[key]);
    where_.erase(key);
    for (int32_t w : containing) {
      if (visited_[size_t(w)] == new_id) continue;  // listed twice
      visited_[size_t(w)] = new_id;
      std::vector<int32_t>& s = words_[size_t(w)].symbols;
      bool found = false;
      for (size_t i = 0; i + 1 < s.size() && !found; ++i) found = s[i] == a && s[i + 1] == b;
      if (!found) continue;  // a stale listing: an earlier merge removed the pair
      add_word(w, -1, -1);
      size_t out = 0;
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          s[out++] = new_id;
          ++i;
        } else {
          s[out++] = s[i];
        }
      }
      s.resize(out);
      add_word(w, +1, new_id);
    }
    counts_.erase(key);
    std::sort(changed_.begin(), changed_.end());
    changed_.erase(std::unique(changed_.begin(), changed_.end()), changed_.end());
    for (uint64_t k : changed_) {
      auto it = counts_.find(k);
      if (it != counts_.end() && it->second > 0) heap_.push({it->second, k});
    }
    changed_.clear();
  }

 private:
  // Adds sign * count for each adjacent pair of word w. Pairs containing new_id are new to
  // this word, so the word is listed under them (other pairs already list it).
  void add_word(int32_t w, int sign, int32_t new_id) {
    const Word& word = words_[size_t(w)];
    const auto& s = word.symbols;
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      uint64_t key = pair_key(s[i], s[i + 1]);
      int64_t& c = counts_[key];
      c += sign * word.count;
      changed_.push_back(key);
      if (sign > 0 && (new_id < 0 || s[i] == new_id || s[i + 1] == new_id)) {
        auto& list = where_[key];
        if (list.empty() || list.back() != w) list.push_back(w);
      }
    }
  }

  std::vector<Word> words_;
  std::unordered_map<uint64_t, int64_t> counts_;              // pair -> weighted count
  std::unordered_map<uint64_t, std::vector<int32_t>> where_;  // pair -> words (may be stale)
  std::priority_queue<HeapEntry> heap_;
  std::vector<uint64_t> changed_;  // pairs whose count changed in the current merge
  std::vector<int32_t> visited_;   // word -> last merge id that rewrote it
};

}  // namespace

BpeTokenizer BpeTokenizer::train(const std::vector<std::string>& documents, int32_t vocab_size) {
  MNEMO_CHECK(vocab_size >= 257,
              "BpeTokenizer::train: vocab_size {} is too small (256 bytes + eos need 257)",
              vocab_size);
  const int32_t num_merges = vocab_size - 257;
  PairCounter counter(count_words(documents));
  std::vector<Pair> merges;
  merges.reserve(size_t(num_merges));
  for (int32_t r = 0; r < num_merges; ++r) {
    uint64_t key = 0;
    if (!counter.best(key)) break;  // every word is a single token already
    merges.emplace_back(int32_t(key >> 32), int32_t(key & 0xffffffffu));
    counter.merge(key, 256 + r);
  }
  return BpeTokenizer(std::move(merges));
}

}  // namespace mnemo::text

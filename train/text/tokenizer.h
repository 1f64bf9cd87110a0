// Tokenizers: text bytes <-> token ids.
//
// Two kinds, both byte-level (every byte string encodes, and decode(encode(s)) == s exactly,
// invalid UTF-8 and NUL bytes included):
//
//   ByteTokenizer  ids 0..255 are the bytes themselves, 256 is "<|endoftext|>" (vocab 257).
//   BpeTokenizer   byte-level BPE (Sennrich et al. 2016, as in GPT-2): ids 0..255 are the
//                  bytes, id 256 + r is the token made by merge r (merges in rank order),
//                  and "<|endoftext|>" is the last id (vocab = 256 + merges + 1).
//
// "<|endoftext|>" (eos_id(), always the last id) separates documents in token shards. encode()
// never produces it (the text "<|endoftext|>" encodes as ordinary bytes); decode() writes it
// as that text.
//
// ---- File format (JSON, see docs/tokenizer.md) ----
//
//   {"type": "byte" | "bpe", "version": 1, "vocab_size": N,
//    "eos": "<|endoftext|>", "eos_id": N - 1,
//    "pretokenizer": "mnemo-v1",                       (bpe only: the chunk rule, pretokenize.h)
//    "merges": [[a, b], ...],                          (bpe only: id pairs, in rank order)
//    "vocab": {"256": "<hex of the token's bytes>", ...}}   (bpe only: ids >= 256, readable
//                                                          form; checked against the merges)
//
// Everything is validated on load; errors name the file and what is malformed.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace mnemo::text {

inline constexpr std::string_view kEndOfText = "<|endoftext|>";

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Token ids of the bytes (never eos). Thread-safe.
  virtual std::vector<int32_t> encode(std::string_view bytes) const = 0;
  // The bytes of the ids concatenated; eos becomes "<|endoftext|>". Throws naming an id
  // outside [0, vocab_size).
  std::string decode(std::span<const int32_t> ids) const;
  // The bytes of one token (eos: "<|endoftext|>").
  virtual std::string_view token_bytes(int32_t id) const = 0;

  virtual int32_t vocab_size() const = 0;
  int32_t eos_id() const { return vocab_size() - 1; }
  virtual std::string type() const = 0;  // "byte" or "bpe"

  virtual nlohmann::json to_json() const = 0;
  // Writes to_json() to path atomically (path.tmp, then rename over path).
  void save(const std::string& path) const;
  static std::unique_ptr<Tokenizer> load(const std::string& path);
  // source_name (a file name, or "<json>") is used in error messages.
  static std::unique_ptr<Tokenizer> from_json(const nlohmann::json& json,
                                              const std::string& source_name);
};

class ByteTokenizer final : public Tokenizer {
 public:
  ByteTokenizer();
  std::vector<int32_t> encode(std::string_view bytes) const override;
  std::string_view token_bytes(int32_t id) const override;
  int32_t vocab_size() const override { return 257; }
  std::string type() const override { return "byte"; }
  nlohmann::json to_json() const override;

 private:
  std::string bytes_;  // the 256 byte values in order, so token_bytes can return views
};

class BpeTokenizer final : public Tokenizer {
 public:
  using Pair = std::pair<int32_t, int32_t>;

  // merges[r] = (a, b) makes token 256 + r; a and b must be ids < 256 + r.
  explicit BpeTokenizer(std::vector<Pair> merges);

  // Learns vocab_size - 257 merges from the documents (bpe_train.cpp): each document is cut
  // into chunks (pretokenize.h), then the most frequent adjacent pair over all chunks is
  // merged, repeatedly; ties go to the smallest (a, b). Stops early if no pair is left.
  // vocab_size >= 257.
  static BpeTokenizer train(const std::vector<std::string>& documents, int32_t vocab_size);

  std::vector<int32_t> encode(std::string_view bytes) const override;
  std::string_view token_bytes(int32_t id) const override;
  int32_t vocab_size() const override { return 256 + int32_t(merges_.size()) + 1; }
  std::string type() const override { return "bpe"; }
  nlohmann::json to_json() const override;

  const std::vector<Pair>& merges() const { return merges_; }
  // Encodes one chunk by applying merges in rank order (appends to out). Two algorithms give
  // the same result: a rescanning loop for short chunks and a heap over a linked list, which
  // is O(L log L), for long ones; `algorithm` 0 = automatic, 1 = rescan, 2 = heap (tests).
  void encode_chunk(std::string_view chunk, std::vector<int32_t>& out, int algorithm = 0) const;

 private:
  int32_t rank_of(int32_t a, int32_t b) const;  // merge rank of (a, b), or -1

  std::vector<Pair> merges_;
  std::vector<std::string> vocab_;               // bytes of every id except eos
  std::unordered_map<uint64_t, int32_t> ranks_;  // (a << 32 | b) -> merge rank
};

}  // namespace mnemo::text

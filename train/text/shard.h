// Token shards: a flat file of token ids, read back by memory-mapping it.
//
// File layout (all integers little-endian):
//
//   offset  size  field
//        0     4  magic "MNTK"
//        4     4  u32 version = 1
//        8     4  u32 bytes per id: 2 (uint16, when vocab_size <= 65536) or 4 (uint32)
//       12     4  u32 reserved = 0
//       16     8  u64 count: number of ids
//       24     .  count ids, each `bytes per id` wide
//
// A TokenShard maps the file read-only (mmap), so opening a shard of any size costs nothing
// and the operating system pages ids in as windows are read. Copies of a TokenShard share
// one mapping, which is unmapped when the last copy goes.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace mnemo::text {

inline constexpr int64_t kShardHeaderBytes = 24;

// Writes ids (each in [0, vocab_size)) to path atomically (path.tmp, then rename).
void write_shard(const std::string& path, std::span<const int32_t> ids, int32_t vocab_size);

class TokenShard {
 public:
  // Maps path; throws naming the file if it is missing, not a shard, of another version, or
  // its length disagrees with the header's count.
  explicit TokenShard(const std::string& path);

  int64_t size() const { return count_; }
  int bytes_per_id() const { return bytes_per_id_; }
  const std::string& path() const { return path_; }

  // Id i (checked: 0 <= i < size()).
  int32_t operator[](int64_t i) const;
  // out[k] = id (begin + k) for k < n; checked: [begin, begin + n) within the shard.
  void copy_range(int64_t begin, int64_t n, int64_t* out) const;

 private:
  struct Mapping;
  std::shared_ptr<const Mapping> mapping_;
  const unsigned char* ids_ = nullptr;  // first id, inside the mapping
  int64_t count_ = 0;
  int bytes_per_id_ = 2;
  std::string path_;
};

}  // namespace mnemo::text

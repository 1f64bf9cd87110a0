// Token shard writing and memory-mapped reading (layout in shard.h).
#include "train/text/shard.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "core/error.h"

namespace mnemo::text {

static_assert(std::endian::native == std::endian::little,
              "token shards are little-endian and read in place");

namespace {

constexpr char kMagic[4] = {'M', 'N', 'T', 'K'};
constexpr uint32_t kVersion = 1;

template <typename T>
void put(std::vector<unsigned char>& out, T value) {
  unsigned char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out.insert(out.end(), bytes, bytes + sizeof(T));
}

template <typename T>
T get(const unsigned char* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));
  return value;
}

}  // namespace

void write_shard(const std::string& path, std::span<const int32_t> ids, int32_t vocab_size) {
  MNEMO_CHECK(vocab_size > 0, "write_shard '{}': vocab_size must be positive, got {}", path,
              vocab_size);
  const uint32_t width = vocab_size <= 65536 ? 2 : 4;
  std::vector<unsigned char> data;
  data.reserve(size_t(kShardHeaderBytes) + ids.size() * width);
  data.insert(data.end(), kMagic, kMagic + 4);
  put<uint32_t>(data, kVersion);
  put<uint32_t>(data, width);
  put<uint32_t>(data, 0);
  put<uint64_t>(data, ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    int32_t id = ids[i];
    MNEMO_CHECK(id >= 0 && id < vocab_size,
                "write_shard '{}': id {} at position {} is outside [0, {})", path, id, i,
                vocab_size);
    if (width == 2) {
      put<uint16_t>(data, uint16_t(id));
    } else {
      put<uint32_t>(data, uint32_t(id));
    }
  }
  const std::string tmp = path + ".tmp";
  {
    std::ofstream file(tmp, std::ios::binary | std::ios::trunc);
    MNEMO_CHECK(file.good(), "write_shard: cannot open '{}' for writing", tmp);
    file.write(reinterpret_cast<const char*>(data.data()), std::streamsize(data.size()));
    file.flush();
    MNEMO_CHECK(file.good(), "write_shard: writing '{}' failed", tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  MNEMO_CHECK(!ec, "write_shard: cannot rename '{}' to '{}': {}", tmp, path, ec.message());
}

struct TokenShard::Mapping {
  void* address = nullptr;
  size_t length = 0;
  ~Mapping() {
    if (address) munmap(address, length);
  }
};

TokenShard::TokenShard(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  MNEMO_CHECK(fd >= 0, "token shard '{}': cannot open it: {}", path, std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("token shard '{}': not a regular file", path);
  }
  const auto length = size_t(st.st_size);
  if (length < size_t(kShardHeaderBytes)) {
    ::close(fd);
    fail("token shard '{}': {} bytes is shorter than the {}-byte header (truncated?)", path, length,
         kShardHeaderBytes);
  }
  void* address = mmap(nullptr, length, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);  // the mapping keeps the file open
  MNEMO_CHECK(address != MAP_FAILED, "token shard '{}': mmap failed: {}", path,
              std::strerror(errno));
  auto mapping = std::make_shared<Mapping>();
  mapping->address = address;
  mapping->length = length;
  mapping_ = mapping;

  const auto* bytes = static_cast<const unsigned char*>(address);
  MNEMO_CHECK(std::memcmp(bytes, kMagic, 4) == 0,
              "token shard '{}': bad magic (not a mnemo token shard)", path);
  const auto version = get<uint32_t>(bytes + 4);
  MNEMO_CHECK(version == kVersion, "token shard '{}': version {} (this build reads {})", path,
              version, kVersion);
  const auto width = get<uint32_t>(bytes + 8);
  MNEMO_CHECK(width == 2 || width == 4, "token shard '{}': {} bytes per id (expected 2 or 4)", path,
              width);
  const auto count = get<uint64_t>(bytes + 16);
  const uint64_t payload = length - uint64_t(kShardHeaderBytes);
  MNEMO_CHECK(count <= payload / width && count * width == payload,
              "token shard '{}': header says {} ids ({} bytes) but the file holds {} bytes after "
              "the header (truncated or corrupt)",
              path, count, count * width, payload);
  ids_ = bytes + kShardHeaderBytes;
  count_ = int64_t(count);
  bytes_per_id_ = int(width);
}

int32_t TokenShard::operator[](int64_t i) const {
  MNEMO_CHECK(i >= 0 && i < count_, "token shard '{}': index {} is outside [0, {})", path_, i,
              count_);
  if (bytes_per_id_ == 2) return get<uint16_t>(ids_ + 2 * i);
  return int32_t(get<uint32_t>(ids_ + 4 * i));
}

void TokenShard::copy_range(int64_t begin, int64_t n, int64_t* out) const {
  MNEMO_CHECK(begin >= 0 && n >= 0 && begin <= count_ - n,
              "token shard '{}': range [{}, {}) is outside [0, {})", path_, begin, begin + n,
              count_);
  if (bytes_per_id_ == 2) {
    const unsigned char* p = ids_ + 2 * begin;
    for (int64_t k = 0; k < n; ++k) out[k] = get<uint16_t>(p + 2 * k);
  } else {
    const unsigned char* p = ids_ + 4 * begin;
    for (int64_t k = 0; k < n; ++k) out[k] = get<uint32_t>(p + 4 * k);
  }
}

}  // namespace mnemo::text

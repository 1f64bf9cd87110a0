// safetensors reader and writer (format in safetensors.h).
#include "train/io/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/ops/view.h"
#include "train/io/config.h"
#include "train/io/files.h"

namespace mnemo::io {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian host would need byte swaps");

using nlohmann::json;
using ordered_json = nlohmann::ordered_json;

constexpr uint64_t kMaxHeaderBytes = 100u << 20;  // the reference implementation's limit
constexpr size_t kMaxRank = 64;

struct DTypeName {
  DType dtype;
  const char* name;
};
constexpr DTypeName kDTypeNames[] = {
    {DType::f32, "F32"}, {DType::f64, "F64"}, {DType::bf16, "BF16"},   {DType::f16, "F16"},
    {DType::i32, "I32"}, {DType::i64, "I64"}, {DType::boolean, "BOOL"}};
static_assert(std::size(kDTypeNames) == kNumDTypes, "every DType needs a safetensors name");

// An open file read with pread; closes itself.
class InputFile {
 public:
  explicit InputFile(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    MNEMO_CHECK(fd_ >= 0, "{}: cannot open: {}", path, std::strerror(errno));
    struct stat info {};
    if (::fstat(fd_, &info) != 0 || !S_ISREG(info.st_mode)) {
      ::close(fd_);
      fail("{}: not a regular file", path);
    }
    size_ = uint64_t(info.st_size);
  }
  ~InputFile() { ::close(fd_); }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  uint64_t size() const { return size_; }

  void read_at(uint64_t offset, void* dst, uint64_t bytes) const {
    char* out = static_cast<char*>(dst);
    while (bytes > 0) {
      ssize_t n = ::pread(fd_, out, bytes, off_t(offset));
      if (n < 0 && errno == EINTR) continue;
      MNEMO_CHECK(n > 0, "{}: read failed at byte {}: {}", path_, offset,
                  n == 0 ? "unexpected end of file" : std::strerror(errno));
      out += n;
      offset += uint64_t(n);
      bytes -= uint64_t(n);
    }
  }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

struct Header {
  std::vector<SafetensorsEntry> entries;  // sorted by offset
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // 8 + N
};

DType parse_dtype(const json& value, const std::string& where) {
  MNEMO_CHECK(value.is_string(), "{}: 'dtype' must be a string", where);
  const std::string& name = value.get_ref<const std::string&>();
  for (const DTypeName& d : kDTypeNames) {
    if (name == d.name) return d.dtype;
  }
  fail("{}: unsupported dtype '{}' (supported: F32, F64, BF16, F16, I32, I64, BOOL)", where, name);
}

uint64_t parse_u64(const json& value, const std::string& where, std::string_view what) {
  MNEMO_CHECK(
      value.is_number_unsigned() || (value.is_number_integer() && value.get<int64_t>() >= 0),
      "{}: {} must be a non-negative integer, got {}", where, what, value.dump());
  return value.get<uint64_t>();
}

SafetensorsEntry parse_entry(const std::string& name, const json& info, const std::string& path) {
  std::string where = path + ": tensor '" + name + "'";
  MNEMO_CHECK(info.is_object(), "{}: header entry must be an object", where);
  for (const auto& [key, value] : info.items()) {
    MNEMO_CHECK(key == "dtype" || key == "shape" || key == "data_offsets",
                "{}: unknown header field '{}'", where, key);
  }
  MNEMO_CHECK(info.contains("dtype") && info.contains("shape") && info.contains("data_offsets"),
              "{}: header entry needs dtype, shape and data_offsets", where);
  SafetensorsEntry entry;
  entry.name = name;
  entry.dtype = parse_dtype(info["dtype"], where);

  const json& shape = info["shape"];
  MNEMO_CHECK(shape.is_array() && shape.size() <= kMaxRank,
              "{}: 'shape' must be an array of at most {} sizes", where, kMaxRank);
  uint64_t numel = 1;
  bool overflow = false;
  for (const json& size : shape) {
    uint64_t n = parse_u64(size, where, "a shape entry");
    MNEMO_CHECK(n <= uint64_t(INT64_MAX), "{}: shape entry {} is too large", where, n);
    overflow |= __builtin_mul_overflow(numel, n, &numel);
    entry.shape.push_back(int64_t(n));
  }

  const json& offsets = info["data_offsets"];
  MNEMO_CHECK(offsets.is_array() && offsets.size() == 2, "{}: 'data_offsets' must be [begin, end]",
              where);
  entry.begin = parse_u64(offsets[0], where, "data_offsets[0]");
  entry.end = parse_u64(offsets[1], where, "data_offsets[1]");
  MNEMO_CHECK(entry.begin <= entry.end, "{}: data_offsets [{}, {}] end before they begin", where,
              entry.begin, entry.end);
  uint64_t bytes = 0;
  overflow |= __builtin_mul_overflow(numel, uint64_t(dtype_size(entry.dtype)), &bytes);
  MNEMO_CHECK(!overflow && bytes == entry.end - entry.begin,
              "{}: shape {} of {} needs {} bytes but data_offsets [{}, {}] span {}", where,
              shape.dump(), info["dtype"].get<std::string>(),
              overflow ? std::string("more than 2^64") : std::to_string(bytes), entry.begin,
              entry.end, entry.end - entry.begin);
  return entry;
}

Header read_header(const InputFile& file, const std::string& path) {
  MNEMO_CHECK(file.size() >= 8,
              "{}: not a safetensors file: {} bytes, shorter than the 8-byte header length", path,
              file.size());
  uint64_t header_bytes = 0;
  file.read_at(0, &header_bytes, 8);
  MNEMO_CHECK(header_bytes <= file.size() - 8,
              "{}: header length {} runs past the end of the file ({} bytes; truncated or not "
              "a safetensors file)",
              path, header_bytes, file.size());
  MNEMO_CHECK(header_bytes <= kMaxHeaderBytes, "{}: header length {} exceeds the {} byte limit",
              path, header_bytes, kMaxHeaderBytes);
  std::string text(header_bytes, '\0');
  file.read_at(8, text.data(), header_bytes);
  MNEMO_CHECK(!text.empty() && text[0] == '{', "{}: header does not start with a JSON object",
              path);
  json header = parse_json(text, path + ": header");
  MNEMO_CHECK(header.is_object(), "{}: header must be a JSON object", path);

  Header result;
  result.data_start = 8 + header_bytes;
  uint64_t data_bytes = file.size() - result.data_start;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") {
      MNEMO_CHECK(info.is_object(), "{}: __metadata__ must be an object of strings", path);
      for (const auto& [key, value] : info.items()) {
        MNEMO_CHECK(value.is_string(), "{}: __metadata__ '{}' must be a string, got {}", path, key,
                    value.dump());
        result.metadata[key] = value.get<std::string>();
      }
      continue;
    }
    SafetensorsEntry entry = parse_entry(name, info, path);
    MNEMO_CHECK(entry.end <= data_bytes,
                "{}: tensor '{}': data_offsets [{}, {}] run past the end of the data ({} bytes; "
                "file truncated?)",
                path, name, entry.begin, entry.end, data_bytes);
    result.entries.push_back(std::move(entry));
  }

  // The byte ranges must tile [0, data_bytes): sorted by offset, each starts where the last
  // one ended.
  std::sort(result.entries.begin(), result.entries.end(),
            [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
              return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
            });
  uint64_t expected = 0;
  const SafetensorsEntry* previous = nullptr;
  for (const SafetensorsEntry& entry : result.entries) {
    MNEMO_CHECK(entry.begin >= expected,
                "{}: tensor '{}': data_offsets [{}, {}] overlap tensor '{}' [{}, {}]", path,
                entry.name, entry.begin, entry.end, previous ? previous->name : "",
                previous ? previous->begin : 0, previous ? previous->end : 0);
    MNEMO_CHECK(entry.begin == expected,
                "{}: tensor '{}': data starts at {} but the previous tensor ends at {} (a gap)",
                path, entry.name, entry.begin, expected);
    expected = entry.end;
    previous = &entry;
  }
  MNEMO_CHECK(expected == data_bytes,
              "{}: {} bytes of trailing data after the last tensor (the data region is {} "
              "bytes, the tensors cover {})",
              path, data_bytes - expected, data_bytes, expected);
  return result;
}

}  // namespace

std::string_view safetensors_dtype_name(DType dtype) {
  for (const DTypeName& d : kDTypeNames) {
    if (d.dtype == dtype) return d.name;
  }
  fail("safetensors: dtype {} has no safetensors name", dtype);
}

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  // Contiguous CPU copies (a no-op for tensors that already are), and the header.
  std::vector<Tensor> host;
  host.reserve(tensors.size());
  ordered_json header = ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    MNEMO_CHECK(!name.empty() && name != "__metadata__",
                "save_safetensors: {}: invalid tensor name '{}'", path, name);
    MNEMO_CHECK(!header.contains(name), "save_safetensors: {}: duplicate tensor name '{}'", path,
                name);
    MNEMO_CHECK(tensor.defined(), "save_safetensors: {}: tensor '{}' is undefined", path, name);
    Tensor t = core::contiguous(core::to(tensor, Device::cpu()));
    uint64_t bytes = uint64_t(t.numel()) * t.element_size();
    header[name] = {{"dtype", safetensors_dtype_name(t.dtype())},
                    {"shape", t.shape()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    host.push_back(std::move(t));
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {  // e.g. a name that is not valid UTF-8
    fail("save_safetensors: {}: cannot encode header: {}", path, e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');

  AtomicFileWriter writer(path);
  uint64_t header_bytes = text.size();
  writer.write(&header_bytes, 8);
  writer.write(text);
  for (const Tensor& t : host) {
    if (t.numel() > 0) writer.write(t.data_ptr(), size_t(t.numel()) * t.element_size());
  }
  writer.commit();
}

std::vector<SafetensorsEntry> read_safetensors_header(const std::string& path) {
  InputFile file(path);
  return read_header(file, path).entries;
}

std::map<std::string, std::string> read_safetensors_metadata(const std::string& path) {
  InputFile file(path);
  return read_header(file, path).metadata;
}

NamedTensors load_safetensors(const std::string& path) {
  InputFile file(path);
  Header header = read_header(file, path);
  NamedTensors result;
  result.reserve(header.entries.size());
  for (const SafetensorsEntry& entry : header.entries) {
    Tensor t = Tensor::empty(entry.shape, entry.dtype);
    uint64_t bytes = entry.end - entry.begin;
    if (bytes > 0) file.read_at(header.data_start + entry.begin, t.data_ptr(), bytes);
    if (entry.dtype == DType::boolean) {
      const uint8_t* values = static_cast<const uint8_t*>(t.data_ptr());
      for (uint64_t i = 0; i < bytes; ++i) {
        MNEMO_CHECK(values[i] <= 1, "{}: tensor '{}': BOOL element {} has byte value {}", path,
                    entry.name, i, values[i]);
      }
    }
    result.emplace_back(entry.name, std::move(t));
  }
  return result;
}

}  // namespace mnemo::io

// Bank files and text banks (see bank_file.h).
#include "train/lib/bank_file.h"

#include <charconv>
#include <fstream>
#include <map>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/ops/factory.h"
#include "train/io/files.h"
#include "train/io/safetensors.h"

namespace mnemo::train {

using memory::MemoryBank;

namespace {

constexpr std::string_view kBankFormat = "mnemo-bank";

// The metadata value of `key`, which must be present.
const std::string& metadata_value(const std::map<std::string, std::string>& metadata,
                                  const std::string& key, const std::string& path) {
  const auto it = metadata.find(key);
  MNEMO_CHECK(it != metadata.end(), "{}: bank metadata has no '{}'", path, key);
  return it->second;
}

// A whole-string number of the metadata (an integer, or a double).
template <typename T>
T metadata_number(const std::map<std::string, std::string>& metadata, const std::string& key,
                  const std::string& path) {
  const std::string& text = metadata_value(metadata, key, path);
  T value{};
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  MNEMO_CHECK(error == std::errc() && end == text.data() + text.size(),
              "{}: bank metadata '{}' is '{}', not a number", path, key, text);
  return value;
}

// The tensor `name` of a bank file, with its dtype and shape checked.
const Tensor& bank_tensor(const io::NamedTensors& tensors, const std::string& name, DType dtype,
                          const Shape& shape, const std::string& path) {
  for (const auto& [tensor_name, tensor] : tensors) {
    if (tensor_name != name) continue;
    MNEMO_CHECK(tensor.dtype() == dtype && tensor.shape() == shape,
                "{}: bank tensor '{}' is {} {}, expected {} {}", path, name, tensor.dtype(),
                shape_str(tensor.shape()), dtype, shape_str(shape));
    return tensor;
  }
  fail("{}: bank file has no tensor '{}'", path, name);
}

MemoryBank load_bank_checked(const std::string& path) {
  const std::map<std::string, std::string> metadata = io::read_safetensors_metadata(path);
  const auto format = metadata.find("format");
  MNEMO_CHECK(format != metadata.end() && format->second == kBankFormat,
              "{}: not a bank file (metadata 'format' is '{}', expected '{}')", path,
              format == metadata.end() ? "" : format->second, kBankFormat);
  const auto side = metadata_number<int64_t>(metadata, "side", path);
  const auto length = metadata_number<int64_t>(metadata, "length", path);
  const auto freeze_ratio = metadata_number<double>(metadata, "freeze_ratio", path);
  // Bounded before side * side is formed; MemoryBank checks the exact limits.
  MNEMO_CHECK(side >= 1 && side <= (int64_t(1) << 20) && length >= 1,
              "{}: bank metadata 'side' ({}) and 'length' ({}) are out of range", path, side,
              length);
  const io::NamedTensors tensors = io::load_safetensors(path);
  for (const auto& [name, tensor] : tensors) {
    MNEMO_CHECK(name == "tokens" || name == "written" || name == "last_used" || name == "clock",
                "{}: unknown bank tensor '{}' (a bank file holds tokens, written, last_used, "
                "clock)",
                path, name);
  }
  const int64_t N = side * side;
  std::vector<int32_t> tokens =
      bank_tensor(tensors, "tokens", DType::i32, {N, length}, path).to_vector<int32_t>();
  std::vector<int64_t> written =
      bank_tensor(tensors, "written", DType::i64, {N}, path).to_vector<int64_t>();
  std::vector<int64_t> last_used =
      bank_tensor(tensors, "last_used", DType::i64, {N}, path).to_vector<int64_t>();
  const int64_t clock =
      bank_tensor(tensors, "clock", DType::i64, {1}, path).to_vector<int64_t>().front();
  return MemoryBank::from_rows(side, length, freeze_ratio, std::move(tokens), std::move(written),
                               std::move(last_used), clock, path);
}

// " text \r" -> "text".
std::string_view trimmed(std::string_view line) {
  const char* space = " \t\r\v\f";
  const size_t first = line.find_first_not_of(space);
  if (first == std::string_view::npos) return {};
  return line.substr(first, line.find_last_not_of(space) - first + 1);
}

}  // namespace

void save_bank(const std::string& path, const MemoryBank& bank) {
  const int64_t N = bank.entries();
  const io::NamedTensors tensors = {
      {"tokens", from_vector(bank.tokens(), {N, bank.length()})},
      {"written", from_vector(bank.written(), {N})},
      {"last_used", from_vector(bank.last_used(), {N})},
      {"clock", from_vector(std::vector<int64_t>{bank.clock()}, {1})}};
  io::save_safetensors(path, tensors,
                       {{"format", std::string(kBankFormat)},
                        {"side", std::to_string(bank.side())},
                        {"length", std::to_string(bank.length())},
                        {"freeze_ratio", fmt::format("{}", bank.freeze_ratio())}});
}

MemoryBank load_bank(const std::string& path) {
  return io::naming_file(path, [&] { return load_bank_checked(path); });
}

std::vector<std::vector<int32_t>> read_text_entries(const std::string& path,
                                                    const text::Tokenizer& tokenizer,
                                                    int64_t length, int64_t max_entries) {
  const std::string text = io::read_file(path);
  std::vector<std::vector<int32_t>> entries;
  std::string_view rest = text;
  for (int64_t line_number = 1; !rest.empty(); ++line_number) {
    const size_t end = rest.find('\n');
    const std::string_view line = trimmed(rest.substr(0, end));
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
    if (line.empty()) continue;
    MNEMO_CHECK(int64_t(entries.size()) < max_entries,
                "{}: line {}: more than the {} entries the bank can take", path, line_number,
                max_entries);
    entries.push_back(tokenizer.encode(line));
    MNEMO_CHECK(int64_t(entries.back().size()) <= length,
                "{}: line {}: {} tokens, more than the entry length {}", path, line_number,
                entries.back().size(), length);
  }
  return entries;
}

MemoryBank read_bank_text(const std::string& path, const text::Tokenizer& tokenizer, int64_t n,
                          int64_t length, double freeze_ratio) {
  MemoryBank bank(n, length, freeze_ratio);
  const auto entries = read_text_entries(path, tokenizer, length, bank.entries());
  for (size_t e = 0; e < entries.size(); ++e) bank.set(int64_t(e), entries[e]);
  return bank;
}

bool is_bank_file(const std::string& path) {
  if (path.ends_with(".safetensors")) return true;
  std::ifstream in(path, std::ios::binary);
  unsigned char head[9] = {};
  if (!in.read(reinterpret_cast<char*>(head), sizeof head)) return false;
  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | head[i];
  in.seekg(0, std::ios::end);
  const auto size = uint64_t(in.tellg());
  return head[8] == '{' && header_bytes <= size - 8;
}

MemoryBank read_bank_for_model(const std::string& path, const text::Tokenizer& tokenizer, int64_t n,
                               int64_t length, double freeze_ratio) {
  if (!is_bank_file(path)) return read_bank_text(path, tokenizer, n, length, freeze_ratio);
  MemoryBank bank = load_bank(path);
  MNEMO_CHECK(bank.side() == n && bank.length() == length,
              "{}: the bank holds {} entries of {} tokens, but the model's bank_entries is {} and "
              "entry_length {}",
              path, bank.entries(), bank.length(), n * n, length);
  for (int32_t token : bank.tokens()) {
    MNEMO_CHECK(token < tokenizer.vocab_size(),
                "{}: bank token {} is outside the tokenizer's vocabulary of {}", path, token,
                tokenizer.vocab_size());
  }
  if (bank.freeze_ratio() == freeze_ratio) return bank;
  return MemoryBank::from_rows(n, length, freeze_ratio, bank.tokens(), bank.written(),
                               bank.last_used(), bank.clock(), path);
}

}  // namespace mnemo::train

// ByteTokenizer: the identity on bytes (id = byte value), plus eos = 256.
#include "core/error.h"
#include "train/text/tokenizer.h"

namespace mnemo::text {

ByteTokenizer::ByteTokenizer() : bytes_(256, '\0') {
  for (int i = 0; i < 256; ++i) bytes_[size_t(i)] = char(i);
}

std::vector<int32_t> ByteTokenizer::encode(std::string_view bytes) const {
  std::vector<int32_t> ids(bytes.size());
  for (size_t i = 0; i < bytes.size(); ++i) ids[i] = static_cast<unsigned char>(bytes[i]);
  return ids;
}

std::string_view ByteTokenizer::token_bytes(int32_t id) const {
  MNEMO_CHECK(id >= 0 && id < vocab_size(), "byte tokenizer: id {} is outside [0, {})", id,
              vocab_size());
  if (id == eos_id()) return kEndOfText;
  return std::string_view(bytes_).substr(size_t(id), 1);
}

nlohmann::json ByteTokenizer::to_json() const {
  return {{"type", "byte"},
          {"version", 1},
          {"vocab_size", vocab_size()},
          {"eos", kEndOfText},
          {"eos_id", eos_id()}};
}

}  // namespace mnemo::text

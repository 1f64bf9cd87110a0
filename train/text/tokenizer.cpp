// What every tokenizer shares: decode, save/load, and reading the JSON file format
// (tokenizer.h) with validation that names the file and the malformed field.
#include "train/text/tokenizer.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "train/text/hex.h"

namespace mnemo::text {

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  const int32_t vocab = vocab_size();
  std::string out;
  out.reserve(ids.size() * 3);
  for (size_t i = 0; i < ids.size(); ++i) {
    int32_t id = ids[i];
    MNEMO_CHECK(id >= 0 && id < vocab,
                "tokenizer decode: id {} (at position {}) is outside [0, {})", id, i, vocab);
    out += token_bytes(id);
  }
  return out;
}

void Tokenizer::save(const std::string& path) const {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream file(tmp, std::ios::binary | std::ios::trunc);
    MNEMO_CHECK(file.good(), "tokenizer save: cannot open '{}' for writing", tmp);
    file << to_json().dump(1) << '\n';
    file.flush();
    MNEMO_CHECK(file.good(), "tokenizer save: writing '{}' failed", tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  MNEMO_CHECK(!ec, "tokenizer save: cannot rename '{}' to '{}': {}", tmp, path, ec.message());
}

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  MNEMO_CHECK(file.good(), "tokenizer file '{}': cannot open it (missing or unreadable)", path);
  std::stringstream buffer;
  buffer << file.rdbuf();
  nlohmann::json json = nlohmann::json::parse(buffer.str(), nullptr, /*allow_exceptions=*/false);
  MNEMO_CHECK(!json.is_discarded(), "tokenizer file '{}': not valid JSON", path);
  return from_json(json, path);
}

namespace {

// The value of json[key], checked to be present and of the expected kind.
const nlohmann::json& field(const nlohmann::json& json, const char* key, const std::string& src,
                            nlohmann::json::value_t kind, const char* kind_name) {
  MNEMO_CHECK(json.contains(key), "tokenizer file '{}': missing key \"{}\"", src, key);
  const nlohmann::json& value = json.at(key);
  bool ok = value.type() == kind ||
            (kind == nlohmann::json::value_t::number_integer && value.is_number_unsigned());
  MNEMO_CHECK(ok, "tokenizer file '{}': \"{}\" must be {}", src, key, kind_name);
  return value;
}

std::vector<BpeTokenizer::Pair> read_merges(const nlohmann::json& json, const std::string& src) {
  const auto& merges = field(json, "merges", src, nlohmann::json::value_t::array, "an array");
  std::vector<BpeTokenizer::Pair> out;
  out.reserve(merges.size());
  for (size_t r = 0; r < merges.size(); ++r) {
    const auto& m = merges[r];
    MNEMO_CHECK(
        m.is_array() && m.size() == 2 && m[0].is_number_integer() && m[1].is_number_integer(),
        "tokenizer file '{}': merges[{}] must be a pair of ids [a, b]", src, r);
    int64_t a = m[0].get<int64_t>(), b = m[1].get<int64_t>();
    int64_t limit = 256 + int64_t(r);
    MNEMO_CHECK(a >= 0 && a < limit && b >= 0 && b < limit,
                "tokenizer file '{}': merges[{}] = [{}, {}] uses an id outside [0, {})", src, r, a,
                b, limit);
    out.emplace_back(int32_t(a), int32_t(b));
  }
  return out;
}

// "vocab" is optional on load, but when present each entry must match the merges.
void check_vocab(const nlohmann::json& json, const BpeTokenizer& bpe, const std::string& src) {
  if (!json.contains("vocab")) return;
  const auto& vocab = json.at("vocab");
  MNEMO_CHECK(vocab.is_object(), "tokenizer file '{}': \"vocab\" must be an object", src);
  for (const auto& [key, value] : vocab.items()) {
    int64_t id = -1;
    try {
      size_t used = 0;
      id = std::stoll(key, &used);
      if (used != key.size()) id = -1;
    } catch (const std::exception&) {
    }
    MNEMO_CHECK(id >= 0 && id < bpe.eos_id(),
                "tokenizer file '{}': vocab key \"{}\" is not an id in [0, {})", src, key,
                bpe.eos_id());
    MNEMO_CHECK(value.is_string(), "tokenizer file '{}': vocab[\"{}\"] must be a hex string", src,
                key);
    std::string bytes;
    MNEMO_CHECK(hex_decode(value.get<std::string>(), bytes),
                "tokenizer file '{}': vocab[\"{}\"] is not valid hex", src, key);
    MNEMO_CHECK(bytes == bpe.token_bytes(int32_t(id)),
                "tokenizer file '{}': vocab[\"{}\"] = \"{}\" disagrees with the merges (\"{}\")",
                src, key, value.get<std::string>(), hex_encode(bpe.token_bytes(int32_t(id))));
  }
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_json(const nlohmann::json& json,
                                                const std::string& src) {
  using vt = nlohmann::json::value_t;
  MNEMO_CHECK(json.is_object(), "tokenizer file '{}': expected a JSON object", src);
  const std::string type = field(json, "type", src, vt::string, "a string").get<std::string>();
  const auto version = field(json, "version", src, vt::number_integer, "an integer").get<int64_t>();
  MNEMO_CHECK(version == 1, "tokenizer file '{}': unsupported version {} (this build reads 1)", src,
              version);
  const auto vocab_size =
      field(json, "vocab_size", src, vt::number_integer, "an integer").get<int64_t>();
  const std::string eos = field(json, "eos", src, vt::string, "a string").get<std::string>();
  MNEMO_CHECK(eos == kEndOfText, "tokenizer file '{}': \"eos\" must be \"{}\", got \"{}\"", src,
              kEndOfText, eos);

  std::unique_ptr<Tokenizer> tokenizer;
  if (type == "byte") {
    tokenizer = std::make_unique<ByteTokenizer>();
  } else if (type == "bpe") {
    if (json.contains("pretokenizer")) {
      MNEMO_CHECK(
          json.at("pretokenizer") == "mnemo-v1",
          "tokenizer file '{}': unknown \"pretokenizer\" {} (this build knows \"mnemo-v1\")", src,
          json.at("pretokenizer").dump());
    }
    auto bpe = std::make_unique<BpeTokenizer>(read_merges(json, src));
    check_vocab(json, *bpe, src);
    tokenizer = std::move(bpe);
  } else {
    fail("tokenizer file '{}': unknown \"type\" \"{}\" (expected \"byte\" or \"bpe\")", src, type);
  }
  MNEMO_CHECK(vocab_size == tokenizer->vocab_size(),
              "tokenizer file '{}': \"vocab_size\" is {} but the {} tokenizer described has {}",
              src, vocab_size, type, tokenizer->vocab_size());
  if (json.contains("eos_id")) {
    MNEMO_CHECK(json.at("eos_id") == tokenizer->eos_id(),
                "tokenizer file '{}': \"eos_id\" must be {} (the last id)", src,
                tokenizer->eos_id());
  }
  return tokenizer;
}

}  // namespace mnemo::text

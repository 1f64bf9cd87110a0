// Bank files (train/lib/bank_file.h): a bank round-trips through safetensors with its
// bookkeeping; a text file becomes entries 0, 1, ...; every corrupt, truncated or mismatched
// file is an error naming the file and what is wrong with it.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/ops/factory.h"
#include "train/io/files.h"
#include "train/io/safetensors.h"
#include "train/lib/bank_file.h"
#include "train/text/tokenizer.h"

#include "support/errors.h"
#include "support/scratch_dir.h"

namespace fs = std::filesystem;
using namespace mnemo;
using namespace mnemo::train;
using memory::BankPolicy;
using memory::MemoryBank;
using test::write_text;

namespace {

struct BankScratchDir : test::ScratchDir {
  BankScratchDir() : test::ScratchDir("mnemo_bank_file_test") {}
};

// A bank of 9 entries of 4 tokens with some entries written, replaced and used.
MemoryBank sample_bank() {
  MemoryBank bank(3, 4, 0.25);
  bank.set(0, {1, 2, 3, 4});
  bank.set(1, {5});
  bank.add({{6, 7}, {8}}, BankPolicy::fifo);
  bank.record_use({1, 3});
  bank.set(8, {0, 0});
  return bank;
}

// The tensors and metadata of sample_bank's file, for the corruption cases to alter.
struct BankTensors {
  io::NamedTensors tensors;
  std::map<std::string, std::string> metadata;
};
BankTensors sample_tensors(const BankScratchDir& dir) {
  const std::string path = (dir.path / "good.safetensors").string();
  save_bank(path, sample_bank());
  return {io::load_safetensors(path), io::read_safetensors_metadata(path)};
}

void check_same(const MemoryBank& a, const MemoryBank& b) {
  CHECK(a.side() == b.side());
  CHECK(a.length() == b.length());
  CHECK(a.freeze_ratio() == b.freeze_ratio());
  CHECK(a.tokens() == b.tokens());
  CHECK(a.written() == b.written());
  CHECK(a.last_used() == b.last_used());
  CHECK(a.clock() == b.clock());
}

}  // namespace

TEST_CASE("bank file: a bank round-trips with its counters, clock and metadata") {
  BankScratchDir dir;
  const MemoryBank bank = sample_bank();
  const std::string path = (dir.path / "bank.safetensors").string();
  save_bank(path, bank);
  CHECK_FALSE(fs::exists(path + ".tmp"));
  const MemoryBank loaded = load_bank(path);
  check_same(loaded, bank);
  CHECK(loaded.entry(0) == std::vector<int32_t>{1, 2, 3, 4});
  CHECK(loaded.entry(8) == std::vector<int32_t>{0, 0});
  // The replacement policies continue where they stopped.
  CHECK(loaded.choose_slots(3, BankPolicy::fifo) == bank.choose_slots(3, BankPolicy::fifo));
  CHECK(loaded.choose_slots(3, BankPolicy::lru) == bank.choose_slots(3, BankPolicy::lru));
  const auto metadata = io::read_safetensors_metadata(path);
  CHECK(metadata.at("format") == "mnemo-bank");
  CHECK(metadata.at("side") == "3");
  CHECK(metadata.at("length") == "4");
  CHECK(metadata.at("freeze_ratio") == "0.25");
  const auto header = io::read_safetensors_header(path);
  REQUIRE(header.size() == 4);
  CHECK(header[0].name == "tokens");
  CHECK(header[0].dtype == DType::i32);
  CHECK(header[0].shape == Shape{9, 4});
  CHECK(header[3].name == "clock");
  // Saving over an existing file replaces it.
  MemoryBank edited = bank;
  edited.set(5, {9, 9});
  save_bank(path, edited);
  check_same(load_bank(path), edited);
}

TEST_CASE("bank file: corrupt, truncated or foreign files are errors naming file and part") {
  BankScratchDir dir;
  const BankTensors good = sample_tensors(dir);
  const std::string good_path = (dir.path / "good.safetensors").string();
  struct Case {
    const char* name;
    std::function<void(BankTensors&)> alter;
    const char* says;
  };
  const auto set_tensor = [](BankTensors& b, const std::string& name, Tensor t) {
    for (auto& [n, tensor] : b.tensors)
      if (n == name) tensor = t;
  };
  const Case cases[] = {
      {"format", [](BankTensors& b) { b.metadata["format"] = "pt"; },
       "not a bank file (metadata 'format' is 'pt'"},
      {"no format", [](BankTensors& b) { b.metadata.erase("format"); }, "metadata 'format'"},
      {"side", [](BankTensors& b) { b.metadata["side"] = "three"; },
       "bank metadata 'side' is 'three', not a number"},
      {"length", [](BankTensors& b) { b.metadata.erase("length"); }, "no 'length'"},
      {"freeze_ratio", [](BankTensors& b) { b.metadata["freeze_ratio"] = "2"; }, "freeze_ratio"},
      {"mismatched side", [](BankTensors& b) { b.metadata["side"] = "2"; },
       "bank tensor 'tokens' is i32 (9, 4), expected i32 (4, 4)"},
      {"missing tensor", [](BankTensors& b) { b.tensors.pop_back(); }, "no tensor 'clock'"},
      {"extra tensor", [](BankTensors& b) { b.tensors.emplace_back("weights", zeros({2})); },
       "unknown bank tensor 'weights'"},
      {"dtype", [&](BankTensors& b) { set_tensor(b, "written", zeros({9}, {DType::f32})); },
       "bank tensor 'written' is f32 (9,), expected i64 (9,)"},
      {"token",
       [&](BankTensors& b) {
         std::vector<int32_t> tokens(36, -1);
         tokens[4] = -1, tokens[5] = 3;  // entry 1: padding, then a token
         set_tensor(b, "tokens", from_vector(tokens, {9, 4}));
       },
       "bank entry 1 has a token after its padding"},
  };
  for (const Case& c : cases) {
    const std::string name = c.name;
    CAPTURE(name);
    BankTensors altered = good;
    c.alter(altered);
    const std::string path = (dir.path / (std::string(c.name) + ".safetensors")).string();
    io::save_safetensors(path, altered.tensors, altered.metadata);
    const std::string message = test::error_message([&] { load_bank(path); });
    CAPTURE(message);
    CHECK(message.find(path) != std::string::npos);
    CHECK(message.find(c.says) != std::string::npos);
    CHECK(message.find('\n') == std::string::npos);
  }
  // Truncated anywhere: in the length, the header or the data.
  const std::string bytes = io::read_file(good_path);
  for (size_t keep : {size_t(0), size_t(5), size_t(40), bytes.size() - 1}) {
    CAPTURE(keep);
    const std::string path = write_text(dir.path / "cut.safetensors", bytes.substr(0, keep));
    const std::string message = test::error_message([&] { load_bank(path); });
    CHECK(message.find(path) != std::string::npos);
  }
  const std::string missing = (dir.path / "none.safetensors").string();
  CHECK(test::error_message([&] { load_bank(missing); }).find(missing) != std::string::npos);
}

TEST_CASE("bank file: a text file fills entries 0, 1, ... with its tokenized lines") {
  BankScratchDir dir;
  const text::ByteTokenizer bytes;  // one token per byte: lengths are easy to count
  const std::string facts =
      write_text(dir.path / "facts.txt", "cats purr\n\n   \n  owls hoot \r\nbees\n");
  const MemoryBank bank = read_bank_text(facts, bytes, 2, 9, 0.5);
  CHECK(bank.entries() == 4);
  CHECK(bank.frozen() == 2);
  CHECK(bytes.decode(bank.entry(0)) == "cats purr");
  CHECK(bytes.decode(bank.entry(1)) == "owls hoot");  // surrounding spaces dropped
  CHECK(bytes.decode(bank.entry(2)) == "bees");
  CHECK(bank.is_free(3));

  const std::string too_many = write_text(dir.path / "many.txt", "a\nb\n\nc\nd\ne\n");
  std::string message = test::error_message([&] { read_bank_text(too_many, bytes, 2, 9, 0); });
  CHECK(message.find(too_many + ": line 6: more than the 4 entries the bank can take") == 0);
  const std::string too_long = write_text(dir.path / "long.txt", "short\n\nten tokens\n");
  message = test::error_message([&] { read_bank_text(too_long, bytes, 2, 9, 0); });
  CHECK(message.find(too_long + ": line 3: 10 tokens, more than the entry length 9") == 0);
  const std::string missing = (dir.path / "none.txt").string();
  CHECK(test::error_message([&] { read_bank_text(missing, bytes, 2, 9, 0); }).find(missing) !=
        std::string::npos);
}

TEST_CASE("bank file: read_bank_for_model tells the kinds apart and checks the model's shape") {
  BankScratchDir dir;
  const text::ByteTokenizer bytes;
  const std::string named = (dir.path / "bank.safetensors").string();
  const std::string unnamed = (dir.path / "bank.bin").string();
  save_bank(named, sample_bank());
  save_bank(unnamed, sample_bank());
  const std::string facts = write_text(dir.path / "facts.txt", "a fact\n");
  CHECK(is_bank_file(named));
  CHECK(is_bank_file(unnamed));  // by its header
  CHECK_FALSE(is_bank_file(facts));
  CHECK_FALSE(is_bank_file(write_text(dir.path / "brace.txt", "12345678{ not a header")));
  CHECK_FALSE(is_bank_file((dir.path / "missing").string()));

  // A bank file takes the model's freeze_ratio; its entries and counters stay.
  const MemoryBank read = read_bank_for_model(unnamed, bytes, 3, 4, 0.5);
  CHECK(read.freeze_ratio() == 0.5);
  CHECK(read.tokens() == sample_bank().tokens());
  CHECK(read.written() == sample_bank().written());
  CHECK(read_bank_for_model(facts, bytes, 3, 8, 0.5).entry(0) == bytes.encode("a fact"));

  std::string message = test::error_message([&] { read_bank_for_model(named, bytes, 4, 4, 0); });
  CHECK(message.find(named + ": the bank holds 9 entries of 4 tokens, but the model's "
                             "bank_entries is 16 and entry_length 4") == 0);
  message = test::error_message([&] { read_bank_for_model(named, bytes, 3, 5, 0); });
  CHECK(message.find("bank_entries is 9 and entry_length 5") != std::string::npos);
  MemoryBank wide(3, 4);
  wide.set(2, {300});  // beyond the byte tokenizer's 257 ids
  save_bank(named, wide);
  message = test::error_message([&] { read_bank_for_model(named, bytes, 3, 4, 0); });
  CHECK(message.find(named + ": bank token 300 is outside the tokenizer's vocabulary of 257") == 0);
}

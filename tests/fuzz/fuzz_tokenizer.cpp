// Fuzz target: tokenizers (train/text/tokenizer.h). The first byte picks what the rest is:
//   even  a tokenizer.json: loaded (every malformed file an input error); a tokenizer that
//         loads must encode and decode a fixed text back to itself
//   odd   arbitrary bytes: decode(encode(x)) == x through a BPE trained once on a small
//         corpus and through the byte tokenizer — the round trip must hold for any bytes
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_target.h"
#include "train/text/tokenizer.h"

namespace {

const mnemo::text::BpeTokenizer& trained_bpe() {
  static const mnemo::text::BpeTokenizer bpe = mnemo::text::BpeTokenizer::train(
      {"the cat sees a moon over the river, the old road at night.\n",
       "A quiet house without a word; a friend's song. 123 456 7890!\n",
       "caf\xc3\xa9 na\xc3\xafve \xe2\x82\xac \xf0\x9f\x98\x80 tabs\tand  spaces\r\n"},
      400);
  return bpe;
}

void check_round_trip(const mnemo::text::Tokenizer& t, std::string_view bytes) {
  const std::vector<int32_t> ids = t.encode(bytes);
  if (t.decode(ids) != bytes) mnemo::fuzz::finding("round trip", t.type().c_str());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mnemo;
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    const std::string path = fuzz::input_file(rest, "tokenizer.json");
    fuzz::expect_input_errors([&] {
      const auto tokenizer = text::Tokenizer::load(path);
      check_round_trip(*tokenizer, "the cat sees a moon \xe2\x82\xac\n");
    });
  } else {
    fuzz::expect_input_errors([&] {
      check_round_trip(trained_bpe(), rest);
      check_round_trip(text::ByteTokenizer(), rest);
    });
  }
  return 0;
}

// Fuzz target: ExplicitLM bank files (train/lib/bank_file.h). The first byte picks the form:
// even, a bank file (safetensors with the bank's tensors and metadata); odd, a text file of
// entries. Both are read as the bank of a model of 8 x 8 entries of 12 byte tokens.
#include "tests/fuzz/fuzz_target.h"
#include "train/lib/bank_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mnemo;
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  static const text::ByteTokenizer tokenizer;
  const bool bank_file = data[0] % 2 == 0;
  const std::string path = fuzz::input_file(rest, bank_file ? "bank.safetensors" : "bank.txt");
  if (bank_file) fuzz::expect_input_errors([&] { train::load_bank(path); });
  // What `mnemo train` and `mnemo bank` do with --bank: the shape and tokens checked too.
  fuzz::expect_input_errors([&] { train::read_bank_for_model(path, tokenizer, 8, 12, 0.2); });
  return 0;
}

// Fuzz target: safetensors files (train/io/safetensors.h), the format of every checkpoint's
// weights, optimizer state and ExplicitLM bank: the header reader, the metadata reader and
// the full load.
#include "tests/fuzz/fuzz_target.h"
#include "train/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mnemo;
  const std::string path =
      fuzz::input_file({reinterpret_cast<const char*>(data), size}, "input.safetensors");
  fuzz::expect_input_errors([&] { io::read_safetensors_metadata(path); });
  fuzz::expect_input_errors([&] {
    for (const auto& [name, tensor] : io::load_safetensors(path)) {
      (void)tensor.numel();
    }
  });
  return 0;
}

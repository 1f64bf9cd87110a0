// Fuzz target: token shards (train/text/shard.h), the train.bin / val.bin a run reads: the
// header checks, then every id read back.
#include <algorithm>
#include <vector>

#include "tests/fuzz/fuzz_target.h"
#include "train/text/shard.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mnemo;
  const std::string path =
      fuzz::input_file({reinterpret_cast<const char*>(data), size}, "train.bin");
  fuzz::expect_input_errors([&] {
    const text::TokenShard shard(path);
    int64_t sum = 0;
    for (int64_t i = 0; i < shard.size(); ++i) sum += shard[i];
    if (shard.size() > 0) {
      std::vector<int64_t> window(size_t(std::min<int64_t>(shard.size(), 64)));
      shard.copy_range(0, int64_t(window.size()), window.data());
    }
    (void)sum;
  });
  return 0;
}

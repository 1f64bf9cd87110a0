// A main() for the fuzz targets where libFuzzer is not linked in (GCC builds, CI): replays
// every input file given (files, or directories of them: the seed corpora under
// tests/data/fuzz/ and the regression inputs of crashes found before), then, for --seconds,
// runs random mutations of those inputs (bit flips, bytes set to edge values, runs inserted,
// deleted or repeated, splices of two inputs, truncation). It is not coverage-guided — that is
// scripts/fuzz.sh with libFuzzer — but it runs every target under the sanitizers in every CI
// run. A finding aborts with the input left in SCRATCH/last-input (fuzz_target.h).
//
//   fuzz_TARGET [--seconds S] [--seed N] PATH...
//   prints "fuzz_TARGET: R replays, M mutations in S s, no findings"
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_target.h"

namespace {

namespace fs = std::filesystem;

std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Each input is first written to SCRATCH/last-input, so a finding leaves it there.
void run(const std::string& input) {
  mnemo::fuzz::input_file(input, "last-input");
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
}

// One random edit of `x` (in place); `other` is another input to splice from.
void mutate(std::string& x, const std::string& other, std::mt19937_64& rng) {
  auto pick = [&](size_t n) { return n == 0 ? size_t(0) : size_t(rng() % n); };
  static const unsigned char kEdges[] = {0,   1,   0x7f, 0x80, 0xff, '0',  '9',  '-', '"', '{',
                                         '}', '[', ']',  ',',  ':',  '\\', '\n', 'e', '.'};
  switch (rng() % 8) {
    case 0:  // flip a bit
      if (!x.empty()) x[pick(x.size())] ^= char(1 << (rng() % 8));
      break;
    case 1:  // a byte set to an edge value
      if (!x.empty()) x[pick(x.size())] = char(kEdges[pick(sizeof kEdges)]);
      break;
    case 2: {  // delete a run
      if (x.empty()) break;
      const size_t at = pick(x.size());
      x.erase(at, 1 + pick(std::min<size_t>(16, x.size() - at)));
      break;
    }
    case 3: {  // insert random bytes
      std::string bytes(1 + pick(8), '\0');
      for (char& c : bytes) c = char(rng());
      x.insert(pick(x.size() + 1), bytes);
      break;
    }
    case 4: {  // repeat a run
      if (x.empty()) break;
      const size_t at = pick(x.size());
      const std::string run = x.substr(at, 1 + pick(std::min<size_t>(32, x.size() - at)));
      x.insert(pick(x.size() + 1), run);
      break;
    }
    case 5: {  // splice: a prefix of x, then a suffix of other
      x = x.substr(0, pick(x.size() + 1)) + other.substr(pick(other.size() + 1));
      break;
    }
    case 6:  // truncate
      x.resize(pick(x.size() + 1));
      break;
    case 7: {  // overwrite 8 bytes with a little-endian edge integer (lengths, counts)
      if (x.size() < 8) break;
      static const uint64_t kInts[] = {
          0, 1, 7, 8, 0xff, 0x7fffffff, 0xffffffff, uint64_t(1) << 40, ~uint64_t(0)};
      const uint64_t v = kInts[pick(std::size(kInts))];
      const size_t at = pick(x.size() - 7);
      for (int b = 0; b < 8; ++b) x[at + size_t(b)] = char(v >> (8 * b));
      break;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 0;
  uint64_t seed = 1;
  std::vector<std::string> inputs;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--seconds" && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
    } else if (arg == "--seed" && i + 1 < argc) {
      seed = std::strtoull(argv[++i], nullptr, 10);
    } else if (fs::is_directory(arg)) {
      std::vector<fs::path> files;
      for (const auto& e : fs::directory_iterator(arg)) {
        if (e.is_regular_file()) files.push_back(e.path());
      }
      std::sort(files.begin(), files.end());
      for (const fs::path& f : files) inputs.push_back(read_all(f));
    } else if (fs::is_regular_file(arg)) {
      inputs.push_back(read_all(arg));
    } else {
      std::fprintf(stderr, "%s: no such file or directory: %s\n", argv[0], arg.c_str());
      return 2;
    }
  }
  if (inputs.empty()) inputs.emplace_back();
  for (const std::string& input : inputs) run(input);

  std::mt19937_64 rng(seed);
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  int64_t mutations = 0;
  while (elapsed() < seconds) {
    std::string x = inputs[rng() % inputs.size()];
    const std::string& other = inputs[rng() % inputs.size()];
    for (int edits = 1 + int(rng() % 4); edits > 0; --edits) mutate(x, other, rng);
    run(x);
    ++mutations;
  }
  std::filesystem::remove_all(mnemo::fuzz::scratch_dir());  // kept only after a finding
  std::printf("%s: %zu replays, %lld mutations in %.1f s, no findings\n",
              fs::path(argv[0]).filename().c_str(), inputs.size(), (long long)mutations, elapsed());
  return 0;
}

// Token shards (both widths, round trip, header layout, corrupt/truncated files),
// prepare_dataset (deterministic disjoint split, counts, info.json), and the window loaders
// (windows are real slices with targets shifted by one; reproducible and resumable).
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "core/error.h"
#include "temp_dir.h"
#include "train/text/dataset.h"
#include "train/text/loader.h"
#include "train/text/shard.h"

using namespace mnemo;
using namespace mnemo::text;
using mnemo::text::testing::TempDir;

namespace {

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

std::vector<int32_t> random_ids(size_t n, int32_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> ids(n);
  for (auto& id : ids) id = int32_t(rng() % uint64_t(vocab));
  return ids;
}

std::vector<int32_t> shard_ids(const TokenShard& shard) {
  std::vector<int32_t> ids;
  for (int64_t i = 0; i < shard.size(); ++i) ids.push_back(shard[i]);
  return ids;
}

bool error_names(const std::function<void()>& fn, const std::string& part) {
  try {
    fn();
  } catch (const Error& e) {
    if (std::string(e.what()).find(part) != std::string::npos) return true;
    MESSAGE("error message: ", e.what());
    return false;
  }
  return false;
}

}  // namespace

TEST_CASE("shard: write/read round trip for uint16 and uint32 ids, header bytes") {
  TempDir dir;
  for (int32_t vocab : {257, 65536, 65537, 1 << 20}) {
    std::vector<int32_t> ids = random_ids(1000, vocab, uint64_t(vocab));
    ids[0] = vocab - 1;
    ids[1] = 0;
    const std::string path = dir.file(std::to_string(vocab) + ".bin");
    write_shard(path, ids, vocab);
    const int width = vocab <= 65536 ? 2 : 4;
    const std::string bytes = read_bytes(path);
    REQUIRE(bytes.size() == 24 + 1000 * size_t(width));
    CHECK(bytes.substr(0, 4) == "MNTK");
    uint32_t header[3];
    uint64_t count;
    std::memcpy(header, bytes.data() + 4, 12);
    std::memcpy(&count, bytes.data() + 16, 8);
    CHECK(header[0] == 1);
    CHECK(header[1] == uint32_t(width));
    CHECK(header[2] == 0);
    CHECK(count == 1000);
    TokenShard shard(path);
    CHECK(shard.size() == 1000);
    CHECK(shard.bytes_per_id() == width);
    CHECK(shard_ids(shard) == ids);
    std::vector<int64_t> range(10);
    shard.copy_range(990, 10, range.data());
    for (int k = 0; k < 10; ++k) CHECK(range[size_t(k)] == ids[size_t(990 + k)]);
    CHECK_THROWS_AS(shard.copy_range(991, 10, range.data()), Error);
    CHECK_THROWS_AS(shard[1000], Error);
  }
  write_shard(dir.file("empty.bin"), {}, 10);
  CHECK(TokenShard(dir.file("empty.bin")).size() == 0);
  std::vector<int32_t> bad = {1, 2, 10};
  CHECK(error_names([&] { write_shard(dir.file("bad.bin"), bad, 10); }, "position 2"));
}

TEST_CASE("shard: truncated, corrupt and missing files are errors naming the file") {
  TempDir dir;
  const std::string path = dir.file("ids.bin");
  write_shard(path, random_ids(100, 500, 3), 500);
  const std::string good = read_bytes(path);
  auto corrupt = [&](const std::string& bytes, const std::string& detail) {
    const std::string p = dir.write("corrupt.bin", bytes);
    CHECK(error_names([&] { TokenShard s(p); }, p));
    CHECK(error_names([&] { TokenShard s(p); }, detail));
  };
  corrupt(good.substr(0, good.size() - 1), "truncated");
  corrupt(good + "xx", "corrupt");
  corrupt(good.substr(0, 10), "header");
  std::string magic = good;
  magic[0] = 'X';
  corrupt(magic, "magic");
  std::string v2 = good;
  v2[4] = 2;
  corrupt(v2, "version 2");
  std::string w3 = good;
  w3[8] = 3;
  corrupt(w3, "bytes per id");
  CHECK(error_names([&] { TokenShard s(dir.file("missing.bin")); }, "missing.bin"));
}

TEST_CASE("dataset: the split is deterministic, disjoint, and sized by val_fraction") {
  auto a = split_documents_by_seed(100, 0.1, 42);
  CHECK(a == split_documents_by_seed(100, 0.1, 42));
  CHECK(a != split_documents_by_seed(100, 0.1, 43));
  CHECK(std::count(a.begin(), a.end(), true) == 10);
  auto small = split_documents_by_seed(5, 0.01, 1);
  CHECK(std::count(small.begin(), small.end(), true) == 1);  // at least one
  auto none = split_documents_by_seed(5, 0.0, 1);
  CHECK(std::count(none.begin(), none.end(), true) == 0);
  CHECK_THROWS_AS(split_documents_by_seed(5, 1.0, 1), Error);
  CHECK_THROWS_AS(split_documents_by_seed(1, 0.5, 1), Error);
}

TEST_CASE("dataset: prepare_dataset writes shards of the documents with eos, and info.json") {
  TempDir dir;
  std::vector<std::string> docs;
  for (int d = 0; d < 40; ++d)
    docs.push_back("doc " + std::to_string(d) + std::string(size_t(d % 7), 'x'));
  ByteTokenizer tok;
  DatasetInfo info = prepare_dataset(docs, tok, 0.25, 9, dir.file("data"));
  // Rebuild the expected streams from the split with independent code.
  std::vector<bool> is_val = split_documents_by_seed(40, 0.25, 9);
  std::vector<int32_t> train, val;
  int64_t train_bytes = 0, val_bytes = 0;
  for (size_t d = 0; d < docs.size(); ++d) {
    auto& out = is_val[d] ? val : train;
    for (unsigned char c : docs[d]) out.push_back(c);
    out.push_back(256);
    (is_val[d] ? val_bytes : train_bytes) += int64_t(docs[d].size());
  }
  TokenShard train_shard(dir.file("data/train.bin"));
  TokenShard val_shard(dir.file("data/val.bin"));
  CHECK(shard_ids(train_shard) == train);
  CHECK(shard_ids(val_shard) == val);
  CHECK(info.train_documents == 30);
  CHECK(info.val_documents == 10);
  CHECK(info.train_tokens == int64_t(train.size()));
  CHECK(info.val_tokens == int64_t(val.size()));
  CHECK(info.train_bytes == train_bytes);
  CHECK(info.val_bytes == val_bytes);
  CHECK(info.train_tokens == info.train_bytes + 30);
  DatasetInfo read = read_dataset_info(dir.file("data"));
  CHECK(read.train_tokens == info.train_tokens);
  CHECK(read.val_bytes == info.val_bytes);
  CHECK(read.val_documents == 10);
  // Same seed: identical files; another seed: another split.
  prepare_dataset(docs, tok, 0.25, 9, dir.file("again"));
  CHECK(read_bytes(dir.file("again/train.bin")) == read_bytes(dir.file("data/train.bin")));
  CHECK(read_bytes(dir.file("again/val.bin")) == read_bytes(dir.file("data/val.bin")));
  prepare_dataset(docs, tok, 0.25, 10, dir.file("other"));
  CHECK(read_bytes(dir.file("other/val.bin")) != read_bytes(dir.file("data/val.bin")));
  // A BPE tokenizer: decoding each shard gives its documents joined by eos.
  BpeTokenizer bpe = BpeTokenizer::train(docs, 280);
  prepare_dataset(docs, bpe, 0.25, 9, dir.file("bpe"));
  std::vector<int32_t> bpe_val = shard_ids(TokenShard(dir.file("bpe/val.bin")));
  std::string expected;
  for (size_t d = 0; d < docs.size(); ++d)
    if (is_val[d]) expected += docs[d] + "<|endoftext|>";
  CHECK(bpe.decode(bpe_val) == expected);
}

TEST_CASE("loader: sampled windows are shard slices, targets shifted, reproducible, resumable") {
  TempDir dir;
  const int32_t vocab = 1000;
  std::vector<int32_t> ids = random_ids(500, vocab, 5);
  write_shard(dir.file("t.bin"), ids, vocab);
  TokenShard shard(dir.file("t.bin"));
  const int64_t T = 16, B = 4;
  WindowSampler sampler(shard, T, 123);
  std::set<int64_t> starts;
  for (int step = 0; step < 50; ++step) {
    auto [inputs, targets] = sampler.next_batch(B);
    CHECK(inputs.dtype() == DType::i64);
    CHECK(inputs.shape() == Shape{B, T});
    CHECK(targets.shape() == Shape{B, T});
    std::vector<int64_t> in = inputs.to_vector<int64_t>(), tg = targets.to_vector<int64_t>();
    for (int64_t b = 0; b < B; ++b) {
      // Find where this row starts in the shard and check the slice and shift there.
      int64_t s = sampler.window_start(uint64_t(step * B + b));
      REQUIRE((s >= 0 && s + T + 1 <= int64_t(ids.size())));
      starts.insert(s);
      for (int64_t t = 0; t < T; ++t) {
        CHECK(in[size_t(b * T + t)] == ids[size_t(s + t)]);
        CHECK(tg[size_t(b * T + t)] == ids[size_t(s + t + 1)]);
      }
    }
  }
  CHECK(sampler.position() == 200);
  CHECK(starts.size() > 150);  // 200 draws over 484 starts: mostly distinct

  // Same seed -> same batches; set_position resumes mid-stream exactly.
  WindowSampler a(shard, T, 7), b(shard, T, 7), c(shard, T, 8);
  auto [a1, a1t] = a.next_batch(B);
  auto [a2, a2t] = a.next_batch(B);
  auto [b1, b1t] = b.next_batch(B);
  CHECK(a1.to_vector<int64_t>() == b1.to_vector<int64_t>());
  CHECK(a1.to_vector<int64_t>() != c.next_batch(B).first.to_vector<int64_t>());
  WindowSampler resumed(shard, T, 7);
  resumed.set_position(uint64_t(B));
  auto [r2, r2t] = resumed.next_batch(B);
  CHECK(r2.to_vector<int64_t>() == a2.to_vector<int64_t>());
  CHECK(r2t.to_vector<int64_t>() == a2t.to_vector<int64_t>());

  // The whole start range is reachable, including the last start size - T - 1.
  std::vector<int32_t> tiny = {1, 2, 3, 4, 5};
  write_shard(dir.file("tiny.bin"), tiny, 10);
  WindowSampler small(TokenShard(dir.file("tiny.bin")), 3, 1);
  std::set<int64_t> seen;
  for (uint64_t k = 0; k < 200; ++k) seen.insert(small.window_start(k));
  CHECK(seen == std::set<int64_t>{0, 1});
  CHECK_THROWS_AS(WindowSampler(TokenShard(dir.file("tiny.bin")), 5, 1), Error);
  CHECK_THROWS_AS(WindowSampler(TokenShard(dir.file("tiny.bin")), 0, 1), Error);
}

TEST_CASE("loader: sequential windows tile the shard in order") {
  TempDir dir;
  std::vector<int32_t> ids(53);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(i);
  write_shard(dir.file("v.bin"), ids, 100);
  SequentialWindows windows(TokenShard(dir.file("v.bin")), 10);
  CHECK(windows.num_windows() == 5);  // needs 51 ids; 53 available
  CHECK(windows.num_batches(2) == 3);
  for (int64_t k = 0; k < 3; ++k) {
    auto [in, tg] = windows.batch(k, 2);
    const int64_t rows = k < 2 ? 2 : 1;
    CHECK(in.shape() == Shape{rows, 10});
    std::vector<int64_t> iv = in.to_vector<int64_t>(), tv = tg.to_vector<int64_t>();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t t = 0; t < 10; ++t) {
        CHECK(iv[size_t(r * 10 + t)] == (k * 2 + r) * 10 + t);
        CHECK(tv[size_t(r * 10 + t)] == (k * 2 + r) * 10 + t + 1);
      }
  }
  CHECK_THROWS_AS(windows.batch(3, 2), Error);
  std::vector<int32_t> exact(11, 1);
  write_shard(dir.file("e.bin"), exact, 2);
  CHECK(SequentialWindows(TokenShard(dir.file("e.bin")), 10).num_windows() == 1);
  CHECK_THROWS_AS(SequentialWindows(TokenShard(dir.file("e.bin")), 11), Error);
}

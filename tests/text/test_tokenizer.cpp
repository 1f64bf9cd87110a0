// Tokenizers: pre-tokenization chunks, BPE training on hand-checked strings, encoding against
// a naive reference (apply merge 0 everywhere, then merge 1, ...), exact round trips on random
// bytes (invalid UTF-8, NUL, long runs), save/load, and the errors of malformed files.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <random>

#include "core/error.h"
#include "support/skip.h"
#include "temp_dir.h"
#include "train/text/corpus.h"
#include "train/text/dataset.h"
#include "train/text/pretokenize.h"
#include "train/text/tokenizer.h"

using namespace mnemo;
using namespace mnemo::text;
using mnemo::text::testing::TempDir;

namespace {

std::vector<std::string> chunks_of(std::string_view text) {
  std::vector<std::string> out;
  for_each_chunk(text, [&](std::string_view c) { out.emplace_back(c); });
  return out;
}

// The reference encoder: merges applied one after another in rank order, each replacing all
// its occurrences left to right, chunk by chunk.
std::vector<int32_t> reference_encode(const BpeTokenizer& bpe, std::string_view text) {
  std::vector<int32_t> out;
  for_each_chunk(text, [&](std::string_view chunk) {
    std::vector<int32_t> s;
    for (unsigned char c : chunk) s.push_back(c);
    for (size_t r = 0; r < bpe.merges().size(); ++r) {
      auto [a, b] = bpe.merges()[r];
      std::vector<int32_t> t;
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          t.push_back(256 + int32_t(r));
          ++i;
        } else {
          t.push_back(s[i]);
        }
      }
      s = std::move(t);
    }
    out.insert(out.end(), s.begin(), s.end());
  });
  return out;
}

std::string random_bytes(std::mt19937_64& rng, size_t n, int alphabet = 256) {
  std::string s(n, '\0');
  for (char& c : s) c = char(rng() % unsigned(alphabet));
  return s;
}

// Text with spaces, letters, digits, punctuation, newlines and UTF-8, for training.
std::vector<std::string> sample_documents() {
  std::vector<std::string> docs = {
      "The quick brown fox jumps over the lazy dog. The dog sleeps.\n",
      "In 2024, the fox (quickly!) jumped 12 times -- then 1024 more...\n",
      "caf\xc3\xa9 na\xc3\xafve \xe2\x80\x94 r\xc3\xa9sum\xc3\xa9\n\n\tIndented    text   here\n",
      "the the the then there these those them they\n",
  };
  for (int i = 0; i < 20; ++i) docs.push_back("line " + std::to_string(i * 37) + ": the end\n");
  return docs;
}

void check_error_contains(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    FAIL("expected mnemo::Error");
  } catch (const Error& e) {
    std::string message = e.what();
    for (const auto& part : parts) {
      CHECK_MESSAGE(message.find(part) != std::string::npos, message, " lacks ", part);
    }
  }
}

}  // namespace

TEST_CASE("pretokenize: chunks follow the documented rules and cover the text") {
  CHECK(chunks_of("Hello world") == std::vector<std::string>{"Hello", " world"});

  CHECK(chunks_of("a  b") == std::vector<std::string>{"a", " ", " b"});
  CHECK(chunks_of("x\n  y\n") == std::vector<std::string>{"x", "\n ", " y", "\n"});
  CHECK(chunks_of("  ") == std::vector<std::string>{"  "});
  CHECK(chunks_of("caf\xc3\xa9 ok") == std::vector<std::string>{"caf\xc3\xa9", " ok"});
  CHECK(chunks_of(std::string("a\0b", 3)) ==
        std::vector<std::string>{"a", std::string(1, '\0'), "b"});
  CHECK(chunks_of("").empty());
  std::mt19937_64 rng(1);
  for (int trial = 0; trial < 50; ++trial) {
    std::string s = random_bytes(rng, 200, trial % 2 ? 256 : 40);
    std::string joined;
    for (const auto& c : chunks_of(s)) {
      CHECK(!c.empty());
      joined += c;
    }
    CHECK(joined == s);
  }
}

TEST_CASE("bpe train: first merges of aaabdaaabac (hand-checked)") {
  // Pairs: aa x4 (overlapping count), ab x2 ... -> merge (a,a)=256. Then "N a b d N a b a c":
  // (N,a) and (a,b) tie at 2 -> smaller pair (a,b)=257. Then (N,257) x2 -> 258. Then all
  // pairs have count 1 and the smallest, (a,c), wins -> 259.
  BpeTokenizer bpe = BpeTokenizer::train({"aaabdaaabac"}, 261);
  using P = BpeTokenizer::Pair;
  REQUIRE(bpe.merges().size() == 4);
  CHECK(bpe.merges()[0] == P{97, 97});
  CHECK(bpe.merges()[1] == P{97, 98});
  CHECK(bpe.merges()[2] == P{256, 257});
  CHECK(bpe.merges()[3] == P{97, 99});
  CHECK(bpe.vocab_size() == 261);
  CHECK(bpe.eos_id() == 260);
  CHECK(bpe.token_bytes(258) == "aaab");
  CHECK(bpe.encode("aaabdaaabac") == std::vector<int32_t>{258, 100, 258, 259});
}

TEST_CASE("bpe train: merges never cross chunks and training stops when no pair is left") {
  // Chunks "ab", " ab", " ab", "a", ".", "b": (a,b) x3 -> 256, then (' ', 256) x2 -> 257.
  BpeTokenizer bpe = BpeTokenizer::train({"ab ab ab", "a.b"}, 300);
  using P = BpeTokenizer::Pair;
  REQUIRE(bpe.merges().size() == 2);
  CHECK(bpe.merges()[0] == P{97, 98});
  CHECK(bpe.merges()[1] == P{32, 256});
  CHECK(bpe.vocab_size() == 259);
  CHECK(bpe.encode("ab ab") == std::vector<int32_t>{256, 257});
  CHECK_THROWS_AS(BpeTokenizer::train({"x"}, 256), Error);
}

TEST_CASE("bpe encode: equals the reference, both chunk algorithms agree") {
  BpeTokenizer bpe = BpeTokenizer::train(sample_documents(), 400);
  CHECK(bpe.vocab_size() > 300);
  std::mt19937_64 rng(7);
  for (const auto& doc : sample_documents()) CHECK(bpe.encode(doc) == reference_encode(bpe, doc));
  // Long chunks (heap path) made of common letters, and random bytes.
  for (int trial = 0; trial < 40; ++trial) {
    std::string s;
    const char* alphabet = "theofx ";
    size_t n = 1 + rng() % 300;
    for (size_t i = 0; i < n; ++i) s += alphabet[rng() % 7];
    if (trial % 4 == 3) s = random_bytes(rng, n);
    CHECK(bpe.encode(s) == reference_encode(bpe, s));
    std::vector<int32_t> rescan, heap;
    bpe.encode_chunk(s, rescan, 1);
    bpe.encode_chunk(s, heap, 2);
    CHECK(rescan == heap);
  }
  // A pair merged with itself: "aaaaa" -> (aa)(aa)a under merge (a, a).
  BpeTokenizer aa({{97, 97}});
  std::vector<int32_t> rescan, heap;
  aa.encode_chunk("aaaaa", rescan, 1);
  aa.encode_chunk("aaaaa", heap, 2);
  CHECK(rescan == std::vector<int32_t>{256, 256, 97});
  CHECK(heap == rescan);
}

TEST_CASE("bpe and byte: decode(encode(x)) == x on random bytes, NULs, long runs, text") {
  BpeTokenizer bpe = BpeTokenizer::train(sample_documents(), 400);
  ByteTokenizer byte;
  std::mt19937_64 rng(11);
  std::vector<std::string> inputs = {"",
                                     "a",
                                     std::string(5000, 'a'),
                                     std::string(3000, ' '),
                                     std::string(100, '\0'),
                                     "\xff\xfe\xc3(\x80",
                                     std::string(2000, '\n') + "x",
                                     "<|endoftext|>"};
  for (int trial = 0; trial < 30; ++trial) inputs.push_back(random_bytes(rng, rng() % 2000));
  for (const auto& doc : sample_documents()) inputs.push_back(doc);
  for (const auto& s : inputs) {
    std::vector<int32_t> ids = bpe.encode(s);
    CHECK(bpe.decode(ids) == s);
    for (int32_t id : ids) CHECK((id >= 0 && id < bpe.eos_id()));
    std::vector<int32_t> bytes = byte.encode(s);
    REQUIRE(bytes.size() == s.size());
    for (size_t i = 0; i < s.size(); ++i)
      CHECK(bytes[i] == int32_t(static_cast<unsigned char>(s[i])));
    CHECK(byte.decode(bytes) == s);
  }
  // BPE compresses the text it was trained on.
  const std::string text = sample_documents()[0];
  CHECK(bpe.encode(text).size() < text.size() / 2);
  // eos decodes as its text; the text itself encodes as bytes, never as eos.
  CHECK(byte.vocab_size() == 257);
  CHECK(byte.eos_id() == 256);
  std::vector<int32_t> with_eos = {104, 105, 256};
  CHECK(byte.decode(with_eos) == "hi<|endoftext|>");
  CHECK(byte.encode("<|endoftext|>").size() == 13);
}

TEST_CASE("tokenizer decode: an out-of-range id is an error naming it") {
  BpeTokenizer bpe = BpeTokenizer::train({"aaabdaaabac"}, 261);
  std::vector<int32_t> bad = {97, 261};
  check_error_contains([&] { bpe.decode(bad); }, {"261", "position 1"});
  std::vector<int32_t> negative = {-3};
  check_error_contains([&] { ByteTokenizer().decode(negative); }, {"-3"});
}

TEST_CASE("tokenizer save/load: same type, vocab and encodings") {
  TempDir dir;
  BpeTokenizer bpe = BpeTokenizer::train(sample_documents(), 350);
  bpe.save(dir.file("bpe.json"));
  CHECK(!std::filesystem::exists(dir.file("bpe.json.tmp")));
  auto loaded = Tokenizer::load(dir.file("bpe.json"));
  CHECK(loaded->type() == "bpe");
  CHECK(loaded->vocab_size() == bpe.vocab_size());
  for (int32_t id = 0; id < bpe.vocab_size(); ++id)
    CHECK(loaded->token_bytes(id) == bpe.token_bytes(id));
  for (const auto& doc : sample_documents()) CHECK(loaded->encode(doc) == bpe.encode(doc));

  ByteTokenizer().save(dir.file("byte.json"));
  auto byte = Tokenizer::load(dir.file("byte.json"));
  CHECK(byte->type() == "byte");
  CHECK(byte->vocab_size() == 257);
  CHECK(byte->encode("ab") == std::vector<int32_t>{97, 98});
}

TEST_CASE("tokenizer load: missing and malformed files are errors naming the file") {
  TempDir dir;
  check_error_contains([&] { Tokenizer::load(dir.file("absent.json")); }, {"absent.json"});
  auto bad = [&](const std::string& contents, const std::string& detail) {
    std::string path = dir.write("bad.json", contents);
    check_error_contains([&] { Tokenizer::load(path); }, {path, detail});
  };
  nlohmann::json good = BpeTokenizer({{97, 98}, {256, 99}}).to_json();
  bad("{not json", "not valid JSON");
  bad("[1, 2]", "object");
  auto with = [&](const char* key, nlohmann::json value) {
    nlohmann::json j = good;
    j[key] = std::move(value);
    return j.dump();
  };
  auto without = [&](const char* key) {
    nlohmann::json j = good;
    j.erase(key);
    return j.dump();
  };
  bad(without("type"), "\"type\"");
  bad(with("type", "wordpiece"), "wordpiece");
  bad(with("version", 2), "version 2");
  bad(with("vocab_size", 300), "vocab_size");
  bad(with("version", "1"), "\"version\"");
  bad(without("merges"), "\"merges\"");
  bad(with("merges", nlohmann::json::array({{97, 98}, {258, 99}})), "merges[1]");
  bad(with("merges", nlohmann::json::array({{97}})), "merges[0]");
  bad(with("eos", "</s>"), "\"eos\"");
  bad(with("eos_id", 0), "eos_id");
  nlohmann::json wrong_vocab = good;
  wrong_vocab["vocab"]["257"] = "616263ff";
  bad(wrong_vocab.dump(), "vocab[\"257\"]");
  wrong_vocab["vocab"]["257"] = "xyz";
  bad(wrong_vocab.dump(), "hex");
  // The unmodified file loads.
  std::string path = dir.write("good.json", good.dump());
  CHECK(Tokenizer::load(path)->token_bytes(257) == "abc");
}

TEST_CASE("bpe on the fortunes corpus: vocab 512 trains and encodes in seconds, round trip") {
  std::string root;
  try {
    root = default_corpus_path();
  } catch (const Error&) {
    return test::skip("fortunes is not installed (apt-get install fortunes)");
  }
  std::vector<std::string> docs = read_documents(root);
  size_t bytes = 0;
  for (const auto& d : docs) bytes += d.size();
  using clock = std::chrono::steady_clock;
  auto t0 = clock::now();
  BpeTokenizer bpe = BpeTokenizer::train(docs, 512);
  auto t1 = clock::now();
  std::string all;
  for (const auto& d : docs) all += d;
  std::vector<int32_t> ids = bpe.encode(all);
  auto t2 = clock::now();
  CHECK(bpe.vocab_size() == 512);
  CHECK(bpe.decode(ids) == all);
  double train_s = std::chrono::duration<double>(t1 - t0).count();
  double encode_s = std::chrono::duration<double>(t2 - t1).count();
  MESSAGE("fortunes: ", docs.size(), " documents, ", bytes, " bytes; train vocab 512: ", train_s,
          " s; encode: ", encode_s, " s, ", ids.size(), " tokens (",
          double(bytes) / double(ids.size()), " bytes/token)");
  CHECK(train_s < 30);
  CHECK(encode_s < 10);

  // The dataset of the whole corpus: every byte lands in exactly one split.
  TempDir dir;
  auto t3 = clock::now();
  DatasetInfo info = prepare_dataset(docs, bpe, 0.1, 1337, dir.path());
  double prepare_s = std::chrono::duration<double>(clock::now() - t3).count();
  CHECK(info.train_bytes + info.val_bytes == int64_t(bytes));
  // Documents are encoded one by one (chunks differ from the concatenation's at the seams).
  size_t tokens = 0;
  for (const auto& d : docs) tokens += bpe.encode(d).size() + 1;
  CHECK(info.train_tokens + info.val_tokens == int64_t(tokens));
  CHECK(info.val_documents == int64_t(std::llround(0.1 * double(docs.size()))));
  MESSAGE("prepare_dataset: ", prepare_s, " s; train ", info.train_tokens, " tokens, val ",
          info.val_tokens, " tokens");
}

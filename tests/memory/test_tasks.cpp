// The memory benchmark's tasks: streams are deterministic, answers sit where the task promises
// (beyond the window), probe kinds follow their definitions (checked by brute force), and the
// metrics give the right figures on hand-made predictions.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include <fmt/format.h>

#include "core/error.h"
#include "memory/tasks.h"

namespace mnemo::memory {
namespace {

namespace fs = std::filesystem;

bool same(const Stream& a, const Stream& b) {
  return a.ids == b.ids && a.targets == b.targets && a.probes == b.probes;
}

int64_t count_probes(const Stream& st, Probe kind) {
  return int64_t(std::count(st.probes.begin(), st.probes.end(), kind));
}

// Every scored position has a probe kind and every unscored one has none; ids are in range.
void check_well_formed(const MemoryTask& task, const Stream& st) {
  const size_t n = size_t(task.num_segments() * task.segment_length());
  REQUIRE(st.ids.size() == n);
  REQUIRE(st.targets.size() == n);
  REQUIRE(st.probes.size() == n);
  for (size_t i = 0; i < n; ++i) {
    CHECK((st.targets[i] == -100) == (st.probes[i] == Probe::none));
    CHECK(st.ids[i] >= 0);
    CHECK(st.ids[i] < task.vocab_size());
    if (st.targets[i] != -100) CHECK(st.targets[i] < task.vocab_size());
  }
}

struct ScratchDir {
  fs::path path;
  ScratchDir() {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("mnemo_tasks_test_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(path);
  }
  ~ScratchDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
};

}  // namespace

TEST_CASE("tasks: streams are a function of seed, split and index") {
  for (const std::string name : {"recall", "copy-far"}) {
    CAPTURE(name);
    const auto a = make_task(name, 7, {}), b = make_task(name, 7, {}), c = make_task(name, 8, {});
    CHECK(same(a->stream(Split::train, 3), b->stream(Split::train, 3)));
    CHECK(same(a->stream(Split::eval, 3), b->stream(Split::eval, 3)));
    CHECK_FALSE(same(a->stream(Split::train, 3), a->stream(Split::train, 4)));
    CHECK_FALSE(same(a->stream(Split::train, 3), a->stream(Split::eval, 3)));
    CHECK_FALSE(same(a->stream(Split::train, 3), c->stream(Split::train, 3)));
    for (int64_t i = 0; i < 20; ++i) check_well_formed(*a, a->stream(Split::train, i));
  }
}

TEST_CASE("tasks: a batch lays streams out (S, B, T)") {
  const auto task = make_task("copy-far", 1, {{"gap", "3"}, {"segment-length", "16"}});
  const StreamBatch batch = task->batch(Split::eval, 5, 3);
  CHECK(batch.segments == 4);
  CHECK(batch.batch == 3);
  CHECK(batch.length == 16);
  for (int64_t b = 0; b < 3; ++b) {
    const Stream st = task->stream(Split::eval, 5 + b);
    for (int64_t s = 0; s < 4; ++s) {
      for (int64_t t = 0; t < 16; ++t) {
        CHECK(batch.ids[batch.index(s, b, t)] == st.ids[size_t(s * 16 + t)]);
        CHECK(batch.targets[batch.index(s, b, t)] == st.targets[size_t(s * 16 + t)]);
      }
    }
  }
  const Tensor ids = batch.ids_tensor(2);
  CHECK(ids.shape() == Shape{3, 16});
  CHECK(ids.at({1, 7}) == double(batch.ids[batch.index(2, 1, 7)]));
  CHECK(batch.targets_segments().size() == 4);
}

TEST_CASE("recall: each far query's answer was written in segment 0, beyond window and XL") {
  const int64_t T = 40, S = 5, pairs = 8, local = 4;  // the defaults
  const auto task = make_task("recall", 3, {});
  CHECK(task->segment_length() == T);
  CHECK(task->num_segments() == S);
  for (int64_t i = 0; i < 50; ++i) {
    const Stream st = task->stream(i % 2 ? Split::eval : Split::train, i);
    check_well_formed(*task, st);
    CHECK(count_probes(st, Probe::far) == pairs);
    CHECK(count_probes(st, Probe::local) == local * S);
    std::set<int64_t> far_keys;
    for (int64_t p = 0; p < S * T; ++p) {
      const Probe probe = st.probes[size_t(p)];
      if (probe == Probe::none) continue;
      const int64_t key = st.ids[size_t(p)];
      CHECK(st.ids[size_t(p - 1)] == 0);                      // "Q k v": Q before the key
      CHECK(st.ids[size_t(p + 1)] == st.targets[size_t(p)]);  // teacher-forced value
      // The key's only other occurrence is where it was written, followed by its value.
      std::vector<int64_t> at;
      for (int64_t q = 0; q < S * T; ++q) {
        if (q != p && st.ids[size_t(q)] == key) at.push_back(q);
      }
      REQUIRE(at.size() == 1);
      const int64_t w = at[0];
      CHECK(st.ids[size_t(w + 1)] == st.targets[size_t(p)]);
      if (probe == Probe::far) {
        far_keys.insert(key);
        CHECK(w < 2 * pairs);        // the pairs open segment 0
        CHECK(p / T >= S - 2);       // queried in the last two segments
        CHECK(p - (w + 1) > 2 * T);  // beyond the window and one XL segment
      } else {
        CHECK(w / T == p / T);  // local: written in the same segment
        CHECK(w < p);
      }
    }
    CHECK(int64_t(far_keys.size()) == pairs);
  }
}

TEST_CASE("copy-far: the copy is teacher-forced gap segments after the string") {
  for (int64_t gap : {1, 2, 4}) {
    CAPTURE(gap);
    const auto task = make_task("copy-far", 9, {{"gap", std::to_string(gap)}});
    const int64_t T = task->segment_length(), L = 8;
    CHECK(task->num_segments() == gap + 1);
    for (int64_t i = 0; i < 20; ++i) {
      const Stream st = task->stream(Split::train, i);
      check_well_formed(*task, st);
      CHECK(count_probes(st, Probe::far) == L);
      CHECK(count_probes(st, Probe::local) == 0);
      const size_t recall = size_t(gap * T);
      CHECK(st.ids[recall] == 0);  // COPY
      for (int64_t k = 0; k < L; ++k) {
        CHECK(st.probes[recall + size_t(k)] == Probe::far);
        CHECK(st.targets[recall + size_t(k)] == st.ids[size_t(k)]);
        CHECK(st.ids[recall + 1 + size_t(k)] == st.ids[size_t(k)]);
        CHECK(st.ids[size_t(k)] >= 9);  // a symbol, never filler
      }
    }
  }
}

TEST_CASE("longdoc: bytes of held-out documents, far bytes as defined (brute force)") {
  ScratchDir dir;
  // 40 documents of pseudo-random "words", so n-grams repeat at all distances.
  uint64_t state = 99;
  auto next = [&] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return state >> 33;
  };
  std::vector<std::string> contents;
  for (int d = 0; d < 40; ++d) {
    std::string text;
    while (text.size() < 900) {
      text += fmt::format("w{}{}", next() % 60, next() % 3 ? " " : ";\n");
    }
    text += fmt::format("doc{}", d);
    const fs::path sub = dir.path / fmt::format("sub{}", d % 3);
    fs::create_directories(sub);
    std::ofstream(sub / fmt::format("f{}.h", d)) << text;
    contents.push_back(text);
  }
  std::ofstream(dir.path / "ignored.txt") << contents[0];  // not a header
  std::ofstream(dir.path / "short.h") << "tiny";           // too short for a stream

  const int64_t S = 4, T = 32, n = 4;
  const auto task = make_task("longdoc", 5,
                              {{"corpus", dir.path.string()},
                               {"segments", std::to_string(S)},
                               {"segment-length", std::to_string(T)}});
  CHECK(task->vocab_size() == 256);
  CHECK_FALSE(task->higher_is_better());
  const auto config = task->config();
  CHECK(config["train_documents"].get<int64_t>() + config["eval_documents"].get<int64_t>() == 40);

  std::set<size_t> train_docs, eval_docs;
  int64_t far_total = 0;
  for (int64_t i = 0; i < 60; ++i) {
    const Split split = i % 2 ? Split::eval : Split::train;
    const Stream st = task->stream(split, i);
    check_well_formed(*task, st);
    // ids followed by the last target are S*T+1 consecutive bytes of exactly one document.
    std::string bytes;
    for (int64_t id : st.ids) bytes += char(id);
    bytes += char(st.targets.back());
    for (size_t p = 0; p + 1 < st.ids.size(); ++p) CHECK(st.targets[p] == st.ids[p + 1]);
    std::vector<size_t> holders;
    for (size_t d = 0; d < contents.size(); ++d) {
      if (contents[d].find(bytes) != std::string::npos) holders.push_back(d);
    }
    REQUIRE(holders.size() == 1);
    (split == Split::eval ? eval_docs : train_docs).insert(holders[0]);
    // Far: target byte p; its n-gram's latest earlier occurrence starts before segment s - 1.
    for (int64_t p = 1; p <= S * T; ++p) {
      const int64_t s = (p - 1) / T;
      bool far = false;
      if (p >= n - 1) {
        for (int64_t q = p - 1; q >= n - 1; --q) {  // latest earlier end q
          if (bytes.compare(size_t(q - n + 1), size_t(n), bytes, size_t(p - n + 1), size_t(n)) ==
              0) {
            far = q - n + 1 < (s - 1) * T;
            break;
          }
        }
      }
      CHECK(st.probes[size_t(p - 1)] == (far ? Probe::far : Probe::local));
      far_total += far ? 1 : 0;
    }
  }
  CHECK(far_total > 0);
  CHECK_FALSE(train_docs.empty());
  CHECK_FALSE(eval_docs.empty());
  for (size_t d : eval_docs) CHECK(train_docs.count(d) == 0);  // held-out documents
}

TEST_CASE("tally and metrics on hand-made predictions") {
  // One copy-far stream pair (B = 2), gap 1, string of 4: 8 far positions in segment 1.
  const auto task = make_task(
      "copy-far", 2, {{"gap", "1"}, {"length", "4"}, {"segment-length", "8"}, {"symbols", "4"}});
  const StreamBatch batch = task->batch(Split::eval, 0, 2);
  Tally tally;
  for (int64_t s = 0; s < 2; ++s) {
    std::vector<int64_t> predicted(16, -1);
    std::vector<double> nll(16, 100.0);  // unscored positions must not count
    for (int64_t b = 0; b < 2; ++b) {
      for (int64_t t = 0; t < 8; ++t) {
        const int64_t target = batch.targets[batch.index(s, b, t)];
        if (target == -100) continue;
        // stream 0 right everywhere, stream 1 right on the first of its four symbols
        predicted[size_t(b * 8 + t)] = (b == 0 || t == 0) ? target : target + 1;
        nll[size_t(b * 8 + t)] = std::log(2.0) * (b + 1);  // 1 and 2 bits
      }
    }
    tally.add(batch, s, predicted, nll);
  }
  CHECK(tally.far.tokens == 8);
  CHECK(tally.far.correct == 5);
  CHECK(tally.local.tokens == 0);
  CHECK(task->score(tally) == doctest::Approx(5.0 / 8));
  CHECK(tally.far.bits_per_token() == doctest::Approx(1.5));
  CHECK(task->details(tally)["chance"].get<double>() == doctest::Approx(0.25));
  CHECK_THROWS_WITH_AS(tally.local.accuracy(), doctest::Contains("no scored positions"), Error);
  CHECK_THROWS_WITH_AS(tally.add(batch, 0, {1, 2}, {0.0, 0.0}), doctest::Contains("tally"), Error);

  // recall scores far queries only; local queries are a detail.
  const auto recall = make_task("recall", 0, {});
  Tally r;
  r.far = {10, 9, 0};
  r.local = {20, 5, 0};
  CHECK(recall->score(r) == doctest::Approx(0.9));
  CHECK(recall->details(r)["local_exact_match"].get<double>() == doctest::Approx(0.25));
  CHECK(recall->metric() == "exact_match");

  // longdoc: bits per byte over all bytes; far bytes apart.
  ScratchDir dir;
  for (int d = 0; d < 30; ++d) {
    std::ofstream(dir.path / fmt::format("h{}.hpp", d)) << std::string(300, char('a' + d));
  }
  const auto longdoc = make_task(
      "longdoc", 0, {{"corpus", dir.path.string()}, {"segments", "2"}, {"segment-length", "16"}});
  Tally l;
  l.local = {3, 0, 3 * std::log(2.0)};               // 1 bit each
  l.far = {1, 0, 5 * std::log(2.0)};                 // 5 bits
  CHECK(longdoc->score(l) == doctest::Approx(2.0));  // (3 + 5) / 4
  CHECK(longdoc->details(l)["far_bits_per_byte"].get<double>() == doctest::Approx(5.0));
}

TEST_CASE("tasks: bad names and options are errors naming them") {
  CHECK_THROWS_WITH_AS(make_task("recal", 0, {}), doctest::Contains("unknown task 'recal'"), Error);
  CHECK_THROWS_WITH_AS(make_task("recall", 0, {{"gap", "2"}}),
                       doctest::Contains("unknown option --gap"), Error);
  CHECK_THROWS_WITH_AS(make_task("copy-far", 0, {{"gap", "two"}}), doctest::Contains("--gap"),
                       Error);
  CHECK_THROWS_WITH_AS(make_task("copy-far", 0, {{"gap", "0"}}), doctest::Contains("--gap"), Error);
  CHECK_THROWS_WITH_AS(make_task("copy-far", 0, {{"length", "40"}}),
                       doctest::Contains("--segment-length"), Error);
  CHECK_THROWS_WITH_AS(make_task("recall", 0, {{"segment-length", "16"}}),
                       doctest::Contains("--segment-length 16 is too short"), Error);
  CHECK_THROWS_WITH_AS(make_task("recall", 0, {{"segments", "3"}}), doctest::Contains("--segments"),
                       Error);
  CHECK_THROWS_WITH_AS(make_task("longdoc", 0, {{"corpus", "/no/such/dir"}}),
                       doctest::Contains("/no/such/dir"), Error);
}

}  // namespace mnemo::memory

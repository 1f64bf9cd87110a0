// KnnMemory: FIFO order, overflow and per-stream reset; exact top-k against brute force;
// faiss recall against exact; the MemoryState round trip.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "core/ops/random.h"
#include "memory/knn_memory.h"
#include "support/skip.h"

namespace mnemo::memory {
namespace {

// (B, H, T, D) with entry [b, h, t, 0] = base + t (so the order is readable), others random.
Tensor tagged(int64_t B, int64_t H, int64_t T, int64_t D, double base) {
  std::vector<double> v(size_t(B * H * T * D));
  for (int64_t i = 0; i < B * H * T; ++i) {
    v[size_t(i * D)] = base + double(i % T);
    for (int64_t d = 1; d < D; ++d) v[size_t(i * D + d)] = double(i % 7) - 3.0;
  }
  return from_vector(v, {B, H, T, D}, {DType::f64});
}

// Brute force: the K valid slots of (b, kv head) with the largest cosine similarity.
std::vector<int64_t> brute_force(const Tensor& keys, int64_t count, int64_t b, int64_t h,
                                 const std::vector<double>& q, int64_t K) {
  const int64_t N = keys.size(2), D = keys.size(3);
  std::vector<std::pair<double, int64_t>> scored;
  double qn = 0;
  for (double x : q) qn += x * x;
  for (int64_t j = N - count; j < N; ++j) {
    double dot = 0, kn = 0;
    for (int64_t d = 0; d < D; ++d) {
      const double k = keys.at({b, h, j, d});
      dot += k * q[size_t(d)];
      kn += k * k;
    }
    scored.emplace_back(dot / std::sqrt(qn * kn), j);
  }
  std::sort(scored.rbegin(), scored.rend());
  std::vector<int64_t> out;
  for (int64_t i = 0; i < std::min<int64_t>(K, int64_t(scored.size())); ++i) {
    out.push_back(scored[size_t(i)].second);
  }
  return out;
}

}  // namespace

TEST_CASE("KnnMemory: FIFO order, overflow and per-stream reset") {
  const int64_t B = 2, H = 2, N = 5, D = 3;
  KnnMemory mem(N, H, D);
  KnnMemoryState m = mem.initial(B, {DType::f64});
  CHECK(m.count.to_vector<int64_t>() == std::vector<int64_t>{0, 0});
  m = mem.append(m, tagged(B, H, 3, D, 0), tagged(B, H, 3, D, 100));  // entries 0 1 2
  CHECK(m.count.to_vector<int64_t>() == std::vector<int64_t>{3, 3});
  for (int64_t j = 0; j < 3; ++j) {
    CHECK(m.keys.at({1, 1, 2 + j, 0}) == double(j));
    CHECK(m.values.at({0, 1, 2 + j, 0}) == 100.0 + double(j));
  }
  CHECK(m.keys.at({0, 0, 0, 0}) == 0.0);                               // still empty slots
  m = mem.append(m, tagged(B, H, 3, D, 10), tagged(B, H, 3, D, 110));  // 0 1 2 10 11 12
  CHECK(m.count.to_vector<int64_t>() == std::vector<int64_t>{5, 5});
  const std::vector<double> want = {1, 2, 10, 11, 12};  // the oldest (0) fell out
  for (int64_t j = 0; j < N; ++j) CHECK(m.keys.at({0, 1, j, 0}) == want[size_t(j)]);
  m = mem.reset(m, {0});
  CHECK(m.count.to_vector<int64_t>() == std::vector<int64_t>{0, 5});
  CHECK(m.keys.at({0, 0, 4, 0}) == 0.0);
  CHECK(m.keys.at({1, 0, 4, 0}) == 12.0);
  // A segment longer than the memory keeps its last N entries.
  m = mem.append(m, tagged(B, H, 7, D, 20), tagged(B, H, 7, D, 120));
  CHECK(m.count.to_vector<int64_t>() == std::vector<int64_t>{5, 5});
  for (int64_t j = 0; j < N; ++j) CHECK(m.keys.at({0, 0, j, 0}) == 22.0 + double(j));
  // Detached: a key that requires grad is stored without history.
  const Tensor k = tagged(B, H, 1, D, 0).set_requires_grad();
  CHECK_FALSE(mem.append(m, mul(k, 2.0), k).keys.requires_grad());
  CHECK_THROWS_WITH_AS(mem.append(m, tagged(B, 3, 1, D, 0), tagged(B, 3, 1, D, 0)),
                       doctest::Contains("KnnMemory::append"), Error);
  CHECK_THROWS_WITH_AS(mem.reset(m, {2}), doctest::Contains("out of range"), Error);
}

TEST_CASE("KnnMemory: exact search equals brute force, with GQA and partly filled streams") {
  Generator gen(7);
  const int64_t B = 3, H = 2, G = 2, N = 40, D = 8, T = 5, K = 6;
  KnnMemory mem(N, H, D);
  KnnMemoryState m = mem.initial(B, {DType::f64});
  m = mem.append(m, randn({B, H, 30, D}, {DType::f64}, &gen),
                 randn({B, H, 30, D}, {DType::f64}, &gen));
  m = mem.reset(m, {1});
  m = mem.append(m, randn({B, H, 4, D}, {DType::f64}, &gen),
                 randn({B, H, 4, D}, {DType::f64}, &gen));
  m = mem.reset(m, {2});  // counts 34, 4, 0
  const Tensor q = randn({B, H * G, T, D}, {DType::f64}, &gen);
  const KnnLookup found = mem.search(m, q, K);
  CHECK(found.indices.shape() == Shape{B, H * G, T, K});
  const std::vector<int64_t> counts = {34, 4, 0};
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t hq = 0; hq < H * G; ++hq) {
      for (int64_t t = 0; t < T; ++t) {
        std::vector<double> qv(static_cast<size_t>(D));
        for (int64_t d = 0; d < D; ++d) qv[size_t(d)] = q.at({b, hq, t, d});
        const std::vector<int64_t> want = brute_force(m.keys, counts[size_t(b)], b, hq / G, qv, K);
        std::vector<int64_t> got;
        for (int64_t i = 0; i < K; ++i) {
          if (found.valid.at({b, hq, t, i}) != 0.0)
            got.push_back(int64_t(found.indices.at({b, hq, t, i})));
        }
        CHECK(got == want);  // same slots, best first
        for (size_t i = 0; i < got.size(); ++i) {
          CHECK(found.values.at({b, hq, t, int64_t(i), 1}) == m.values.at({b, hq / G, got[i], 1}));
        }
      }
    }
  }
  CHECK(found.keys.at({2, 0, 0, 0, 0}) == 0.0);  // empty stream: nothing valid, zeros

  // Only the slots some stream holds are searched; the mask form marks the same picks.
  CHECK(found.first == N - 34);
  const KnnLookup masked = mem.search(m, q, K, KnnResult::mask);
  CHECK(masked.first == found.first);
  CHECK_FALSE(masked.values.defined());
  REQUIRE(masked.selected.shape() == Shape{B, H * G, T, N - found.first});
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t hq = 0; hq < H * G; ++hq) {
      for (int64_t t = 0; t < T; ++t) {
        std::vector<bool> picked(size_t(N - found.first), false);
        for (int64_t i = 0; i < K; ++i) {
          CHECK(masked.indices.at({b, hq, t, i}) == found.indices.at({b, hq, t, i}));
          if (found.valid.at({b, hq, t, i}) != 0.0)
            picked[size_t(int64_t(found.indices.at({b, hq, t, i})) - found.first)] = true;
        }
        for (int64_t j = 0; j < N - found.first; ++j)
          CHECK((masked.selected.at({b, hq, t, j}) != 0.0) == picked[size_t(j)]);
      }
    }
  }
  // An empty memory still searches K slots (all invalid).
  const KnnMemoryState empty = mem.initial(B, {DType::f64});
  const KnnLookup none = mem.search(empty, q, K, KnnResult::mask);
  CHECK(none.first == N - K);
  CHECK(sum(none.selected).item() == 0.0);
}

TEST_CASE("KnnMemory: without faiss, asking for it is an error") {
  if (knn_faiss_available()) return mnemo::test::skip("this build has faiss");
  CHECK_THROWS_WITH_AS(KnnMemory(8, 1, 4, KnnSearch::faiss), doctest::Contains("without faiss"),
                       Error);
}

TEST_CASE("KnnMemory: faiss recall at 32 against exact search") {
  if (!knn_faiss_available()) return mnemo::test::skip("this build has no faiss");
  Generator gen(11);
  const int64_t B = 1, H = 2, N = 4096, D = 32, T = 64, K = 32;
  const Tensor keys = randn({B, H, N, D}, {DType::f32}, &gen);
  const Tensor q = randn({B, H, T, D}, {DType::f32}, &gen);
  for (const std::string kind : {"ivf", "hnsw"}) {
    FaissOptions options;
    options.index = kind;
    options.nprobe = 40;  // of sqrt(4096) = 64 lists: random data has no clusters to exploit
    KnnMemory exact(N, H, D), approx(N, H, D, KnnSearch::faiss, options);
    KnnMemoryState m = exact.initial(B, {DType::f32});
    m = exact.append(m, keys, keys);
    const KnnLookup want = exact.search(m, q, K);
    const auto start = std::chrono::steady_clock::now();
    const KnnLookup got = approx.search(m, q, K);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const std::vector<int64_t> a = want.indices.to_vector<int64_t>();
    const std::vector<int64_t> b = got.indices.to_vector<int64_t>();
    int64_t hits = 0;
    for (size_t row = 0; row < a.size(); row += size_t(K)) {
      const std::set<int64_t> truth(a.begin() + long(row), a.begin() + long(row) + K);
      for (int64_t i = 0; i < K; ++i) hits += truth.count(b[row + size_t(i)]);
    }
    const double recall = double(hits) / double(a.size());
    MESSAGE(kind << " recall@32 = " << recall << " (" << seconds << " s)");
    CHECK(recall >= 0.9);
  }
}

TEST_CASE("KnnMemory: state round trip through MemoryState") {
  Generator gen(5);
  KnnMemory mem(6, 2, 4);
  KnnMemoryState m = mem.initial(2, {DType::f64});
  m = mem.append(m, randn({2, 2, 3, 4}, {DType::f64}, &gen),
                 randn({2, 2, 3, 4}, {DType::f64}, &gen));
  MemoryState state;
  mem.save(m, "knn.1", state);
  const KnnMemoryState back = mem.load(state, "knn.1");
  CHECK(back.keys.to_vector<double>() == m.keys.to_vector<double>());
  CHECK(back.values.to_vector<double>() == m.values.to_vector<double>());
  CHECK(back.count.to_vector<int64_t>() == m.count.to_vector<int64_t>());
  CHECK_THROWS_WITH_AS(mem.load(state, "knn.0"), doctest::Contains("knn.0.keys"), Error);
  KnnMemory other(7, 2, 4);
  CHECK_THROWS_WITH_AS(other.load(state, "knn.1"), doctest::Contains("knn.1.keys"), Error);
}

}  // namespace mnemo::memory

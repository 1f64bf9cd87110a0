// Indexing on the GPU against the CPU backend: index_select and gather along every dim,
// index_add and scatter_add with many duplicate indices (the sort-based, atomic-free
// accumulation must give the CPU's sums, bitwise for f32 since the order of additions is the
// same), the embedding backward at GPT-2 size, strided inputs, every dtype, bitwise repeats,
// and out-of-range indices raising mnemo::Error naming the op (never a memory fault).
#include <doctest/doctest.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "compare.h"
#include "core/error.h"
#include "core/ops/factory.h"
#include "core/ops/index.h"
#include "core/ops/view.h"

namespace mnemo {
namespace {

using namespace cuda_test;  // tests/cuda/compare.h

// Indices in [0, size): i64 values of `shape`, with duplicates whenever numel > size.
Tensor indices(const Shape& shape, int64_t size, uint64_t seed) {
  return random_cpu(shape, DType::i64, seed, 0, double(size));
}

// Runs fn, which must throw mnemo::Error with a message containing op.
template <typename Fn>
void check_throws_naming(const std::string& op, Fn&& fn) {
  bool thrown = false;
  try {
    fn();
  } catch (const Error& e) {
    thrown = true;
    CAPTURE(e.what());
    CHECK(std::string(e.what()).find(op) != std::string::npos);
    CHECK(std::string(e.what()).find("out of range") != std::string::npos);
  }
  CHECK(thrown);
}

const Shape kShape = {7, 33, 5};

// One case of the sweep: every dtype, each dim of kShape, each index length n along it, with a
// fresh seed (s.str() names all four, for CAPTURE).
struct Sweep {
  DType dtype;
  int64_t dim, n;
  uint64_t seed;
  std::string str() const {
    return std::string(dtype_name(dtype)) + " dim " + std::to_string(dim) + " n " +
           std::to_string(n) + " seed " + std::to_string(seed);
  }
};

std::vector<Sweep> sweep(std::initializer_list<int64_t> lengths) {
  std::vector<Sweep> cases;
  for (DType dtype : kAll) {
    for (int64_t dim = 0; dim < 3; ++dim) {
      for (int64_t n : lengths) cases.push_back({dtype, dim, n, fresh_seed()});
    }
  }
  return cases;
}

}  // namespace

TEST_CASE("cuda: index_select matches the CPU along every dim") {
  for (const Sweep& s : sweep({1, 13, 70})) {
    CAPTURE(s.str());
    Tensor x = random_cpu_any(kShape, s.dtype, s.seed);
    Tensor index = indices({s.n}, kShape[size_t(s.dim)], s.seed + 1);
    CHECK_CLOSE_TO_CPU(core::index_select(strided_copy(to_gpu(x)), s.dim, to_gpu(index)),
                       core::index_select(x, s.dim, index));
    // A strided index (every other element of a longer buffer).
    CHECK_CLOSE_TO_CPU(core::index_select(to_gpu(x), s.dim, strided_copy(to_gpu(index))),
                       core::index_select(x, s.dim, index));
  }
}

TEST_CASE("cuda: gather matches the CPU along every dim, index smaller than x") {
  for (const Sweep& s : sweep({11})) {  // 11 along dim: longer than x along dim 0 and 2
    CAPTURE(s.str());
    Tensor x = random_cpu_any(kShape, s.dtype, s.seed);
    Shape index_shape = {5, 17, 4};
    index_shape[size_t(s.dim)] = s.n;
    Tensor index = indices(index_shape, kShape[size_t(s.dim)], s.seed + 1);
    CHECK_CLOSE_TO_CPU(core::gather(strided_copy(to_gpu(x)), s.dim, strided_copy(to_gpu(index))),
                       core::gather(x, s.dim, index));
  }
}

TEST_CASE("cuda: index_add matches the CPU with duplicate indices, bitwise for f32") {
  for (const Sweep& s : sweep({1, 9, 200})) {
    CAPTURE(s.str());
    Tensor x = random_cpu_any(kShape, s.dtype, s.seed);
    Shape src_shape = kShape;
    src_shape[size_t(s.dim)] = s.n;
    Tensor src = random_cpu_any(src_shape, s.dtype, s.seed + 1);
    Tensor index = indices({s.n}, kShape[size_t(s.dim)], s.seed + 2);
    Tensor want = core::index_add(x, s.dim, index, src);
    Tensor got =
        core::index_add(strided_copy(to_gpu(x)), s.dim, to_gpu(index), strided_copy(to_gpu(src)));
    CHECK_CLOSE_TO_CPU(got, want);
    if (s.dtype == DType::f32) CHECK(bitwise_equal(got, want));
    Tensor again = core::index_add(to_gpu(x), s.dim, to_gpu(index), to_gpu(src));
    CHECK(bitwise_equal(got, again));
  }
}

TEST_CASE("cuda: embedding backward at GPT-2 size matches the CPU and repeats bitwise") {
  // dweight (V, C) += rows of grad (N, C) at ids (N,): ids drawn from a small range so that
  // every row receives many contributions, plus a few from the whole vocabulary.
  const int64_t V = 50257, N = 16384, C = 768;
  const uint64_t seed = fresh_seed();
  CAPTURE(seed);
  Tensor ids = core::concat({indices({N - 64}, 300, seed), indices({64}, V, seed + 1)}, 0);
  Tensor grad = random_cpu({N, C}, DType::f32, seed + 2);
  Tensor want = core::embedding_backward(grad, ids, V);
  Tensor got = core::embedding_backward(to_gpu(grad), to_gpu(ids), V);
  CHECK_CLOSE_TO_CPU(got, want);
  CHECK(bitwise_equal(got, want));
  CHECK(bitwise_equal(got, core::embedding_backward(to_gpu(grad), to_gpu(ids), V)));
  // bf16 gradients accumulate in f32 (embedding_backward's contract).
  Tensor grad16 = core::to(grad, DType::bf16);
  CHECK_CLOSE_TO_CPU(core::embedding_backward(to_gpu(grad16), to_gpu(ids), V),
                     core::embedding_backward(grad16, ids, V));
  // And the forward: embedding is index_select.
  Tensor weight = random_cpu({V, 64}, DType::f32, seed + 3);
  CHECK_CLOSE_TO_CPU(core::embedding(to_gpu(weight), to_gpu(ids)), core::embedding(weight, ids));
}

TEST_CASE("cuda: scatter_add matches the CPU along every dim with duplicates") {
  for (const Sweep& s : sweep({40})) {  // 40 along dim: many more than x's size, duplicates
    CAPTURE(s.str());
    Tensor x = random_cpu_any(kShape, s.dtype, s.seed);
    Shape index_shape = {5, 17, 4};
    index_shape[size_t(s.dim)] = s.n;
    Tensor index = indices(index_shape, kShape[size_t(s.dim)], s.seed + 1);
    Tensor src = random_cpu_any(index_shape, s.dtype, s.seed + 2);
    Tensor want = core::scatter_add(x, s.dim, index, src);
    Tensor got =
        core::scatter_add(to_gpu(x), s.dim, strided_copy(to_gpu(index)), strided_copy(to_gpu(src)));
    CHECK_CLOSE_TO_CPU(got, want);
    if (s.dtype == DType::f32) CHECK(bitwise_equal(got, want));
    CHECK(bitwise_equal(got, core::scatter_add(to_gpu(x), s.dim, to_gpu(index), to_gpu(src))));
  }
  // one_hot is a scatter_add of ones along a new last dim.
  Tensor ids = indices({3, 11}, 9, fresh_seed());
  CHECK_CLOSE_TO_CPU(one_hot(to_gpu(ids), 9), one_hot(ids, 9));
}

TEST_CASE("cuda: out-of-range indices raise an error naming the op") {
  Tensor x = to_gpu(random_cpu({4, 5}, DType::f32, fresh_seed()));
  for (int64_t bad : {5, -1, 1000000}) {
    CAPTURE(bad);
    Tensor index = to_gpu(from_vector(std::vector<int64_t>{0, 2, bad, 1}, {4}, {DType::i64}));
    Tensor index2 = core::view(index, {1, 4});
    check_throws_naming("index_select", [&] { core::index_select(x, 1, index); });
    check_throws_naming("index_add", [&] {
      core::index_add(x, 1, index, to_gpu(random_cpu({4, 4}, DType::f32, 1)));
    });
    check_throws_naming("gather", [&] { core::gather(x, 1, index2); });
    check_throws_naming("scatter_add", [&] {
      core::scatter_add(x, 1, index2, to_gpu(random_cpu({1, 4}, DType::f32, 1)));
    });
    check_throws_naming("embedding", [&] { core::embedding(x, index); });
  }
  // The GPU still works after the errors (no sticky fault).
  Tensor ok = to_gpu(from_vector(std::vector<int64_t>{4, 0}, {2}, {DType::i64}));
  CHECK(core::index_select(x, 1, ok).to_vector<double>().size() == 8);
}

}  // namespace mnemo

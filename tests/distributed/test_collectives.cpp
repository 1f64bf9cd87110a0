// The collectives checked against closed forms. Rank r contributes values that depend on r,
// so the expected result on every rank follows from sums over r = 0 .. W-1 (W = world size).
// The values are small integers or halves, exact in every float dtype (bf16 included), so
// most checks are exact; the random round trip uses a tolerance.
#include <doctest/doctest.h>

#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/ops/factory.h"
#include "core/ops/view.h"
#include "tests/distributed/dist_test.h"

namespace mnemo::dist {
namespace {

using namespace testing;  // tests/distributed/dist_test.h

// sum / W as the backend computes a mean in dtype: in f64 for f64, else in f32 (16-bit floats
// are summed in f32 too), rounded to dtype. sum is exact in every dtype here.
double mean_in(DType dtype, double sum, int W) {
  if (dtype == DType::f64) return sum / W;
  const float quotient = float(sum) / float(W);
  Tensor t = from_vector(std::vector<float>{quotient}, {1}, TensorOptions{}.with_dtype(dtype));
  return t.to_vector<double>()[0];
}

TEST_CASE("communicator: world size, ranks and backend") {
  Communicator& c = comm();
  CHECK(c.world_size() == expected_world_size());
  CHECK(c.rank() >= 0);
  CHECK(c.rank() < c.world_size());
  CHECK(c.is_main() == (c.rank() == 0));
  CHECK(c.backend() == (launched_by_mpirun() ? "mpi" : "single"));
  // One node: every rank shares memory with every other, and the local ranks are 0..W-1.
  CHECK(c.local_size() == c.world_size());
  std::vector<std::string> locals = c.all_gather_string(std::to_string(c.local_rank()));
  std::vector<bool> seen(size_t(c.world_size()), false);
  for (const std::string& s : locals) {
    const int local = std::stoi(s);
    CHECK((local >= 0 && local < c.world_size()));
    if (local >= 0 && local < c.world_size()) seen[size_t(local)] = true;
  }
  for (bool s : seen) CHECK(s);
  c.barrier();
}

TEST_CASE("all_reduce: sum and avg over ranks, every dtype, odd sizes") {
  Communicator& c = comm();
  const int W = c.world_size(), r = c.rank();
  for (DType dtype : {DType::f32, DType::f64, DType::bf16, DType::f16}) {
    for (int64_t n : {1, 7, 1001}) {
      CAPTURE(dtype);
      CAPTURE(n);
      Tensor x = make(n, dtype, [&](int64_t i) { return contribution(r, i); });
      c.all_reduce(x, ReduceOp::sum);
      CHECK(mismatches(x, [&](int64_t i) { return contribution_sum(W, i); }) == 0);
      Tensor y = make(n, dtype, [&](int64_t i) { return contribution(r, i); });
      c.all_reduce(y, ReduceOp::avg);
      CHECK(mismatches(y, [&](int64_t i) { return mean_in(dtype, contribution_sum(W, i), W); }) ==
            0);
    }
  }
  for (DType dtype : {DType::i32, DType::i64}) {
    Tensor x = make(13, dtype, [&](int64_t i) { return double((r + 1) * i); });
    c.all_reduce(x, ReduceOp::sum);
    CHECK(mismatches(x, [&](int64_t i) { return double(i) * W * (W + 1) / 2; }) == 0);
  }
}

TEST_CASE("all_reduce: a 16-bit tensor longer than one chunk, and a 2-d tensor") {
  Communicator& c = comm();
  const int W = c.world_size(), r = c.rank();
  const int64_t n = (int64_t(1) << 20) + 3;  // the MPI path sums bf16 in chunks of 2^20
  Tensor x = make(n, DType::bf16, [&](int64_t i) { return contribution(r, i); });
  c.all_reduce(x);
  CHECK(mismatches(x, [&](int64_t i) { return contribution_sum(W, i); }) == 0);

  Tensor m = from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3});
  c.all_reduce(m, ReduceOp::sum);
  CHECK(mismatches(m, [&](int64_t i) { return double(i + 1) * W; }) == 0);
  CHECK(m.shape() == Shape{2, 3});
}

TEST_CASE("broadcast: every rank gets root's values, from every root and dtype") {
  Communicator& c = comm();
  const int r = c.rank();
  for (int root = 0; root < c.world_size(); ++root) {
    for (DType dtype : {DType::f32, DType::f64, DType::bf16, DType::i64, DType::boolean}) {
      CAPTURE(root);
      CAPTURE(dtype);
      auto value = [](int rank, int64_t i) { return double((rank * 5 + i) % 2 == 0); };
      Tensor x = dtype == DType::boolean
                     ? make(9, dtype, [&](int64_t i) { return value(r, i); })
                     : make(9, dtype, [&](int64_t i) { return 10.0 * r + double(i); });
      c.broadcast(x, root);
      if (dtype == DType::boolean) {
        CHECK(mismatches(x, [&](int64_t i) { return value(root, i); }) == 0);
      } else {
        CHECK(mismatches(x, [&](int64_t i) { return 10.0 * root + double(i); }) == 0);
      }
    }
  }
}

TEST_CASE("reduce_scatter: rank q gets slice q of the sum, odd slice sizes") {
  Communicator& c = comm();
  const int W = c.world_size(), q = c.rank();
  for (DType dtype : {DType::f32, DType::f64, DType::bf16}) {
    for (int64_t n : {1, 5, 13}) {
      CAPTURE(dtype);
      CAPTURE(n);
      // Rank r's input element j = 4 r + j % 11  =>  sum over r = 2 W (W - 1) + W (j % 11).
      Tensor input = make(W * n, dtype, [&](int64_t j) { return 4.0 * q + double(j % 11); });
      Tensor output = zeros({n}, TensorOptions{}.with_dtype(dtype));
      c.reduce_scatter(input, output, ReduceOp::sum);
      auto sum = [&](int64_t i) {
        return 2.0 * W * (W - 1) + double(W) * double((q * n + i) % 11);
      };
      CHECK(mismatches(output, sum) == 0);
      Tensor mean = zeros({n}, TensorOptions{}.with_dtype(dtype));
      c.reduce_scatter(input, mean, ReduceOp::avg);
      CHECK(mismatches(mean, [&](int64_t i) { return mean_in(dtype, sum(i), W); }) == 0);
    }
  }
}

TEST_CASE("all_gather: output holds every rank's input in rank order") {
  Communicator& c = comm();
  const int W = c.world_size(), r = c.rank();
  for (DType dtype : {DType::f32, DType::f64, DType::bf16, DType::i32}) {
    for (int64_t n : {1, 6, 11}) {
      CAPTURE(dtype);
      CAPTURE(n);
      Tensor input = make(n, dtype, [&](int64_t i) { return 100.0 * r + double(i); });
      Tensor output = full({W * n}, -1, TensorOptions{}.with_dtype(dtype));
      c.all_gather(input, output);
      CHECK(mismatches(output, [&](int64_t j) { return 100.0 * double(j / n) + double(j % n); }) ==
            0);
    }
  }
}

TEST_CASE("reduce_scatter then all_gather equals all_reduce (random values)") {
  Communicator& c = comm();
  const int W = c.world_size();
  const int64_t n = 37;
  std::mt19937 rng(1234u + unsigned(c.rank()));
  std::normal_distribution<float> normal;
  std::vector<float> values(static_cast<size_t>(W * n));
  for (float& v : values) v = normal(rng);
  Tensor full_grad = from_vector(values, {W * n});
  Tensor shard = zeros({n});
  c.reduce_scatter(full_grad, shard, ReduceOp::avg);
  Tensor gathered = zeros({W * n});
  c.all_gather(shard, gathered);
  Tensor reference = from_vector(values, {W * n});
  c.all_reduce(reference, ReduceOp::avg);
  const std::vector<float> want = reference.to_vector<float>();
  CHECK(mismatches(
            gathered, [&](int64_t i) { return double(want[size_t(i)]); }, 1e-6) == 0);
}

TEST_CASE("collectives: empty tensors are no-ops") {
  Communicator& c = comm();
  Tensor empty_tensor = zeros({0});
  c.all_reduce(empty_tensor);
  c.broadcast(empty_tensor, 0);
  Tensor out = zeros({0});
  c.reduce_scatter(empty_tensor, out);
  c.all_gather(empty_tensor, out);
  CHECK(out.numel() == 0);
}

// These throw before any message is sent, on every rank alike, so no rank is left waiting.
TEST_CASE("collectives: bad arguments are errors naming the op") {
  Communicator& c = comm();
  const int W = c.world_size();
  Tensor m = zeros({3, 4});
  Tensor strided = core::transpose(m, 0, 1);
  CHECK_THROWS_WITH_AS(c.all_reduce(strided), doctest::Contains("all_reduce: tensor"), Error);
  Tensor flags = zeros({3}, TensorOptions{}.with_dtype(DType::boolean));
  CHECK_THROWS_WITH_AS(c.all_reduce(flags), doctest::Contains("all_reduce: cannot sum"), Error);
  Tensor counts = zeros({3}, TensorOptions{}.with_dtype(DType::i64));
  CHECK_THROWS_WITH_AS(c.all_reduce(counts, ReduceOp::avg),
                       doctest::Contains("all_reduce: cannot avg"), Error);
  Tensor x = zeros({3});
  CHECK_THROWS_WITH_AS(c.broadcast(x, W), doctest::Contains("broadcast: root"), Error);
  Tensor wrong = zeros({W * 3 + 1});
  Tensor out = zeros({3});
  CHECK_THROWS_WITH_AS(c.reduce_scatter(wrong, out), doctest::Contains("reduce_scatter: input"),
                       Error);
  Tensor out64 = zeros({W * 3}, TensorOptions{}.with_dtype(DType::f64));
  CHECK_THROWS_WITH_AS(c.all_gather(x, out64), doctest::Contains("all_gather: input is f32"),
                       Error);
  Tensor short_out = zeros({W * 3 - 1});
  CHECK_THROWS_WITH_AS(c.all_gather(x, short_out), doctest::Contains("all_gather: output has"),
                       Error);
  CHECK_THROWS_WITH_AS(c.set_timeout_seconds(-1), doctest::Contains("timeout"), Error);
  c.barrier();
}

TEST_CASE("string helpers: all_gather_string, broadcast_string, check_same_on_all_ranks") {
  Communicator& c = comm();
  const int W = c.world_size(), r = c.rank();
  // Rank 0 sends an empty string; rank r > 0 sends r copies of a letter.
  auto text = [](int rank) { return std::string(size_t(rank), char('a' + rank)); };
  std::vector<std::string> all = c.all_gather_string(text(r));
  CHECK(all.size() == size_t(W));
  for (int k = 0; k < W && k < int(all.size()); ++k) CHECK(all[size_t(k)] == text(k));

  const int root = W - 1;
  CHECK(c.broadcast_string("from " + std::to_string(r), root) == "from " + std::to_string(root));
  CHECK(c.broadcast_string(r == 0 ? "" : "ignored", 0).empty());

  CHECK_NOTHROW(check_same_on_all_ranks(c, "config hash", "abc123"));
  if (W > 1) {
    CHECK_THROWS_WITH_AS(check_same_on_all_ranks(c, "config hash", "hash" + std::to_string(r)),
                         doctest::Contains("config hash differs between ranks: rank 1 has "
                                           "'hash1', rank 0 has 'hash0'"),
                         Error);
  }
}

TEST_CASE("SingleProcessCommunicator: identities and copies in a world of one") {
  SingleProcessCommunicator single;
  CHECK(single.world_size() == 1);
  CHECK(single.rank() == 0);
  CHECK(single.local_rank() == 0);
  CHECK(single.backend() == "single");
  Tensor x = tensor({1.5, -2, 3});
  single.all_reduce(x, ReduceOp::avg);
  CHECK(x.to_vector<double>() == std::vector<double>{1.5, -2, 3});
  Tensor out = zeros({3});
  single.reduce_scatter(x, out);
  CHECK(out.to_vector<double>() == std::vector<double>{1.5, -2, 3});
  Tensor gathered = zeros({3});
  single.all_gather(out, gathered);
  CHECK(gathered.to_vector<double>() == std::vector<double>{1.5, -2, 3});
  CHECK(single.all_gather_string("x") == std::vector<std::string>{"x"});
  CHECK(single.broadcast_string("y") == "y");
  CHECK_THROWS_WITH_AS(single.broadcast(x, 1), doctest::Contains("root 1 is not a rank"), Error);
  single.barrier();
}

}  // namespace
}  // namespace mnemo::dist

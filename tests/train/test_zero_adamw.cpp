// ZeroAdamW (ZeRO-1 sharded AdamW): with one process it is bit for bit optim::AdamW; its
// checkpoint state has AdamW's format and resumes exactly; with W ranks (simulated by threads
// sharing an in-process communicator) and a parameter count that W does not divide, it matches
// AdamW on the rank-averaged gradient and leaves every rank with identical parameters.
#include <doctest/doctest.h>

#include <barrier>
#include <cmath>
#include <cstring>
#include <exception>
#include <thread>

#include "core/error.h"
#include "core/ops/factory.h"
#include "core/ops/view.h"
#include "optim/adamw.h"
#include "train/distributed/communicator.h"
#include "train/lib/zero_adamw.h"

using namespace mnemo;

namespace {

// W ranks as W threads of this process: each collective publishes its buffer, waits for all,
// reduces/gathers from every rank's buffer in rank order, and waits again before returning.
struct Hub {
  explicit Hub(int world) : world(world), sync(world), in(world) {}
  int world;
  std::barrier<> sync;
  std::vector<const void*> in;
};

class ThreadCommunicator final : public dist::Communicator {
 public:
  ThreadCommunicator(Hub& hub, int rank)
      : Communicator(rank, hub.world, rank, hub.world, {}), hub_(hub) {}
  std::string_view backend() const override { return "threads"; }
  [[noreturn]] void abort(int, std::string_view) override { std::abort(); }

 protected:
  template <typename T>
  void reduce(int64_t from, int64_t n, T* out, dist::ReduceOp op) {
    for (int64_t i = 0; i < n; ++i) {
      T sum = 0;
      for (int r = 0; r < hub_.world; ++r) sum += static_cast<const T*>(hub_.in[r])[from + i];
      out[i] = op == dist::ReduceOp::avg ? sum / T(hub_.world) : sum;
    }
  }
  void reduce_any(int64_t from, int64_t n, void* out, DType dtype, dist::ReduceOp op) {
    MNEMO_CHECK(dtype == DType::f32 || dtype == DType::f64, "test communicator: f32/f64 only");
    if (dtype == DType::f32)
      reduce(from, n, static_cast<float*>(out), op);
    else
      reduce(from, n, static_cast<double*>(out), op);
  }
  void do_all_reduce(void* data, int64_t numel, DType dtype, dist::ReduceOp op) override {
    std::vector<char> result(numel * dtype_size(dtype));
    hub_.in[rank()] = data;
    hub_.sync.arrive_and_wait();
    reduce_any(0, numel, result.data(), dtype, op);
    hub_.sync.arrive_and_wait();
    std::memcpy(data, result.data(), result.size());
  }
  void do_broadcast(void*, int64_t, DType, int) override {
    fail("test communicator: no broadcast");
  }
  void do_reduce_scatter(const void* input, void* output, int64_t n, DType dtype,
                         dist::ReduceOp op) override {
    hub_.in[rank()] = input;
    hub_.sync.arrive_and_wait();
    reduce_any(rank() * n, n, output, dtype, op);
    hub_.sync.arrive_and_wait();
  }
  void do_all_gather(const void* input, void* output, int64_t n, DType dtype) override {
    hub_.in[rank()] = input;
    hub_.sync.arrive_and_wait();
    const size_t bytes = n * dtype_size(dtype);
    for (int r = 0; r < hub_.world; ++r) {
      std::memcpy(static_cast<char*>(output) + r * bytes, hub_.in[r], bytes);
    }
    hub_.sync.arrive_and_wait();
  }
  void do_barrier() override { hub_.sync.arrive_and_wait(); }
  std::vector<std::string> do_all_gather_string(const std::string&) override {
    fail("test communicator: no strings");
  }
  std::string do_broadcast_string(const std::string&, int) override {
    fail("test communicator: no strings");
  }

 private:
  Hub& hub_;
};

const std::vector<Shape> kShapes = {{3, 5}, {7}, {2, 2, 3}, {4}};  // 38 elements

// Deterministic pseudo-random values for (seed, index).
float value(uint64_t seed, int64_t i) {
  uint64_t x = (seed + 1) * 0x9E3779B97F4A7C15ull + uint64_t(i) * 0xBF58476D1CE4E5B9ull;
  x ^= x >> 31;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 29;
  return float(double(x % 20001) / 10000.0 - 1.0);
}

Tensor make(const Shape& shape, uint64_t seed) {
  std::vector<float> v(numel(shape));
  for (size_t i = 0; i < v.size(); ++i) v[i] = value(seed, int64_t(i));
  return from_vector(v, shape);
}

std::vector<Tensor> make_params() {
  std::vector<Tensor> ps;
  for (size_t i = 0; i < kShapes.size(); ++i) {
    ps.push_back(make(kShapes[i], 100 + i).set_requires_grad(true));
  }
  return ps;
}

std::vector<Tensor> copy_params(const std::vector<Tensor>& from) {
  std::vector<Tensor> ps;
  for (const Tensor& p : from) ps.push_back(core::clone(p).set_requires_grad(true));
  return ps;
}

// Two groups with different decay and lr_scale: params 0, 2 decay; 1, 3 do not.
std::vector<optim::ParamGroup> groups_of(const std::vector<Tensor>& ps) {
  return {{{"w0", "w2"}, {ps[0], ps[2]}, 0.1, 1.0}, {{"b1", "b3"}, {ps[1], ps[3]}, 0.0, 0.5}};
}

// The gradient rank `rank` sees for parameter i at step s.
void set_grads(const std::vector<Tensor>& ps, int step, int rank) {
  for (size_t i = 0; i < ps.size(); ++i)
    ps[i].set_grad(make(ps[i].shape(), 1000 * step + 10 * rank + i));
}

double lr_at(int step) {
  return 0.01 / (1 + step);
}

std::vector<float> all_values(const std::vector<Tensor>& ps) {
  std::vector<float> out;
  for (const Tensor& p : ps) {
    auto v = p.to_vector<float>();
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

// One ZeroAdamW step in a single process; returns the gradient norm.
double zero_step(train::ZeroAdamW& zero, const std::vector<Tensor>& ps, int step) {
  zero.zero_grad();
  set_grads(ps, step, 0);
  double norm = zero.grad_norm();
  zero.set_lr(lr_at(step));
  zero.step(std::min(1.0, 2.0 / norm));  // clip at 2: active on some steps
  return norm;
}

void adamw_step(optim::AdamW& adamw, const std::vector<Tensor>& ps, int step, double norm) {
  adamw.zero_grad();
  set_grads(ps, step, 0);
  adamw.set_lr(lr_at(step));
  adamw.step(std::min(1.0, 2.0 / norm));
}

double naive_norm(const std::vector<Tensor>& ps) {
  double sum = 0;
  for (const Tensor& p : ps) {
    for (float g : p.grad().to_vector<float>()) sum += double(g) * double(g);
  }
  return std::sqrt(sum);
}

}  // namespace

TEST_CASE("ZeroAdamW with one process is bit for bit AdamW, clipping and groups included") {
  dist::SingleProcessCommunicator comm;
  auto pz = make_params();
  auto pa = copy_params(pz);
  train::ZeroAdamW zero(comm, groups_of(pz), 0.01, 0.9, 0.95, 1e-8);
  optim::AdamW adamw(groups_of(pa), 0.01, 0.9, 0.95, 1e-8);
  CHECK(zero.numel() == 38);
  CHECK(zero.shard_numel() == 38);
  bool clipped = false;
  for (int s = 0; s < 5; ++s) {
    double norm = zero_step(zero, pz, s);
    CHECK(norm == doctest::Approx(naive_norm(pz)).epsilon(1e-12));
    clipped |= norm > 2.0;
    adamw_step(adamw, pa, s, norm);
    REQUIRE(all_values(pz) == all_values(pa));
  }
  CHECK(clipped);
  CHECK(zero.steps_taken() == 5);
  // Same state, same names and shapes as AdamW's.
  auto zs = zero.state_tensors();
  auto as = adamw.state_tensors();
  REQUIRE(zs.size() == as.size());
  for (size_t i = 0; i < zs.size(); ++i) {
    CHECK(zs[i].first == as[i].first);
    CHECK(zs[i].second.shape() == as[i].second.shape());
    CHECK(zs[i].second.to_vector<float>() == as[i].second.to_vector<float>());
  }
}

TEST_CASE("ZeroAdamW state round trip resumes bit for bit, also into and from AdamW") {
  dist::SingleProcessCommunicator comm;
  auto pu = make_params();  // uninterrupted
  train::ZeroAdamW uninterrupted(comm, groups_of(pu), 0.01);
  for (int s = 0; s < 5; ++s) zero_step(uninterrupted, pu, s);

  auto pi = make_params();  // interrupted after 3 steps
  optim::NamedTensors state;
  int64_t steps = 0;
  {
    train::ZeroAdamW first(comm, groups_of(pi), 0.01);
    for (int s = 0; s < 3; ++s) zero_step(first, pi, s);
    state = first.state_tensors();
    steps = first.steps_taken();
  }
  auto pr = copy_params(pi);  // "loaded from the checkpoint"
  train::ZeroAdamW resumed(comm, groups_of(pr), 0.01);
  resumed.load_state_tensors(state);
  resumed.set_steps_taken(steps);
  for (int s = 3; s < 5; ++s) zero_step(resumed, pr, s);
  CHECK(all_values(pr) == all_values(pu));

  // The same state continues in optim::AdamW exactly as in ZeroAdamW.
  auto pa = copy_params(pi);
  optim::AdamW adamw(groups_of(pa), 0.01);
  adamw.load_state_tensors(state);
  adamw.set_steps_taken(steps);
  auto pz = copy_params(pi);
  train::ZeroAdamW zero(comm, groups_of(pz), 0.01);
  zero.load_state_tensors(adamw.state_tensors());
  zero.set_steps_taken(steps);
  for (int s = 3; s < 5; ++s) {
    double norm = zero_step(zero, pz, s);
    adamw_step(adamw, pa, s, norm);
  }
  CHECK(all_values(pa) == all_values(pu));
  CHECK(all_values(pz) == all_values(pu));
}

TEST_CASE("ZeroAdamW rejects bad parameters and bad state, naming what is wrong") {
  dist::SingleProcessCommunicator comm;
  auto ps = make_params();
  train::ZeroAdamW zero(comm, groups_of(ps), 0.01);
  auto state = zero.state_tensors();
  REQUIRE(state.size() == 8);
  auto throws_with = [&](optim::NamedTensors bad, const std::string& text) {
    try {
      zero.load_state_tensors(bad);
      FAIL("no error for ", text);
    } catch (const Error& e) {
      CHECK_MESSAGE(std::string(e.what()).find(text) != std::string::npos, e.what());
    }
  };
  auto renamed = state;
  renamed[0].first = "w9.exp_avg";
  throws_with(renamed, "unknown optimizer state 'w9.exp_avg'");
  auto reshaped = state;
  reshaped[0].second = zeros({15});
  throws_with(reshaped, "'w0.exp_avg' has shape");
  auto partial = state;
  partial.erase(partial.begin() + 1);  // w0.exp_avg_sq
  throws_with(partial, "'w0.exp_avg_sq' is missing");
  auto doubled = state;
  doubled.push_back(state[0]);
  throws_with(doubled, "'w0.exp_avg' given twice");

  Tensor f64 = zeros({3}, {DType::f64}).set_requires_grad(true);
  CHECK_THROWS_WITH_AS(train::ZeroAdamW(comm, {{{"x"}, {f64}}}, 0.01),
                       doctest::Contains("'x' is f64"), Error);
  CHECK_THROWS_WITH_AS(train::ZeroAdamW(comm, {{{"a", "a"}, {ps[0], ps[1]}}}, 0.01),
                       doctest::Contains("'a' appears twice"), Error);
  // No gradients at all: zeros, norm 0; a step then only decays the decay group.
  auto before = all_values(ps);
  CHECK(zero.grad_norm() == 0.0);
  zero.set_lr(0.5);
  zero.step(1.0);
  auto after = all_values(ps);
  for (size_t k = 0; k < 15; ++k) CHECK(after[k] == before[k] * (1 - 0.5f * 0.1f));
  for (size_t k = 15; k < 22; ++k) CHECK(after[k] == before[k]);
}

// Runs ZeroAdamW on `world` thread-ranks for `steps` steps, rank r seeing set_grads(.., r);
// returns every rank's final parameters and norms, and (from rank 0) the gathered state.
struct RankResult {
  std::vector<float> params;
  std::vector<double> norms;
  optim::NamedTensors state;
  std::string error;
};

std::vector<RankResult> run_ranks(int world, int first_step, int last_step,
                                  const std::vector<Tensor>& start,
                                  const optim::NamedTensors* resume_state) {
  Hub hub(world);
  std::vector<RankResult> results(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        ThreadCommunicator comm(hub, r);
        auto ps = copy_params(start);
        train::ZeroAdamW zero(comm, groups_of(ps), 0.01);
        if (resume_state) {
          zero.load_state_tensors(*resume_state);
          zero.set_steps_taken(first_step);
        }
        for (int s = first_step; s < last_step; ++s) {
          zero.zero_grad();
          set_grads(ps, s, r);
          double norm = zero.grad_norm();
          results[r].norms.push_back(norm);
          zero.set_lr(lr_at(s));
          zero.step(std::min(1.0, 2.0 / norm));
        }
        results[r].params = all_values(ps);
        results[r].state = zero.state_tensors();
      } catch (const std::exception& e) {
        results[r].error = e.what();  // a failing rank deadlocks the others; keep tests simple
      }
    });
  }
  for (auto& t : threads) t.join();
  return results;
}

TEST_CASE(
    "ZeroAdamW on 2, 3 and 5 ranks with 38 parameters (uneven shards) matches AdamW on the mean "
    "gradient") {
  const auto start = make_params();
  for (int world : {2, 3, 5}) {
    CAPTURE(world);
    auto results = run_ranks(world, 0, 4, start, nullptr);
    for (auto& r : results) REQUIRE(r.error.empty());

    // Reference: AdamW on one copy whose gradient is the mean of the ranks' gradients.
    auto pa = copy_params(start);
    optim::AdamW adamw(groups_of(pa), 0.01);
    for (int s = 0; s < 4; ++s) {
      adamw.zero_grad();
      std::vector<Tensor> mean(pa.size());
      for (size_t i = 0; i < pa.size(); ++i) {
        std::vector<float> acc(pa[i].numel(), 0.f);
        for (int r = 0; r < world; ++r) {
          for (size_t k = 0; k < acc.size(); ++k) acc[k] += value(1000 * s + 10 * r + i, k);
        }
        for (float& a : acc) a /= float(world);
        pa[i].set_grad(from_vector(acc, pa[i].shape()));
      }
      double norm = naive_norm(pa);
      for (auto& r : results) CHECK(r.norms[s] == doctest::Approx(norm).epsilon(1e-12));
      adamw.set_lr(lr_at(s));
      adamw.step(std::min(1.0, 2.0 / norm));
    }
    auto expected = all_values(pa);
    for (auto& r : results) {
      CHECK(r.params == results[0].params);  // every rank holds the same parameters
      REQUIRE(r.params.size() == expected.size());
      for (size_t k = 0; k < expected.size(); ++k) {
        CHECK(std::abs(r.params[k] - expected[k]) <= 1e-6f);
      }
    }
    // The gathered state is the same on every rank and close to AdamW's.
    auto as = adamw.state_tensors();
    for (auto& r : results) {
      REQUIRE(r.state.size() == as.size());
      for (size_t i = 0; i < as.size(); ++i) {
        CHECK(r.state[i].first == as[i].first);
        CHECK(r.state[i].second.to_vector<float>() ==
              results[0].state[i].second.to_vector<float>());
        auto got = r.state[i].second.to_vector<float>();
        auto want = as[i].second.to_vector<float>();
        for (size_t k = 0; k < got.size(); ++k) CHECK(std::abs(got[k] - want[k]) <= 1e-6f);
      }
    }
  }
}

TEST_CASE(
    "ZeroAdamW state saved with 3 ranks resumes bit for bit on 3 ranks and reshards to 2 and 5") {
  const auto start = make_params();
  auto uninterrupted = run_ranks(3, 0, 5, start, nullptr);
  auto first = run_ranks(3, 0, 3, start, nullptr);
  for (auto& r : first) REQUIRE(r.error.empty());
  // Parameters after step 3, as a checkpoint would hold them.
  std::vector<Tensor> mid;
  size_t at = 0;
  for (const Shape& shape : kShapes) {
    std::vector<float> v(first[0].params.begin() + at, first[0].params.begin() + at + numel(shape));
    mid.push_back(from_vector(v, shape).set_requires_grad(true));
    at += v.size();
  }
  auto same_world = run_ranks(3, 3, 5, mid, &first[0].state);
  REQUIRE(same_world[0].error.empty());
  CHECK(same_world[0].params == uninterrupted[0].params);
  // Resharding: the 3-rank state loaded on 2 ranks (and on 5) gathers back unchanged.
  for (int world : {2, 5}) {
    auto resharded = run_ranks(world, 3, 3, mid, &first[0].state);
    REQUIRE(resharded[0].error.empty());
    REQUIRE(resharded[0].state.size() == first[0].state.size());
    for (size_t i = 0; i < first[0].state.size(); ++i) {
      CHECK(resharded[0].state[i].first == first[0].state[i].first);
      CHECK(resharded[0].state[i].second.to_vector<float>() ==
            first[0].state[i].second.to_vector<float>());
    }
  }
}

// The NCCL backend and the device-aware factory, in the distributed test program (main.cpp):
// every run of it (a plain process, mpirun -n 1/2/3) runs these cases on every rank.
//
//   factory cases     CPU only: which backend make_communicator(options, device) picks, and
//                     that a communicator refuses tensors of another device, naming the
//                     collective.
//   "nccl: ..."       need a GPU and a build with NCCL; otherwise doctest's skip decorator
//                     marks them skipped (the run's summary counts them). An NcclCommunicator over
//                     this job's communicator (make_communicator()) runs every collective on CUDA
//                     tensors, checked against the same closed forms as the MPI tests (rank r
//                     contributes values that depend on r; the sums are exact in every dtype).
//                     Under mpirun with more ranks than GPUs, the case checks the "one GPU per
//                     rank" error instead.
#include <doctest/doctest.h>

#include <cstdio>
#include <functional>
#include <memory>
#include <vector>

#include "core/ops/factory.h"
#include "core/ops/view.h"
#include "tests/distributed/dist_test.h"
#include "train/distributed/nccl_communicator.h"

#if MNEMO_HAVE_NCCL
#include "core/ops/elementwise.h"
#include "cuda/runtime.h"
#endif

namespace mnemo::dist {
namespace {

using namespace testing;  // tests/distributed/dist_test.h

// ---- the factory (no GPU needed) ----

TEST_CASE("factory: a CPU device gives the launcher's backend") {
  std::unique_ptr<Communicator> c = make_communicator({}, Device::cpu());
  const bool mpi = launched_by_mpirun() && built_with_mpi();
  CHECK(c->backend() == (mpi ? "mpi" : "single"));
  CHECK(c->device() == Device::cpu());
  CHECK(c->world_size() == expected_world_size());
  CHECK(c->rank() == comm().rank());
}

TEST_CASE("factory: a GPU device in a plain process is single-process on that GPU" *
          doctest::skip(launched_by_mpirun())) {
  // Making it touches no GPU; a CPU tensor is refused before any GPU work.
  std::unique_ptr<Communicator> c = make_communicator({}, Device::cuda(1));
  CHECK(c->backend() == "single");
  CHECK(c->device() == Device::cuda(1));
  CHECK(c->world_size() == 1);
  Tensor x = ones({3});
  CHECK_THROWS_WITH_AS(
      c->all_reduce(x),
      doctest::Contains("all_reduce: tensor is on cpu, but this communicator (single) takes "
                        "cuda:1 tensors"),
      Error);
  Tensor out = ones({3});
  CHECK_THROWS_WITH_AS(c->all_gather(x, out), doctest::Contains("all_gather: input is on cpu"),
                       Error);
  // for_device keeps a CPU communicator for the CPU and refuses to move a GPU one.
  std::unique_ptr<Communicator> cpu = for_device(make_communicator(), Device::cpu());
  CHECK(cpu->backend() == "single");
  CHECK_THROWS_WITH_AS(for_device(std::move(c), Device::cuda(0)),
                       doctest::Contains("already works on cuda:1"), Error);
}

// With NCCL, the nccl case below checks the factory's choice under mpirun.
TEST_CASE("factory: a GPU device under mpirun without NCCL" *
          doctest::skip(!launched_by_mpirun() || built_with_nccl())) {
  if (comm().world_size() > 1) {
    CHECK_THROWS_WITH_AS(make_communicator({}, Device::cuda()),
                         doctest::Contains("this build has no NCCL"), Error);
  } else {
    CHECK(make_communicator({}, Device::cuda())->backend() == "single");
  }
}

#if MNEMO_HAVE_NCCL

// ---- NCCL on CUDA tensors ----

// NCCL's avg rounds once or twice in dtype; this is how far from the exact mean it may land.
double avg_tolerance(DType dtype) {
  switch (dtype) {
    case DType::f64: return 1e-14;
    case DType::f32: return 1e-6;
    case DType::f16: return 2e-3;
    default: return 1e-2;  // bf16
  }
}

void check_all_reduce(Communicator& c) {
  const int W = c.world_size(), r = c.rank();
  for (DType dtype : {DType::f32, DType::f64, DType::bf16, DType::f16}) {
    for (int64_t n : {1, 1001}) {
      CAPTURE(dtype);
      CAPTURE(n);
      Tensor x = make(
          n, dtype, [&](int64_t i) { return contribution(r, i); }, c.device());
      c.all_reduce(x, ReduceOp::sum);
      CHECK(mismatches(x, [&](int64_t i) { return contribution_sum(W, i); }) == 0);
      Tensor y = make(
          n, dtype, [&](int64_t i) { return contribution(r, i); }, c.device());
      c.all_reduce(y, ReduceOp::avg);
      CHECK(mismatches(
                y, [&](int64_t i) { return contribution_sum(W, i) / W; }, 0,
                avg_tolerance(dtype)) == 0);
    }
  }
  for (DType dtype : {DType::i32, DType::i64}) {  // integers: sum only
    CAPTURE(dtype);
    Tensor x = make(
        13, dtype, [&](int64_t i) { return double((r + 1) * i); }, c.device());
    c.all_reduce(x, ReduceOp::sum);
    CHECK(mismatches(x, [&](int64_t i) { return double(i) * W * (W + 1) / 2; }) == 0);
  }
}

void check_broadcast(Communicator& c) {
  const int r = c.rank();
  for (int root = 0; root < c.world_size(); ++root) {
    for (DType dtype : {DType::f32, DType::f64, DType::bf16, DType::i64, DType::boolean}) {
      CAPTURE(root);
      CAPTURE(dtype);
      auto value = [&](int rank, int64_t i) {
        return dtype == DType::boolean ? double((i + rank) % 2) : double(rank * 10 + i % 5);
      };
      Tensor x = make(
          37, dtype, [&](int64_t i) { return value(r, i); }, c.device());
      c.broadcast(x, root);
      CHECK(mismatches(x, [&](int64_t i) { return value(root, i); }) == 0);
    }
  }
}

void check_reduce_scatter(Communicator& c) {
  const int W = c.world_size(), r = c.rank();
  const int64_t n = 333;  // per rank
  for (DType dtype : {DType::f32, DType::f64, DType::bf16, DType::i32}) {
    CAPTURE(dtype);
    Tensor input = make(
        W * n, dtype, [&](int64_t j) { return contribution(r, j); }, c.device());
    if (dtype == DType::i32) {
      input = make(
          W * n, dtype, [&](int64_t j) { return double(r + j); }, c.device());
    }
    Tensor output = zeros({n}, {.dtype = dtype, .device = c.device()});
    c.reduce_scatter(input, output, ReduceOp::sum);
    if (dtype == DType::i32) {
      CHECK(mismatches(output, [&](int64_t i) {
              return double(W) * double(r * n + i) + W * (W - 1) / 2.0;
            }) == 0);
    } else {
      CHECK(mismatches(output, [&](int64_t i) { return contribution_sum(W, r * n + i); }) == 0);
    }
  }
  Tensor input = make(
      W * n, DType::f32, [&](int64_t j) { return contribution(r, j); }, c.device());
  Tensor output = zeros({n}, {.device = c.device()});
  c.reduce_scatter(input, output, ReduceOp::avg);
  CHECK(mismatches(
            output, [&](int64_t i) { return contribution_sum(W, r * n + i) / W; }, 0, 1e-6) == 0);
}

void check_all_gather(Communicator& c) {
  const int W = c.world_size(), r = c.rank();
  const int64_t n = 257;
  for (DType dtype : {DType::f32, DType::f64, DType::bf16, DType::i64, DType::boolean}) {
    CAPTURE(dtype);
    auto value = [&](int rank, int64_t i) {
      return dtype == DType::boolean ? double((i + rank) % 2) : double(rank * 8 + i % 8);
    };
    Tensor input = make(
        n, dtype, [&](int64_t i) { return value(r, i); }, c.device());
    Tensor output = zeros({W * n}, {.dtype = dtype, .device = c.device()});
    c.all_gather(input, output);
    CHECK(mismatches(output, [&](int64_t j) { return value(int(j / n), j % n); }) == 0);
  }
}

// The events order the collective with the compute stream both ways, without a host wait: the
// op must read what the kernel before it wrote, and the kernel after it must read its result.
void check_stream_order(Communicator& c) {
  const int W = c.world_size(), r = c.rank();
  const int64_t n = int64_t(1) << 22;
  Tensor x = core::mul(full({n}, double(r + 1), {.device = c.device()}),
                       full({n}, 3.0, {.device = c.device()}));
  c.all_reduce(x, ReduceOp::sum);
  Tensor y = core::add(x, ones({n}, {.device = c.device()}));
  CHECK(mismatches(y, [&](int64_t) { return 3.0 * W * (W + 1) / 2 + 1; }) == 0);
}

void check_wrong_devices(Communicator& nccl) {
  Tensor cpu = ones({4});
  CHECK_THROWS_WITH_AS(nccl.all_reduce(cpu),
                       doctest::Contains("all_reduce: tensor is on cpu, but this communicator "
                                         "(nccl) takes cuda:"),
                       Error);
  Tensor gpu_out = zeros({4 * nccl.world_size()}, {.device = nccl.device()});
  CHECK_THROWS_WITH_AS(nccl.all_gather(cpu, gpu_out),
                       doctest::Contains("all_gather: input is on cpu"), Error);
  // The job's CPU communicator (MPI or single) refuses the GPU tensor and names NCCL.
  Tensor gpu = ones({4}, {.device = nccl.device()});
  CHECK_THROWS_WITH_AS(comm().broadcast(gpu), doctest::Contains("broadcast: tensor is on cuda:"),
                       Error);
  CHECK_THROWS_WITH_AS(comm().all_reduce(gpu), doctest::Contains("need the NCCL backend"), Error);
}

// A single-process communicator on a GPU: its copies run on the GPU.
void check_single_on_gpu(Device device) {
  SingleProcessCommunicator single({}, device);
  Tensor input = make(
      100, DType::f32, [](int64_t i) { return double(i) * 0.5; }, device);
  Tensor output = zeros({100}, {.device = device});
  single.reduce_scatter(input, output, ReduceOp::avg);
  CHECK(mismatches(output, [](int64_t i) { return double(i) * 0.5; }) == 0);
  Tensor gathered = zeros({100}, {.device = device});
  single.all_gather(input, gathered);
  CHECK(mismatches(gathered, [](int64_t i) { return double(i) * 0.5; }) == 0);
}

TEST_CASE("nccl: collectives on CUDA tensors match the closed forms" *
          doctest::skip(cuda::device_count() == 0)) {
  Communicator& host = comm();
  const int gpus = cuda::device_count();
  // Each NCCL communicator takes a CPU communicator of its own as its host.
  std::unique_ptr<Communicator> nccl;
  if (host.local_size() > gpus) {
    // More ranks than GPUs on this node: every rank gets the same clear error.
    CHECK_THROWS_WITH_AS(nccl = std::make_unique<NcclCommunicator>(make_communicator()),
                         doctest::Contains("NCCL refuses two ranks on one GPU"), Error);
    if (host.rank() == 0) {
      std::printf("test_nccl: %d ranks on %d GPU(s): checked the one-GPU-per-rank error only\n",
                  host.local_size(), gpus);
    }
    return;
  }
  nccl = std::make_unique<NcclCommunicator>(make_communicator());
  CHECK(nccl->backend() == "nccl");
  CHECK(nccl->world_size() == host.world_size());
  CHECK(nccl->rank() == host.rank());
  CHECK(nccl->device() == Device::cuda(host.local_rank()));
  check_all_reduce(*nccl);
  check_broadcast(*nccl);
  check_reduce_scatter(*nccl);
  check_all_gather(*nccl);
  check_stream_order(*nccl);
  check_wrong_devices(*nccl);
  nccl->barrier();
  CHECK(nccl->broadcast_string("from " + std::to_string(nccl->rank()), 0) == "from 0");
  check_single_on_gpu(nccl->device());
  if (launched_by_mpirun()) {
    // The factory's choice under mpirun: NCCL on this rank's GPU whatever index was asked.
    std::unique_ptr<Communicator> picked = make_communicator({}, Device::cuda(0));
    CHECK(picked->backend() == "nccl");
    CHECK(picked->device() == Device::cuda(host.local_rank()));
  }
}

#else

// This build has no NCCL (it needs the CUDA backend and nccl.h / libnccl): the case is
// registered skipped, so that the run's summary says it did not run.
TEST_CASE("nccl: collectives on CUDA tensors match the closed forms" * doctest::skip(true)) {}

#endif  // MNEMO_HAVE_NCCL

}  // namespace
}  // namespace mnemo::dist

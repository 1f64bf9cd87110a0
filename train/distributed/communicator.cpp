// Communicator's argument checks, the single-process backend, the factory and the start-up
// check. See communicator.h.
#include "train/distributed/communicator.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "core/ops/view.h"
#include "mnemo_build_info.h"
#include "train/distributed/mpi_communicator.h"
#include "train/distributed/nccl_communicator.h"

namespace mnemo::dist {

std::string_view reduce_op_name(ReduceOp op) {
  return op == ReduceOp::sum ? "sum" : "avg";
}

Communicator::Communicator(int rank, int world_size, int local_rank, int local_size,
                           CommunicatorOptions options, Device device)
    : rank_(rank),
      world_size_(world_size),
      local_rank_(local_rank),
      local_size_(local_size),
      options_(options),
      device_(device) {
  set_timeout_seconds(options.timeout_seconds);
}

void Communicator::set_timeout_seconds(double seconds) {
  MNEMO_CHECK(seconds >= 0, "communicator: timeout must be >= 0 seconds (0 = none), got {}",
              seconds);
  options_.timeout_seconds = seconds;
}

namespace {

// A tensor a backend can read or write as one flat buffer on its device.
void check_buffer(const Tensor& t, const Communicator& comm, std::string_view op,
                  std::string_view name) {
  MNEMO_CHECK(t.defined(), "{}: {} is an undefined tensor", op, name);
  MNEMO_CHECK(t.device() == comm.device(),
              "{}: {} is on {}, but this communicator ({}) takes {} tensors{}", op, name,
              t.device(), comm.backend(), comm.device(),
              t.device().is_cuda() && comm.device().is_cpu()
                  ? " (GPU tensors need the NCCL backend: make_communicator(options, device))"
                  : "");
  MNEMO_CHECK(t.is_contiguous(), "{}: {} of shape {} must be contiguous", op, name,
              shape_str(t.shape()));
}

void check_reducible(DType dtype, ReduceOp op, std::string_view name) {
  bool ok =
      is_floating(dtype) || (op == ReduceOp::sum && (dtype == DType::i32 || dtype == DType::i64));
  MNEMO_CHECK(ok, "{}: cannot {}-reduce {} tensors (floating dtypes, or i32/i64 with sum)", name,
              reduce_op_name(op), dtype);
}

void check_root(int root, int world_size, std::string_view op) {
  MNEMO_CHECK(root >= 0 && root < world_size, "{}: root {} is not a rank (world size {})", op, root,
              world_size);
}

}  // namespace

void Communicator::all_reduce(Tensor& tensor, ReduceOp op) {
  check_buffer(tensor, *this, "all_reduce", "tensor");
  check_reducible(tensor.dtype(), op, "all_reduce");
  if (tensor.numel() == 0) return;
  do_all_reduce(tensor.data_ptr(), tensor.numel(), tensor.dtype(), op);
}

void Communicator::all_reduce_deferred(Tensor& tensor, ReduceOp op) {
  deferred_ = true;
  try {
    all_reduce(tensor, op);
  } catch (...) {
    deferred_ = false;
    throw;
  }
  deferred_ = false;
}

void Communicator::broadcast(Tensor& tensor, int root) {
  check_buffer(tensor, *this, "broadcast", "tensor");
  check_root(root, world_size_, "broadcast");
  if (tensor.numel() == 0) return;
  do_broadcast(tensor.data_ptr(), tensor.numel(), tensor.dtype(), root);
}

void Communicator::reduce_scatter(const Tensor& input, Tensor& output, ReduceOp op) {
  check_buffer(input, *this, "reduce_scatter", "input");
  check_buffer(output, *this, "reduce_scatter", "output");
  check_reducible(input.dtype(), op, "reduce_scatter");
  MNEMO_CHECK(input.dtype() == output.dtype(), "reduce_scatter: input is {}, output is {}",
              input.dtype(), output.dtype());
  const int64_t n = output.numel();
  MNEMO_CHECK(input.numel() == n * world_size_,
              "reduce_scatter: input has {} elements, expected world size {} x output's {} = {}",
              input.numel(), world_size_, n, n * world_size_);
  MNEMO_CHECK(input.storage() != output.storage() || n == 0,
              "reduce_scatter: input and output must not share storage");
  if (n == 0) return;
  do_reduce_scatter(input.data_ptr(), output.data_ptr(), n, input.dtype(), op);
}

void Communicator::all_gather(const Tensor& input, Tensor& output) {
  check_buffer(input, *this, "all_gather", "input");
  check_buffer(output, *this, "all_gather", "output");
  MNEMO_CHECK(input.dtype() == output.dtype(), "all_gather: input is {}, output is {}",
              input.dtype(), output.dtype());
  const int64_t n = input.numel();
  MNEMO_CHECK(output.numel() == n * world_size_,
              "all_gather: output has {} elements, expected world size {} x input's {} = {}",
              output.numel(), world_size_, n, n * world_size_);
  MNEMO_CHECK(input.storage() != output.storage() || n == 0,
              "all_gather: input and output must not share storage");
  if (n == 0) return;
  do_all_gather(input.data_ptr(), output.data_ptr(), n, input.dtype());
}

void Communicator::barrier() {
  do_barrier();
}

std::vector<std::string> Communicator::all_gather_string(const std::string& value) {
  return do_all_gather_string(value);
}

std::string Communicator::broadcast_string(const std::string& value, int root) {
  check_root(root, world_size_, "broadcast_string");
  return do_broadcast_string(value, root);
}

// ---- one process: every collective over a world of one ----

SingleProcessCommunicator::SingleProcessCommunicator(CommunicatorOptions options, Device device)
    : Communicator(0, 1, 0, 1, options, device) {}

namespace {

// n elements of dtype at data, on device, as a 1-d tensor (the memory stays the caller's).
Tensor flat_tensor(const void* data, int64_t n, DType dtype, Device device) {
  auto storage = std::make_shared<StorageImpl>(const_cast<void*>(data),
                                               size_t(n) * dtype_size(dtype), device, [] {});
  return Tensor::view_of(storage, {n}, {1}, 0, dtype);
}

}  // namespace

// The sum over one rank is the tensor itself, and so is the mean.
void SingleProcessCommunicator::do_all_reduce(void*, int64_t, DType, ReduceOp) {}
void SingleProcessCommunicator::do_broadcast(void*, int64_t, DType, int) {}

// With one rank, the one shard is the whole input and the gathered output is the input: a copy
// on device() (its backend, so on a GPU it is ordered like any other op there).
void SingleProcessCommunicator::do_reduce_scatter(const void* input, void* output, int64_t n,
                                                  DType dtype, ReduceOp) {
  copy_(flat_tensor(output, n, dtype, device()), flat_tensor(input, n, dtype, device()));
}

void SingleProcessCommunicator::do_all_gather(const void* input, void* output, int64_t n,
                                              DType dtype) {
  copy_(flat_tensor(output, n, dtype, device()), flat_tensor(input, n, dtype, device()));
}

std::vector<std::string> SingleProcessCommunicator::do_all_gather_string(const std::string& value) {
  return {value};
}

std::string SingleProcessCommunicator::do_broadcast_string(const std::string& value, int) {
  return value;
}

void SingleProcessCommunicator::abort(int code, std::string_view message) {
  std::fprintf(stderr, "%.*s\n", int(message.size()), message.data());
  std::fflush(stderr);
  std::exit(code);
}

// ---- choosing a backend ----

bool launched_by_mpirun() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMI_SIZE") != nullptr ||
         std::getenv("PMIX_RANK") != nullptr;
}

int launcher_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"}) {
    if (const char* value = std::getenv(name)) return std::max(0, std::atoi(value));
  }
  return 0;
}

bool built_with_mpi() {
  return MNEMO_HAVE_MPI != 0;
}

bool built_with_nccl() {
  return MNEMO_HAVE_NCCL != 0;
}

#if !MNEMO_HAVE_MPI
namespace {

// The world size the launcher announced, or 1 when it says nothing we can read.
int launcher_world_size() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}) {
    if (const char* value = std::getenv(name)) return std::atoi(value);
  }
  return 1;
}

}  // namespace
#endif

std::unique_ptr<Communicator> make_communicator(CommunicatorOptions options) {
  if (launched_by_mpirun()) {
#if MNEMO_HAVE_MPI
    return std::make_unique<MpiCommunicator>(options);
#else
    const int size = launcher_world_size();
    MNEMO_CHECK(size <= 1,
                "distributed: launched by mpirun with {} ranks, but this build has no MPI "
                "(install libopenmpi-dev and reconfigure with -DMNEMO_MPI=ON)",
                size);
#endif
  }
  return std::make_unique<SingleProcessCommunicator>(options);
}

std::unique_ptr<Communicator> make_communicator(CommunicatorOptions options, Device device) {
  return for_device(make_communicator(options), device);
}

std::unique_ptr<Communicator> for_device(std::unique_ptr<Communicator> host, Device device) {
  MNEMO_CHECK(host != nullptr, "distributed: for_device needs a communicator");
  if (device == host->device()) return host;
  MNEMO_CHECK(host->device().is_cpu(),
              "distributed: the {} communicator already works on {}; it cannot move to {}",
              host->backend(), host->device(), device);
  const CommunicatorOptions options{.timeout_seconds = host->timeout_seconds()};
  if (host->backend() == "single") {
    return std::make_unique<SingleProcessCommunicator>(options, device);
  }
  // Launched by mpirun (host is MPI): GPU tensors travel over NCCL.
#if MNEMO_HAVE_NCCL
  return std::make_unique<NcclCommunicator>(std::move(host));
#else
  if (host->world_size() == 1) return std::make_unique<SingleProcessCommunicator>(options, device);
  fail(
      "distributed: launched by mpirun with {} ranks on {}, but this build has no NCCL (GPU "
      "collectives need it; MPI carries CPU tensors only): rebuild with CUDA and NCCL found "
      "(libnccl-dev, or the nvidia-nccl wheel via -DMNEMO_NVIDIA_WHEELS), or use --device cpu",
      host->world_size(), device);
#endif
}

void abort_job(Communicator& comm, const std::exception& error) {
  const auto* mnemo_error = dynamic_cast<const Error*>(&error);
  const ErrorKind kind = mnemo_error ? mnemo_error->kind() : ErrorKind::internal;
  const std::string label =
      kind == ErrorKind::input ? std::string() : fmt::format("{} error: ", error_kind_name(kind));
  comm.abort(exit_status(kind),
             fmt::format("mnemo: rank {}: {}{}", comm.rank(), label, error.what()));
  std::terminate();  // not reached: abort() does not return
}

void check_same_on_all_ranks(Communicator& comm, std::string_view what, const std::string& value) {
  const std::vector<std::string> all = comm.all_gather_string(value);
  for (size_t r = 1; r < all.size(); ++r) {
    MNEMO_CHECK(all[r] == all[0],
                "distributed: {} differs between ranks: rank {} has '{}', rank 0 has '{}' (every "
                "rank must use the same one)",
                what, r, all[r], all[0]);
  }
}

}  // namespace mnemo::dist

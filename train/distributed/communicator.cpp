// Communicator's argument checks, the single-process backend, the factory and the start-up
// check. See communicator.h.
#include "train/distributed/communicator.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "mnemo_build_info.h"
#include "train/distributed/mpi_communicator.h"

namespace mnemo::dist {

std::string_view reduce_op_name(ReduceOp op) {
  return op == ReduceOp::sum ? "sum" : "avg";
}

Communicator::Communicator(int rank, int world_size, int local_rank, int local_size,
                           CommunicatorOptions options)
    : rank_(rank),
      world_size_(world_size),
      local_rank_(local_rank),
      local_size_(local_size),
      options_(options) {
  set_timeout_seconds(options.timeout_seconds);
}

void Communicator::set_timeout_seconds(double seconds) {
  MNEMO_CHECK(seconds >= 0, "communicator: timeout must be >= 0 seconds (0 = none), got {}",
              seconds);
  options_.timeout_seconds = seconds;
}

namespace {

// A tensor a backend can read or write as one flat buffer.
void check_buffer(const Tensor& t, std::string_view op, std::string_view name) {
  MNEMO_CHECK(t.defined(), "{}: {} is an undefined tensor", op, name);
  MNEMO_CHECK(t.device().is_cpu(),
              "{}: {} is on {}; only CPU tensors are supported (GPU tensors need the NCCL "
              "backend, not built yet)",
              op, name, t.device());
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
  check_buffer(tensor, "all_reduce", "tensor");
  check_reducible(tensor.dtype(), op, "all_reduce");
  if (tensor.numel() == 0) return;
  do_all_reduce(tensor.data_ptr(), tensor.numel(), tensor.dtype(), op);
}

void Communicator::broadcast(Tensor& tensor, int root) {
  check_buffer(tensor, "broadcast", "tensor");
  check_root(root, world_size_, "broadcast");
  if (tensor.numel() == 0) return;
  do_broadcast(tensor.data_ptr(), tensor.numel(), tensor.dtype(), root);
}

void Communicator::reduce_scatter(const Tensor& input, Tensor& output, ReduceOp op) {
  check_buffer(input, "reduce_scatter", "input");
  check_buffer(output, "reduce_scatter", "output");
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
  check_buffer(input, "all_gather", "input");
  check_buffer(output, "all_gather", "output");
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

SingleProcessCommunicator::SingleProcessCommunicator(CommunicatorOptions options)
    : Communicator(0, 1, 0, 1, options) {}

// The sum over one rank is the tensor itself, and so is the mean.
void SingleProcessCommunicator::do_all_reduce(void*, int64_t, DType, ReduceOp) {}
void SingleProcessCommunicator::do_broadcast(void*, int64_t, DType, int) {}

void SingleProcessCommunicator::do_reduce_scatter(const void* input, void* output, int64_t n,
                                                  DType dtype, ReduceOp) {
  std::memcpy(output, input, size_t(n) * dtype_size(dtype));
}

void SingleProcessCommunicator::do_all_gather(const void* input, void* output, int64_t n,
                                              DType dtype) {
  std::memcpy(output, input, size_t(n) * dtype_size(dtype));
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

bool built_with_mpi() {
  return MNEMO_HAVE_MPI != 0;
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
  // NCCL plugs in here: with a CUDA device requested and NCCL built, bootstrap an
  // NcclCommunicator through MPI instead.
  return std::make_unique<SingleProcessCommunicator>(options);
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

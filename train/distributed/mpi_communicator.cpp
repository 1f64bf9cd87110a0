// MpiCommunicator: collectives over Open MPI for CPU tensors. See mpi_communicator.h.
#include "train/distributed/mpi_communicator.h"

#if MNEMO_HAVE_MPI

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace mnemo::dist {

namespace {

// ---- process-wide MPI state ----

void finalize_at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

// An uncaught exception in one rank must not leave the others waiting in a collective.
[[noreturn]] void abort_on_terminate() {
  std::string what = "unknown exception";
  if (std::exception_ptr error = std::current_exception()) {
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
  }
  std::fprintf(stderr, "mnemo: uncaught error, aborting every rank: %s\n", what.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::_Exit(1);
}

// MPI_Init_thread on first use (unless the host program initialised MPI itself).
void ensure_mpi() {
  static std::once_flag once;
  std::call_once(once, [] {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
      std::atexit(finalize_at_exit);
    }
    std::set_terminate(abort_on_terminate);
  });
}

bool is_16bit_float(DType dtype) {
  return dtype == DType::bf16 || dtype == DType::f16;
}

// The MPI type that sums dtype (f32, f64, i32, i64).
MPI_Datatype sum_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::i32: return MPI_INT32_T;
    case DType::i64: return MPI_INT64_T;
    default: fail("mpi: no MPI sum for {}", dtype);
  }
}

// An unsigned integer type as wide as one element: moves elements of any dtype unchanged.
MPI_Datatype transport_type(DType dtype) {
  switch (dtype_size(dtype)) {
    case 1: return MPI_UINT8_T;
    case 2: return MPI_UINT16_T;
    case 4: return MPI_UINT32_T;
    case 8: return MPI_UINT64_T;
  }
  fail("mpi: no transport type for {} ({} bytes)", dtype, dtype_size(dtype));
}

// MPI counts are int: elementwise collectives go in chunks of at most this many elements.
constexpr int64_t kMaxChunk = int64_t(1) << 30;
// The 16-bit float paths hold W x chunk values at once; this bounds that memory.
constexpr int64_t k16BitChunk = int64_t(1) << 20;

int checked_count(int64_t n, const char* op) {
  MNEMO_CHECK(n <= INT_MAX, "{}: {} elements per rank exceed MPI's int count limit", op, n);
  return int(n);
}

// out[i] = (sum over r of parts[r * n + i]) (/ W for avg), summed in f32 in rank order.
// parts (W, n) and out (n) hold 16-bit floats of type T.
template <typename T>
void sum_parts(const T* parts, T* out, int64_t n, int world, ReduceOp op) {
  for (int64_t i = 0; i < n; ++i) {
    float total = 0;
    for (int r = 0; r < world; ++r) total += float(parts[int64_t(r) * n + i]);
    if (op == ReduceOp::avg) total /= float(world);
    out[i] = T(total);
  }
}

void sum_parts_16(DType dtype, const void* parts, void* out, int64_t n, int world, ReduceOp op) {
  if (dtype == DType::bf16) {
    sum_parts(static_cast<const bf16*>(parts), static_cast<bf16*>(out), n, world, op);
  } else {
    sum_parts(static_cast<const f16*>(parts), static_cast<f16*>(out), n, world, op);
  }
}

// x[i] /= world for the floating dtypes (the avg after an MPI sum).
void divide(void* data, int64_t n, DType dtype, int world) {
  if (dtype == DType::f32) {
    float* x = static_cast<float*>(data);
    for (int64_t i = 0; i < n; ++i) x[i] /= float(world);
  } else if (dtype == DType::f64) {
    double* x = static_cast<double*>(data);
    for (int64_t i = 0; i < n; ++i) x[i] /= double(world);
  }
}

}  // namespace

struct MpiCommunicator::World {
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0, size = 1, local_rank = 0, local_size = 1;

  static std::unique_ptr<World> open() {
    ensure_mpi();
    auto world = std::make_unique<World>();
    MPI_Comm_dup(MPI_COMM_WORLD, &world->comm);
    MPI_Comm_rank(world->comm, &world->rank);
    MPI_Comm_size(world->comm, &world->size);
    MPI_Comm node = MPI_COMM_NULL;
    MPI_Comm_split_type(world->comm, MPI_COMM_TYPE_SHARED, world->rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &world->local_rank);
    MPI_Comm_size(node, &world->local_size);
    MPI_Comm_free(&node);
    return world;
  }
};

MpiCommunicator::MpiCommunicator(CommunicatorOptions options)
    : MpiCommunicator(World::open(), options) {}

MpiCommunicator::MpiCommunicator(std::unique_ptr<World> world, CommunicatorOptions options)
    : Communicator(world->rank, world->size, world->local_rank, world->local_size, options),
      world_(std::move(world)) {}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && world_->comm != MPI_COMM_NULL) MPI_Comm_free(&world_->comm);
}

void MpiCommunicator::abort(int code, std::string_view message) {
  std::fprintf(stderr, "%.*s\n", int(message.size()), message.data());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

void MpiCommunicator::wait(void* request_ptr, const char* what) {
  MPI_Request* request = static_cast<MPI_Request*>(request_ptr);
  if (timeout_seconds() == 0) {
    MPI_Wait(request, MPI_STATUS_IGNORE);
    return;
  }
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_seconds());
  for (;;) {
    int done = 0;
    MPI_Test(request, &done, MPI_STATUS_IGNORE);
    if (done) return;
    if (Clock::now() > deadline) {
      abort(1, fmt::format("mnemo: rank {} waited more than {} s in {} for the other ranks "
                           "(one is stuck or dead); aborting the job",
                           rank(), timeout_seconds(), what));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

void MpiCommunicator::do_all_reduce(void* data, int64_t numel, DType dtype, ReduceOp op) {
  char* bytes = static_cast<char*>(data);
  const size_t element = dtype_size(dtype);
  const int world = world_size();
  if (is_16bit_float(dtype)) {
    std::vector<uint16_t> parts(size_t(std::min(numel, k16BitChunk)) * size_t(world));
    for (int64_t start = 0; start < numel; start += k16BitChunk) {
      const int64_t n = std::min(k16BitChunk, numel - start);
      MPI_Allgather(bytes + start * element, int(n), MPI_UINT16_T, parts.data(), int(n),
                    MPI_UINT16_T, world_->comm);
      sum_parts_16(dtype, parts.data(), bytes + start * element, n, world, op);
    }
    return;
  }
  for (int64_t start = 0; start < numel; start += kMaxChunk) {
    const int64_t n = std::min(kMaxChunk, numel - start);
    MPI_Allreduce(MPI_IN_PLACE, bytes + start * element, int(n), sum_type(dtype), MPI_SUM,
                  world_->comm);
  }
  if (op == ReduceOp::avg) divide(data, numel, dtype, world);
}

void MpiCommunicator::do_broadcast(void* data, int64_t numel, DType dtype, int root) {
  char* bytes = static_cast<char*>(data);
  const size_t element = dtype_size(dtype);
  for (int64_t start = 0; start < numel; start += kMaxChunk) {
    const int64_t n = std::min(kMaxChunk, numel - start);
    MPI_Bcast(bytes + start * element, int(n), transport_type(dtype), root, world_->comm);
  }
}

void MpiCommunicator::do_reduce_scatter(const void* input, void* output, int64_t n, DType dtype,
                                        ReduceOp op) {
  const int count = checked_count(n, "reduce_scatter");
  const int world = world_size();
  if (is_16bit_float(dtype)) {
    // Rank r receives chunk r of every rank's input: parts (W, n), then sums it.
    std::vector<uint16_t> parts(size_t(n) * size_t(world));
    MPI_Alltoall(input, count, MPI_UINT16_T, parts.data(), count, MPI_UINT16_T, world_->comm);
    sum_parts_16(dtype, parts.data(), output, n, world, op);
    return;
  }
  MPI_Reduce_scatter_block(input, output, count, sum_type(dtype), MPI_SUM, world_->comm);
  if (op == ReduceOp::avg) divide(output, n, dtype, world);
}

void MpiCommunicator::do_all_gather(const void* input, void* output, int64_t n, DType dtype) {
  const int count = checked_count(n, "all_gather");
  MPI_Allgather(input, count, transport_type(dtype), output, count, transport_type(dtype),
                world_->comm);
}

void MpiCommunicator::do_barrier() {
  MPI_Request request;
  MPI_Ibarrier(world_->comm, &request);
  wait(&request, "barrier");
}

std::vector<std::string> MpiCommunicator::do_all_gather_string(const std::string& value) {
  const int world = world_size();
  const int length = checked_count(int64_t(value.size()), "all_gather_string");
  std::vector<int> lengths(size_t(world), 0);
  MPI_Request request;
  MPI_Iallgather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, world_->comm, &request);
  wait(&request, "all_gather_string");

  std::vector<int> offsets(size_t(world), 0);
  int64_t total = 0;
  for (int r = 0; r < world; ++r) {
    offsets[size_t(r)] = checked_count(total, "all_gather_string");
    total += lengths[size_t(r)];
  }
  std::vector<char> chars(size_t(std::max<int64_t>(total, 1)));
  MPI_Iallgatherv(value.data(), length, MPI_CHAR, chars.data(), lengths.data(), offsets.data(),
                  MPI_CHAR, world_->comm, &request);
  wait(&request, "all_gather_string");

  std::vector<std::string> all;
  for (int r = 0; r < world; ++r) {
    all.emplace_back(chars.data() + offsets[size_t(r)], size_t(lengths[size_t(r)]));
  }
  return all;
}

std::string MpiCommunicator::do_broadcast_string(const std::string& value, int root) {
  int length = rank() == root ? checked_count(int64_t(value.size()), "broadcast_string") : 0;
  MPI_Request request;
  MPI_Ibcast(&length, 1, MPI_INT, root, world_->comm, &request);
  wait(&request, "broadcast_string");
  std::string result = rank() == root ? value : std::string(size_t(length), '\0');
  if (length > 0) {
    MPI_Ibcast(result.data(), length, MPI_CHAR, root, world_->comm, &request);
    wait(&request, "broadcast_string");
  }
  return result;
}

}  // namespace mnemo::dist

#endif  // MNEMO_HAVE_MPI

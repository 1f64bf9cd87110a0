// NcclCommunicator: collectives over NCCL for CUDA tensors. See nccl_communicator.h.
#include "train/distributed/nccl_communicator.h"

#if MNEMO_HAVE_NCCL

#include <cuda_runtime_api.h>
#include <nccl.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/runtime.h"

namespace mnemo::dist {

namespace {

// Throws mnemo::SystemError "nccl <what>: <call> failed: <NCCL's description> (<its last error>)".
void check_nccl(ncclResult_t status, const char* what, const char* call, ncclComm_t comm) {
  if (status == ncclSuccess) return;
  fail_system("nccl {}: {} failed: {} ({})", what, call, ncclGetErrorString(status),
              ncclGetLastError(comm));
}

// The NCCL type that reduces dtype (the base class has rejected the others).
ncclDataType_t reduce_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::bf16: return ncclBfloat16;
    case DType::f16: return ncclFloat16;
    case DType::i32: return ncclInt32;
    case DType::i64: return ncclInt64;
    default: fail("nccl: no NCCL reduction for {}", dtype);
  }
}

ncclRedOp_t reduce_op(ReduceOp op) {
  return op == ReduceOp::sum ? ncclSum : ncclAvg;
}

// "host PCI-bus-id" of GPU `index`: two ranks with the same string would share one GPU.
std::string gpu_identity(int index) {
  std::array<char, 256> host{};
  gethostname(host.data(), host.size() - 1);
  std::array<char, 64> bus{};
  MNEMO_CUDA_CHECK(cudaDeviceGetPCIBusId(bus.data(), int(bus.size()), index));
  return std::string(host.data()) + " " + bus.data();
}

// This rank's GPU: cuda:(local_rank mod visible GPUs), checked on every rank together (see
// the header): throws the same mnemo::Error on every rank when a rank has no GPU or two ranks
// would share one.
Device rank_device(Communicator& host) {
  const int count = cuda::device_count();
  const int index = count > 0 ? host.local_rank() % count : 0;
  // "!" + a problem, or this rank's GPU identity.
  std::string mine;
  try {
    mine = count == 0 ? "!no GPU visible (" + cuda::no_device_reason() + ")" : gpu_identity(index);
  } catch (const Error& e) {
    mine = std::string("!") + e.what();
  }
  const std::vector<std::string> all = host.all_gather_string(mine);
  for (size_t r = 0; r < all.size(); ++r) {
    MNEMO_CHECK(all[r].empty() || all[r][0] != '!', "nccl: rank {} cannot use a GPU: {}", r,
                all[r].substr(1));
  }
  for (size_t r = 0; r < all.size(); ++r) {
    for (size_t s = r + 1; s < all.size(); ++s) {
      MNEMO_CHECK(all[r] != all[s],
                  "nccl: ranks {} and {} would share one GPU ({}): NCCL refuses two ranks on one "
                  "GPU (rank {}, reporting, is one of {} ranks on its node and sees {} GPU(s)); "
                  "start at most one rank per GPU (mpirun -np <GPUs> on one node, -npernode "
                  "<GPUs per node> on several)",
                  r, s, all[r], host.rank(), host.local_size(), count);
    }
  }
  return Device::cuda(index);
}

}  // namespace

struct NcclCommunicator::State {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;        // the communication stream
  cudaEvent_t compute_ready = nullptr;  // recorded on the compute stream before an op
  cudaEvent_t comm_done = nullptr;      // recorded on the comm stream after it
};

NcclCommunicator::NcclCommunicator(std::unique_ptr<Communicator> host)
    : NcclCommunicator(std::move(host), rank_device(*host)) {}

NcclCommunicator::NcclCommunicator(std::unique_ptr<Communicator>&& host, Device device)
    : Communicator(host->rank(), host->world_size(), host->local_rank(), host->local_size(),
                   {.timeout_seconds = host->timeout_seconds()}, device),
      host_(std::move(host)),
      state_(std::make_unique<State>()) {
  cuda::DeviceGuard guard(device.index);
  // Rank 0's unique id (128 opaque bytes) to every rank, through the host.
  ncclUniqueId id{};
  std::string id_bytes;
  if (rank() == 0) {
    check_nccl(ncclGetUniqueId(&id), "init", "ncclGetUniqueId", nullptr);
    id_bytes.assign(id.internal, sizeof(id.internal));
  }
  id_bytes = host_->broadcast_string(id_bytes, 0);
  MNEMO_ASSERT(id_bytes.size() == sizeof(id.internal),
               "nccl init: received a unique id of {} bytes, expected {}", id_bytes.size(),
               sizeof(id.internal));
  std::memcpy(id.internal, id_bytes.data(), sizeof(id.internal));

  MNEMO_CUDA_CHECK(cudaStreamCreateWithFlags(&state_->stream, cudaStreamNonBlocking));
  MNEMO_CUDA_CHECK(cudaEventCreateWithFlags(&state_->compute_ready, cudaEventDisableTiming));
  MNEMO_CUDA_CHECK(cudaEventCreateWithFlags(&state_->comm_done, cudaEventDisableTiming));
  check_nccl(ncclCommInitRank(&state_->comm, world_size(), id, rank()), "init", "ncclCommInitRank",
             nullptr);
}

NcclCommunicator::~NcclCommunicator() {
  // No throwing here: errors at teardown are ignored (the process is ending or the job failed).
  cuda::DeviceGuard guard(device().index);
  if (state_->stream) cudaStreamSynchronize(state_->stream);
  if (state_->comm) ncclCommDestroy(state_->comm);
  if (state_->comm_done) cudaEventDestroy(state_->comm_done);
  if (state_->compute_ready) cudaEventDestroy(state_->compute_ready);
  if (state_->stream) cudaStreamDestroy(state_->stream);
}

void NcclCommunicator::abort(int code, std::string_view message) {
  // Frees this rank's NCCL resources and makes its pending operations return, then ends the
  // job (MPI_Abort under mpirun kills the other ranks, wherever they wait).
  if (state_ && state_->comm) ncclCommAbort(state_->comm);
  host_->abort(code, message);
  std::_Exit(code);  // not reached: the host's abort ends the process
}

template <typename Launch>
void NcclCommunicator::enqueue(const char* what, Launch&& launch) {
  cuda::DeviceGuard guard(device().index);
  cudaStream_t compute = cuda::stream(device());
  MNEMO_CUDA_CHECK(cudaEventRecord(state_->compute_ready, compute));
  MNEMO_CUDA_CHECK(cudaStreamWaitEvent(state_->stream, state_->compute_ready, 0));
  const auto [status, call] = launch(state_->comm, state_->stream);
  check_nccl(status, what, call, state_->comm);
  MNEMO_CUDA_CHECK(cudaEventRecord(state_->comm_done, state_->stream));
  if (!deferred()) MNEMO_CUDA_CHECK(cudaStreamWaitEvent(compute, state_->comm_done, 0));
}

void NcclCommunicator::wait_deferred() {
  cuda::DeviceGuard guard(device().index);
  // comm_done was recorded after the latest collective; the comm stream is in order.
  MNEMO_CUDA_CHECK(cudaStreamWaitEvent(cuda::stream(device()), state_->comm_done, 0));
}

// Each launch returns (status, the NCCL call's name) for the error message.
using Launched = std::pair<ncclResult_t, const char*>;

void NcclCommunicator::do_all_reduce(void* data, int64_t numel, DType dtype, ReduceOp op) {
  enqueue("all_reduce", [&](ncclComm_t comm, cudaStream_t stream) {
    return Launched{
        ncclAllReduce(data, data, size_t(numel), reduce_type(dtype), reduce_op(op), comm, stream),
        "ncclAllReduce"};
  });
}

// broadcast and all_gather move bytes: every dtype, as ncclUint8.
void NcclCommunicator::do_broadcast(void* data, int64_t numel, DType dtype, int root) {
  const size_t bytes = size_t(numel) * dtype_size(dtype);
  enqueue("broadcast", [&](ncclComm_t comm, cudaStream_t stream) {
    return Launched{ncclBroadcast(data, data, bytes, ncclUint8, root, comm, stream),
                    "ncclBroadcast"};
  });
}

void NcclCommunicator::do_reduce_scatter(const void* input, void* output, int64_t n, DType dtype,
                                         ReduceOp op) {
  enqueue("reduce_scatter", [&](ncclComm_t comm, cudaStream_t stream) {
    return Launched{ncclReduceScatter(input, output, size_t(n), reduce_type(dtype), reduce_op(op),
                                      comm, stream),
                    "ncclReduceScatter"};
  });
}

void NcclCommunicator::do_all_gather(const void* input, void* output, int64_t n, DType dtype) {
  const size_t bytes = size_t(n) * dtype_size(dtype);
  enqueue("all_gather", [&](ncclComm_t comm, cudaStream_t stream) {
    return Launched{ncclAllGather(input, output, bytes, ncclUint8, comm, stream), "ncclAllGather"};
  });
}

// Host-side synchronisation goes through the host communicator, with this one's timeout.
void NcclCommunicator::do_barrier() {
  host_->set_timeout_seconds(timeout_seconds());
  host_->barrier();
}

std::vector<std::string> NcclCommunicator::do_all_gather_string(const std::string& value) {
  host_->set_timeout_seconds(timeout_seconds());
  return host_->all_gather_string(value);
}

std::string NcclCommunicator::do_broadcast_string(const std::string& value, int root) {
  host_->set_timeout_seconds(timeout_seconds());
  return host_->broadcast_string(value, root);
}

}  // namespace mnemo::dist

#endif  // MNEMO_HAVE_NCCL

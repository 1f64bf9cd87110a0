// NcclCommunicator: the Communicator over NCCL, for CUDA tensors (built when MNEMO_HAVE_NCCL:
// the build has the CUDA backend and found NCCL).
//
// One GPU per rank. NCCL is bootstrapped through a host communicator (MPI under mpirun; the
// single-process one for a world of one, so one rank needs no MPI at all):
//   1. every rank picks cuda:(local_rank mod visible GPUs), local_rank from the host
//      (MPI_Comm_split_type(MPI_COMM_TYPE_SHARED): the ranks on this node);
//   2. every rank shares "host name + PCI bus id" of its GPU with all_gather_string, and all
//      ranks stop with the same mnemo::Error if two ranks of a node would share a GPU (NCCL
//      refuses that) or a rank has no GPU — so `mpirun -np 8` on a 4-GPU node fails at once,
//      with the fix in the message, instead of inside NCCL;
//   3. rank 0 calls ncclGetUniqueId, broadcast_string carries it to every rank,
//      ncclCommInitRank joins them.
// The host stays: barrier() and the string helpers go through it (with its timeouts), and
// abort() ends the job through it after ncclCommAbort.
//
// Streams: collectives run on a communication stream of their own, ordered with the compute
// stream of the device (cuda/context.h) by two events, and never block the host:
//
//   compute:  ... kernels -- record(ready)                         wait(done) -- kernels ...
//                                  \                                 /
//   comm:                      wait(ready) -- nccl op -- record(done)
//
// So an op reads its inputs after everything queued before it on the compute stream, and
// everything queued after it (including the caching allocator's reuse of a freed buffer) runs
// after it. The host returns as soon as the op is queued.
//
// Dtypes: all_reduce / reduce_scatter take f32, f64, bf16, f16 (sum, avg = NCCL's ncclAvg) and
// i32, i64 (sum); 16-bit floats are reduced by NCCL in their own precision (the MPI backend
// sums them in f32), so bf16/f16 results can differ from MPI's in the last bit. broadcast and
// all_gather move bytes, so every dtype works.
#pragma once

#include <memory>

#include "train/distributed/communicator.h"

#if MNEMO_HAVE_NCCL

namespace mnemo::dist {

class NcclCommunicator final : public Communicator {
 public:
  // host: this job's CPU communicator (make_communicator(options)); its rank, world size,
  // local rank and timeout become this communicator's. Collective: every rank constructs one.
  explicit NcclCommunicator(std::unique_ptr<Communicator> host);
  ~NcclCommunicator() override;
  std::string_view backend() const override { return "nccl"; }
  [[noreturn]] void abort(int code, std::string_view message) override;
  // The compute stream waits for everything queued on the comm stream so far (one event:
  // the comm stream runs its collectives in order).
  void wait_deferred() override;

 protected:
  void do_all_reduce(void* data, int64_t numel, DType dtype, ReduceOp op) override;
  void do_broadcast(void* data, int64_t numel, DType dtype, int root) override;
  void do_reduce_scatter(const void* input, void* output, int64_t n, DType dtype,
                         ReduceOp op) override;
  void do_all_gather(const void* input, void* output, int64_t n, DType dtype) override;
  void do_barrier() override;
  std::vector<std::string> do_all_gather_string(const std::string& value) override;
  std::string do_broadcast_string(const std::string& value, int root) override;

 private:
  struct State;  // the NCCL communicator, the comm stream, the two events (nccl.h stays in .cpp)
  NcclCommunicator(std::unique_ptr<Communicator>&& host, Device device);
  // Runs launch(comm, stream) on the comm stream between the two event hops above (the
  // second one left for wait_deferred() inside all_reduce_deferred); `what` names the
  // collective in errors.
  template <typename Launch>
  void enqueue(const char* what, Launch&& launch);

  std::unique_ptr<Communicator> host_;  // MPI or single-process: bootstrap, barrier, strings
  std::unique_ptr<State> state_;
};

}  // namespace mnemo::dist

#endif  // MNEMO_HAVE_NCCL

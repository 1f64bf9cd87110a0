// MpiCommunicator: the Communicator over Open MPI, for CPU tensors (built when MNEMO_HAVE_MPI).
//
// Processes are started by mpirun; the first MpiCommunicator initialises MPI
// (MPI_Init_thread, MPI_THREAD_SERIALIZED: one thread at a time may call MPI) and registers
// MPI_Finalize to run at exit. Each communicator works on its own duplicate of MPI_COMM_WORLD,
// so its messages never mix with another library's. The node-local rank comes from
// MPI_Comm_split_type(MPI_COMM_TYPE_SHARED): the ranks that share memory with this one.
//
// How each collective maps onto MPI (n = elements per rank, W = world size):
//   all_reduce      f32/f64/i32/i64: MPI_Allreduce in place (avg divides by W afterwards).
//                   bf16/f16: MPI has no 16-bit float sum, so the raw 16-bit values are
//                   all-gathered (W x n) in chunks and every rank sums them locally in f32 in
//                   rank order, rounding once at the end: every rank computes the same result.
//   reduce_scatter  MPI_Reduce_scatter_block; bf16/f16 by MPI_Alltoall + the same local sum.
//   all_gather      MPI_Allgather; broadcast: MPI_Bcast (both move elements as same-sized
//                   unsigned integers, so every dtype works).
//   barrier and the string helpers: non-blocking MPI_Ibarrier / MPI_Iallgather(v) / MPI_Ibcast,
//                   polled with MPI_Test until the communicator's timeout, then MPI_Abort.
//
// Failure handling: MPI errors are fatal (MPI_ERRORS_ARE_FATAL: the job is aborted); an
// uncaught C++ exception in any rank calls MPI_Abort through a std::terminate handler; abort()
// prints one line and calls MPI_Abort, which kills every rank of the job. A caller that
// catches an error and wants to exit must call abort() when world_size() > 1: a normal exit
// runs MPI_Finalize, which waits for the ranks still inside a collective.
#pragma once

#include <memory>

#include "mnemo_build_info.h"
#include "train/distributed/communicator.h"

#if MNEMO_HAVE_MPI

namespace mnemo::dist {

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(CommunicatorOptions options = {});
  ~MpiCommunicator() override;
  std::string_view backend() const override { return "mpi"; }
  [[noreturn]] void abort(int code, std::string_view message) override;

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
  struct World;  // the MPI communicator and this rank's place in it (mpi.h stays in the .cpp)
  MpiCommunicator(std::unique_ptr<World> world, CommunicatorOptions options);
  void wait(void* request, const char* what);  // MPI_Request*, bounded by the timeout

  std::unique_ptr<World> world_;
};

}  // namespace mnemo::dist

#endif  // MNEMO_HAVE_MPI

// Communicator: the collectives data-parallel training needs, behind one interface.
//
// Every process ("rank") of a data-parallel job holds one Communicator. The trainer calls the
// same code whatever the backend:
//
//   SingleProcessCommunicator  world size 1, every collective is an identity or a copy. This is
//                              what a plain `mnemo train` (no mpirun) gets, so the one-process
//                              run goes through exactly the data-parallel code path.
//   MpiCommunicator            CPU tensors over Open MPI (train/distributed/mpi_communicator.h),
//                              built when the build has MPI (MNEMO_HAVE_MPI).
//   NcclCommunicator           CUDA tensors over NCCL (train/distributed/nccl_communicator.h),
//                              built with CUDA and NCCL (MNEMO_HAVE_NCCL); bootstrapped through
//                              the MPI (or single-process) communicator, which it keeps for
//                              barrier() and the string helpers.
//
// A communicator works on the tensors of one device, device(): the CPU for "single" and "mpi",
// this rank's GPU (cuda:local_rank) for "nccl"; a single-process communicator may be made for
// a GPU too. make_communicator(options, device) picks the backend for the device a command
// asked for; the caller then computes on comm->device() (under NCCL each rank owns one GPU).
//
// The public collectives check their arguments once here (defined, on device(), contiguous,
// same dtype, sizes that fit the world size) and hand raw buffers to the backend's do_*
// methods, as ops do with backends in core/. All collectives are in place on contiguous
// tensors and are collective calls: every rank must make the same calls in the same order
// with the same sizes.
//
// Failure: a collective cannot return while another rank is gone, so a rank that fails must
// take the job down rather than leave the others waiting. abort() does that (MPI_Abort kills
// every rank); the MPI backend also turns an uncaught exception into MPI_Abort (a terminate
// handler), and Open MPI's mpirun kills the job when a rank exits without finalising. The
// start-up checks (barrier, the string helpers) wait at most timeout_seconds() and then abort
// the job with a message naming the call, so a rank that never arrives cannot hang the rest.
// A command that catches errors itself wraps its body in run_or_abort (below).
#pragma once

#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"

namespace mnemo::dist {

enum class ReduceOp { sum, avg };  // avg = sum / world_size
std::string_view reduce_op_name(ReduceOp op);

struct CommunicatorOptions {
  // How long barrier() and the string helpers wait for the other ranks before aborting the
  // job; 0 waits forever. Tensor collectives are not timed (they run every step).
  double timeout_seconds = 300;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return rank_; }              // 0 .. world_size() - 1
  int world_size() const { return world_size_; }  // number of ranks in the job
  int local_rank() const { return local_rank_; }  // rank among the processes on this node
  int local_size() const { return local_size_; }  // processes on this node
  bool is_main() const { return rank_ == 0; }     // rank 0 logs, evaluates, checkpoints
  virtual std::string_view backend() const = 0;   // "single", "mpi", "nccl"
  // The device whose tensors the collectives take; any other device is an error naming the
  // collective. CPU for "mpi", this rank's GPU for "nccl".
  Device device() const { return device_; }
  double timeout_seconds() const { return options_.timeout_seconds; }
  void set_timeout_seconds(double seconds);

  // tensor (any shape): every rank ends with the elementwise sum (or mean) over all ranks.
  // Floating dtypes; i32/i64 for sum only.
  void all_reduce(Tensor& tensor, ReduceOp op = ReduceOp::sum);
  // all_reduce that may still be running when it returns, so that a caller can overlap it
  // with other work (gradient buckets with the rest of backward). On a GPU it is queued on the
  // communication stream and the compute stream does not wait for it yet: read or write the
  // tensor only after wait_deferred(). CPU backends finish it before returning.
  void all_reduce_deferred(Tensor& tensor, ReduceOp op = ReduceOp::sum);
  // Makes the device's later work wait for every deferred collective (no host wait).
  virtual void wait_deferred() {}
  // tensor (any shape, same on every rank): every rank ends with root's values. Any dtype.
  void broadcast(Tensor& tensor, int root = 0);
  // input (world_size * n) -> output (n): rank r gets elements [r*n, (r+1)*n) of the
  // elementwise reduction of every rank's input. Shapes are free; only numel counts.
  void reduce_scatter(const Tensor& input, Tensor& output, ReduceOp op = ReduceOp::sum);
  // input (n) -> output (world_size * n): output holds rank 0's input, then rank 1's, ...
  void all_gather(const Tensor& input, Tensor& output);
  // Returns when every rank has called it (or aborts the job after timeout_seconds()).
  void barrier();

  // Start-up helpers (timed like barrier): every rank gets every rank's string, in rank
  // order; root's string on every rank.
  std::vector<std::string> all_gather_string(const std::string& value);
  std::string broadcast_string(const std::string& value, int root = 0);

  // Ends every rank of the job now with exit code `code`, after printing message (one line,
  // to stderr). For a single process this is std::exit after the message.
  [[noreturn]] virtual void abort(int code, std::string_view message) = 0;

 protected:
  Communicator(int rank, int world_size, int local_rank, int local_size,
               CommunicatorOptions options, Device device = Device::cpu());

  // True inside all_reduce_deferred: a backend that can may leave the operation running.
  bool deferred() const { return deferred_; }

  // Backends see checked, contiguous buffers on device() of numel elements of dtype.
  virtual void do_all_reduce(void* data, int64_t numel, DType dtype, ReduceOp op) = 0;
  virtual void do_broadcast(void* data, int64_t numel, DType dtype, int root) = 0;
  virtual void do_reduce_scatter(const void* input, void* output, int64_t n, DType dtype,
                                 ReduceOp op) = 0;
  virtual void do_all_gather(const void* input, void* output, int64_t n, DType dtype) = 0;
  virtual void do_barrier() = 0;
  virtual std::vector<std::string> do_all_gather_string(const std::string& value) = 0;
  virtual std::string do_broadcast_string(const std::string& value, int root) = 0;

 private:
  int rank_, world_size_, local_rank_, local_size_;
  CommunicatorOptions options_;
  Device device_;
  bool deferred_ = false;
};

// World size 1 in this process, no MPI involved, on any one device (the copies of
// reduce_scatter and all_gather run on that device's backend).
class SingleProcessCommunicator final : public Communicator {
 public:
  explicit SingleProcessCommunicator(CommunicatorOptions options = {},
                                     Device device = Device::cpu());
  std::string_view backend() const override { return "single"; }
  [[noreturn]] void abort(int code, std::string_view message) override;

 protected:
  void do_all_reduce(void* data, int64_t numel, DType dtype, ReduceOp op) override;
  void do_broadcast(void* data, int64_t numel, DType dtype, int root) override;
  void do_reduce_scatter(const void* input, void* output, int64_t n, DType dtype,
                         ReduceOp op) override;
  void do_all_gather(const void* input, void* output, int64_t n, DType dtype) override;
  void do_barrier() override {}
  std::vector<std::string> do_all_gather_string(const std::string& value) override;
  std::string do_broadcast_string(const std::string& value, int root) override;
};

// True when this process was started by mpirun/mpiexec (Open MPI's OMPI_COMM_WORLD_SIZE, or
// PMI_SIZE / PMIX_RANK from other launchers).
bool launched_by_mpirun();
// This process's rank as the launcher announced it (OMPI_COMM_WORLD_RANK, PMI_RANK or
// PMIX_RANK), before any communicator exists; 0 when not launched by mpirun.
int launcher_rank();
// True when this build can talk MPI (configured with MNEMO_HAVE_MPI).
bool built_with_mpi();
// True when this build has the NCCL backend (CUDA and NCCL found: MNEMO_HAVE_NCCL).
bool built_with_nccl();

// The communicator for CPU tensors: MPI when launched by mpirun and the build has MPI,
// otherwise single-process. Launched by mpirun with more than one rank but built without MPI
// is an error (each rank would silently train alone).
std::unique_ptr<Communicator> make_communicator(CommunicatorOptions options = {});

// The communicator for tensors on `device` (what the command was asked to run on):
//   CPU                            as make_communicator(options);
//   CUDA, launched by mpirun       NCCL on this rank's GPU, cuda:local_rank (the index asked
//                                  for is ignored: one GPU per rank); without NCCL in the
//                                  build an error, unless the world is one rank;
//   CUDA, a plain process          single-process on `device`.
// Compute on the result's device(), not on `device`.
std::unique_ptr<Communicator> make_communicator(CommunicatorOptions options, Device device);

// The same choice for a job whose (CPU) communicator exists already, e.g. made before the
// config naming the device was read: returns `host` itself for the CPU, or the communicator
// for `device` built on it (NCCL keeps `host` for its bootstrap, barrier and strings).
std::unique_ptr<Communicator> for_device(std::unique_ptr<Communicator> host, Device device);

// Ends a job of several ranks for an exception caught on this rank: "mnemo: rank R: <what>"
// through comm.abort, exit status 2 for bad input and 1 for anything else (core/error.h:
// exit_status). Every rank must stop, or the others would wait in their next collective, or
// in MPI_Finalize, forever.
[[noreturn]] void abort_job(Communicator& comm, const std::exception& error);

// Runs body() and returns its result; in a job of several ranks an exception ends the job
// (abort_job). With one rank the exception propagates unchanged.
template <typename Body>
auto run_or_abort(Communicator& comm, Body&& body) -> decltype(body()) {
  if (comm.world_size() == 1) return body();
  try {
    return body();
  } catch (const std::exception& e) {
    abort_job(comm, e);
  }
}

// Start-up check: every rank passes its own value of `what` (e.g. a hash of its config); if
// any two differ, every rank throws the same mnemo::Error naming `what` and the first rank
// that differs from rank 0, so all ranks stop together instead of hanging later.
void check_same_on_all_ranks(Communicator& comm, std::string_view what, const std::string& value);

}  // namespace mnemo::dist

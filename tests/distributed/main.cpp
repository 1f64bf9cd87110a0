// The distributed test program. One binary, run three ways by ctest:
//   test_distributed --expect-world-size=1                  plain process: world size 1
//   mpirun --oversubscribe -n N test_distributed --expect-world-size=N   N = 1, 2, 3
// and two failure drills under mpirun -n 2, which must end the job (not hang):
//   --timeout-drill   rank 0 waits in barrier() with a 1 s timeout, rank 1 never comes
//   --throw-drill     rank 1 throws an uncaught exception while rank 0 waits in all_reduce
// --require-mpi exits 77 (ctest's skip) with one line when the build has no MPI.
//
// Every rank runs the same doctest cases in the same order; the cases use CHECK (never
// REQUIRE) around collectives so that one rank's failure cannot skip a collective the others
// are waiting in.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "core/ops/factory.h"
#include "tests/distributed/dist_test.h"

namespace mnemo::dist::testing {
namespace {
std::unique_ptr<Communicator> g_comm;
int g_expected_world_size = 1;
}  // namespace

Communicator& comm() {
  return *g_comm;
}
int expected_world_size() {
  return g_expected_world_size;
}

}  // namespace mnemo::dist::testing

namespace {

bool take_flag(std::vector<char*>& args, const char* flag) {
  for (size_t i = 1; i < args.size(); ++i) {
    if (std::strcmp(args[i], flag) == 0) {
      args.erase(args.begin() + long(i));
      return true;
    }
  }
  return false;
}

// Rank 1 never reaches the barrier: rank 0 must abort the job after its 1 s timeout.
int timeout_drill(mnemo::dist::Communicator& comm) {
  comm.set_timeout_seconds(1);
  if (comm.rank() == 0) comm.barrier();
  std::this_thread::sleep_for(std::chrono::seconds(30));
  std::fprintf(stderr, "timeout drill: rank %d was not aborted\n", comm.rank());
  return 1;
}

// Rank 1 dies of an uncaught exception; rank 0 is inside an (untimed) all_reduce.
int throw_drill(mnemo::dist::Communicator& comm) {
  mnemo::Tensor x = mnemo::ones({4});
  if (comm.rank() == 1) throw mnemo::Error("throw drill: rank 1 fails on purpose");
  comm.all_reduce(x);
  std::this_thread::sleep_for(std::chrono::seconds(30));
  std::fprintf(stderr, "throw drill: rank %d was not aborted\n", comm.rank());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace mnemo::dist;
  std::vector<char*> args(argv, argv + argc);
  if (take_flag(args, "--require-mpi") && !built_with_mpi()) {
    std::printf("skipped: this build has no MPI (configure with -DMNEMO_MPI=ON)\n");
    return 77;
  }
  for (size_t i = 1; i < args.size(); ++i) {
    const char* prefix = "--expect-world-size=";
    if (std::strncmp(args[i], prefix, std::strlen(prefix)) == 0) {
      testing::g_expected_world_size = std::atoi(args[i] + std::strlen(prefix));
      args.erase(args.begin() + long(i));
      break;
    }
  }
  const bool timeout = take_flag(args, "--timeout-drill");
  const bool throws = take_flag(args, "--throw-drill");

  try {
    testing::g_comm = make_communicator();
  } catch (const mnemo::Error& e) {
    std::fprintf(stderr, "test_distributed: %s\n", e.what());
    return 1;
  }
  if (timeout) return timeout_drill(*testing::g_comm);
  if (throws) return throw_drill(*testing::g_comm);

  doctest::Context context(int(args.size()), args.data());
  const int failures = context.run();
  testing::g_comm.reset();
  return failures;
}

// Shared state of the distributed test program (tests/distributed/main.cpp): the one
// communicator every test case uses, and the world size the launcher was asked for.
#pragma once

#include "train/distributed/communicator.h"

namespace mnemo::dist::testing {

Communicator& comm();       // made once by main with make_communicator()
int expected_world_size();  // from --expect-world-size=N (1 without mpirun)

}  // namespace mnemo::dist::testing

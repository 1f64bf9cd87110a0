// What this build of mnemo is: its version and the features it was compiled with, as
// `mnemo version` prints them. The facts come from CMake (the generated mnemo_build_info.h)
// and, for the CUDA runtime and OpenMP, from the running process: a CUDA build says whether
// it can see a GPU right now, and why not.
#pragma once

#include <string>
#include <vector>

namespace mnemo {

// "0.1.0".
std::string version();

// One line per feature, in this order, e.g.
//   build: Release, GNU 12.2.0, sanitizers: none
//   CUDA: on (toolkit 13.0.88, archs 90; runtime: no GPU visible: <reason>)   or   CUDA: off
//   cuDNN: 9.19.0        (or off)
//   NCCL: 2.28.9         (or off)
//   MPI: on (Open MPI v4.1.4, MPI 3.1)   or   MPI: off
//   OpenMP: on (OpenMP 4.5, 2 threads)   or   OpenMP: off
//   BLAS: Eigen 3.4.0 (matrix products)
std::vector<std::string> build_features();

// "mnemo 0.1.0" followed by build_features(), one per line, newline-terminated.
std::string version_report();

}  // namespace mnemo

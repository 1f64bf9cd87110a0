// Choosing the device a command runs on: "cpu", "cuda", "cuda:N" or "auto".
//
// "auto" takes a GPU when the build has the CUDA backend, a GPU is visible and the backend can
// run a training step's ops (a tiny probe of the fused ops is run once on GPU gpu_hint modulo
// the visible count: a data-parallel rank passes its node-local rank, so that the ranks of a
// node do not all open a context on GPU 0); otherwise the CPU, saying why on `log`. An
// explicit "cuda" without a usable GPU is an error.
#pragma once

#include <iosfwd>
#include <string_view>

#include "core/device.h"

namespace mnemo::train {

Device select_device(std::string_view spec, std::ostream& log, int gpu_hint = 0);

}  // namespace mnemo::train

// Choosing the device a command runs on: "cpu", "cuda", "cuda:N" or "auto".
//
// "auto" takes the first GPU when the build has the CUDA backend, a GPU is visible and the
// backend can run a training step's ops (a tiny probe of the fused ops is run once); otherwise
// the CPU, saying why on `log`. An explicit "cuda" without a usable GPU is an error.
#pragma once

#include <iosfwd>
#include <string_view>

#include "core/device.h"

namespace mnemo::train {

Device select_device(std::string_view spec, std::ostream& log);

}  // namespace mnemo::train

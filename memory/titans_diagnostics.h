// Diagnostics of a TitansLM on a memory task: does the far figure come from the memory, where
// did the gates settle, and is the stored content drowned by the initial weights.
//
// On eval streams [0, streams) of `task`, segment by segment with the state carried:
//   far_score_wiped   the task's headline figure when every memory is reset to its initial
//                     state before the last two segments (recall's query segments): what the
//                     model scores without what it stored earlier (chance if the far figure
//                     comes from the memory)
//   per memory layer l ("layer.<l>"):
//     theta, eta, alpha   the mean step size, momentum and forgetting over every chunk stored
//     initial_norm        |W_0| per head (the learned initial weights)
//     stored_norm         |W_end - W_0| per stream and head at the end of a stream: what the
//                         stream wrote (a read-out is the initial weights' plus the stored
//                         part's: a stored part much smaller than W_0 is drowned)
//     readout_score       the headline figure scored from the layer's read-out alone, put
//                         through the final norm and head as if it were the last layer's
//                         output: what the memory answers by itself (absent for mac with
//                         learned memory queries)
// The model's mode is restored; nothing is trained.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>

#include "memory/tasks.h"
#include "memory/titans.h"

namespace mnemo::memory {

nlohmann::json diagnose_titans(TitansLM& lm, const MemoryTask& task, int64_t streams, int64_t batch,
                               Device device = Device::cpu());

}  // namespace mnemo::memory

// Diagnostics of a MemorizingLM on a memory task: is the memory read, does it find what the
// far predictions need, and what trains the memory layer's query/key projections.
//
// On eval streams [0, streams) of `task`, segment by segment with the state carried, for each
// far probe (a scored position whose answer lies beyond the window) at stream position t with
// token x = ids[t]: its *source* is the latest earlier occurrence p of x in an earlier segment
// (for recall: the written key of the queried pair), and the induction target is the memory
// entry of position p + 1 (the token that followed x there: recall's value, whose key the
// model must make say "my previous token was x"). Per query head h (memory layer, top-K):
//   hit_next[h]   fraction of far probes whose top-K holds the entry of p + 1
//   hit_source[h] ... the entry of p itself
//   p_next[h]     mean softmax weight of the retrieved attention on the entry of p + 1
//                 (0 when not retrieved)
//   chance        mean of K / (entries held): the hit rate of a random top-K
// plus "any_head" (hit by at least one head), the gate sigmoid(b_h) (or the joint softmax's
// temperature exp(tau_h)) and the learned ALiBi slopes. Probes without a source are skipped.
//
// Gradients: on `streams` training streams, the gradient norms of the memory layer's
// q_proj / k_proj weights from the loss on local probes only (in-window lookups: what shapes
// the memory's keys, which carry no gradient themselves) and on far probes only, computed
// with MemorizingLM::forward_backward; the model's gradients are zeroed afterwards.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>

#include "memory/memorizing.h"
#include "memory/tasks.h"

namespace mnemo::memory {

nlohmann::json diagnose_memorizing(MemorizingLM& lm, const MemoryTask& task, int64_t streams,
                                   int64_t batch, Device device = Device::cpu());

}  // namespace mnemo::memory

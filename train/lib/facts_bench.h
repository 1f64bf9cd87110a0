// `mnemo memory-bench facts --mechanism NAME`: knowledge in an explicit memory bank against
// knowledge in the weights, on the synthetic facts of memory/facts_task.h, as one JSON line.
//
//   1. the task generates 4096 facts "s_i s_j r o" (at the defaults), a bank holding the
//      trained and held-out ones, and training rows asking trained facts "s_i s_j r ? o";
//   2. the mechanism's model (memory section: bank_entries N, entry_length 4,
//      segment_length T, then the --memory overrides) and BaselineLM of the same size are
//      each trained on the same rows with the same AdamW recipe as the stream tasks
//      (train/lib/memory_bench.h). An ExplicitLM (memory/explicit.h) reads the task's bank,
//      and each step tells its router which entry the "?" position should read
//      (set_router_targets: the supervised router term);
//   3. both are asked, in eval mode under no_grad, every held-out and every trained fact:
//      exact match of the object predicted at "?" (the argmax);
//   4. for an ExplicitLM, then, without any training:
//      hit_rate      the fraction of held-out and trained questions whose "?" position read
//                    the fact's own entry (last_retrieval of the first memory layer);
//      edit_success  K facts get another object in the bank (bank().set, bank_changed): the
//                    fraction answered with the new object;
//      edit_kept     of the untouched held-out and trained facts answered right before the
//                    edits, the fraction still answered right after;
//      inserted      the reserved facts (never in the bank, never in text) are added with
//                    the fifo policy (into free slots, not their layout slots) and asked: only
//                    keys computed from an entry's tokens can find them.
//
// Output: {"task": "facts", "mechanism", "metric": "exact_match", "memory", "baseline" (the
// held-out exact match of each model), "steps", "lr", "seconds", "seed", "batch", "device",
// "model", "parameters" {memory, baseline}, "task_config", "final_loss" {memory, baseline},
// "details" {memory: {held_out, trained[, hit_rate, edit_success, edit_kept, inserted,
// inserted_hit_rate]}, baseline: {held_out, trained}}, "chance"}. With --mechanism none the
// baseline is trained once and reported in both places.
#pragma once

#include <iosfwd>
#include <nlohmann/json.hpp>

#include "train/lib/memory_bench.h"

namespace mnemo::train {

// Runs the facts benchmark (options.task == "facts"; options.task_options go to
// memory::FactsTask); progress lines go to `log`. Throws mnemo::Error naming a bad option
// before any training starts.
nlohmann::json run_facts_bench(const MemoryBenchOptions& options, std::ostream& log);

}  // namespace mnemo::train

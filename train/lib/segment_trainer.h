// `mnemo train` with a "memory" section: a memory-augmented language model (a SegmentLM,
// memory/segment_lm.h) trained end to end on text read as streams of segments.
//
// The run directory is the plain trainer's (train/lib/trainer.h): data/ (the same tokenizer
// and token shards, made by the same steps), metrics.jsonl, loss.svg, step-XXXXXXXX/ and
// latest. What differs is the unit of data and the model:
//
//   stream    S * T + 1 consecutive ids of the train shard (S = memory.segments, T =
//             train.seq_len); its inputs are ids [0, S*T) and its targets ids [1, S*T + 1),
//             cut into S segments of T. Stream k of the run starts at a position drawn from
//             (train.seed, k) alone (text::WindowSampler with windows of S*T), so the sampler
//             position is the whole data state of a run.
//   step      for each of grad_accum micro-batches of batch_size / grad_accum streams:
//             lm.forward_backward(segments, targets, lm.initial_state(B)), which carries the
//             memory state from segment to segment and back-propagates as the mechanism
//             decides (full BPTT; per segment for the Memorizing Transformer, whose state is
//             detached; memory replay for Memformer); then the global gradient norm, clipping
//             and the 1/grad_accum mean folded into AdamW's gradient scale, the learning rate
//             from the warmup + decay schedule, one AdamW update.
//   state     every stream starts from initial_state: no memory is carried from one step to
//             the next, so a checkpoint needs no memory state and --resume reproduces the
//             uninterrupted losses bit for bit (same seeds, same sampler position, the AdamW
//             moments restored).
//   documents a stream crosses document boundaries (each document is followed by eos in the
//             shards); lm.document_end_id is the tokenizer's eos, so a mechanism that clears
//             its memory at a document's end does so inside the stream (the Memorizing
//             Transformer: memory/memorizing.h). Training, eval and sample alike.
//   eval      the val shard cut into consecutive streams of S*T + 1 ids (the last may be
//             shorter), each scored segment by segment with the state carried, under no_grad:
//             loss per token and bits per byte as in train/lib/evaluate.h.
//   optimizer AdamW over optim::decay_groups, plus a third group for the mechanisms' small
//             0-/1-D non-norm parameters (gate biases, temperatures, distance slopes) at
//             memory.scalar_lr_scale times the learning rate (as `mnemo memory-bench` does).
//
// A checkpoint (RUN/step-XXXXXXXX, published atomically as in train/io/checkpoint_dir.h):
//   config.json            HF-style model keys + "memory" (the resolved section) and
//                          "architectures": ["MnemoSegmentLM"]
//   model.safetensors      the SegmentLM's state_dict (f32)
//   optimizer.safetensors  AdamW moments
//   tokenizer.json, trainer_state.json (step, sampler position, RNG, the full run config)
//
// Single process only: under mpirun with more than one rank the run stops with an error.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "memory/segment_lm.h"
#include "train/lib/evaluate.h"
#include "train/lib/run_config.h"
#include "train/lib/trainer.h"
#include "train/text/tokenizer.h"

namespace mnemo::train {

// Trains (or resumes) a run whose config has a memory section; progress goes to `log`.
// The options are the plain trainer's (--zero is rejected).
TrainSummary run_segment_training(const TrainOptions& options, std::ostream& log);

// The SegmentLM of a run config with a memory section, its weights drawn from `seed`. Errors
// from make_segment_lm (an unknown or bad mechanism key) are rethrown as one line naming the
// memory section and the key.
std::unique_ptr<memory::SegmentLM> make_run_segment_lm(const RunConfig& rc, uint64_t seed);

// Scores `ids` as streams: consecutive, non-overlapping streams of segments * seq_len + 1
// ids (the last one may be shorter, if it holds at least 2 ids); in each stream id i is
// predicted from ids < i of the same stream, read segment by segment (seq_len tokens each)
// from lm.initial_state with the state carried. `batch` streams per forward pass, no_grad,
// eval mode. Stops after max_streams streams when it is > 0.
EvalResult evaluate_streams(memory::SegmentLM& lm, std::span<const int32_t> ids, int64_t seq_len,
                            int64_t segments, int64_t batch,
                            const std::vector<int64_t>& token_bytes, int64_t max_streams = 0);

// ---- memory states as files ---------------------------------------------------------------
// A MemoryState is a list of named tensors, so it is stored as one safetensors file: the
// tensors under their state names, in order, with metadata {"format": "mnemo-memory-state",
// "mechanism": ..., "names": "a,b,..."} (names keeps the order and the undefined entries,
// which have no tensor in the file). Saving detaches; loading puts the tensors on `device`.
void save_memory_state(const std::string& path, const memory::MemoryState& state,
                       const std::string& mechanism);
memory::MemoryState load_memory_state(const std::string& path, Device device = Device::cpu());
// Checks that `state` fits `lm` for `batch` streams: the names, dtypes and shapes of
// lm.initial_state(batch). Throws mnemo::Error naming `source` and the tensor.
void check_memory_state(const memory::SegmentLM& lm, const memory::MemoryState& state,
                        int64_t batch, std::string_view source);

// ---- checkpoints ---------------------------------------------------------------------------
// True when `path` (a run or checkpoint directory) holds a memory-augmented checkpoint: its
// config.json has a "memory" section.
bool is_segment_checkpoint(const std::string& path);

struct LoadedSegmentCheckpoint {
  std::string path;  // the checkpoint directory
  RunConfig run_config;
  std::unique_ptr<memory::SegmentLM> lm;  // on the CPU, eval mode
  std::unique_ptr<text::Tokenizer> tokenizer;
  nlohmann::json trainer_state;
};
// `path` is a run directory (its latest) or a checkpoint directory; errors name the file.
LoadedSegmentCheckpoint load_segment_checkpoint(const std::string& path);

}  // namespace mnemo::train

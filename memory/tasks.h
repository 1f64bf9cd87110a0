// The memory benchmark's tasks: long token streams read in segments, where what a model must
// predict was last visible further back than its local attention window (one segment).
// `mnemo memory-bench` (train/lib/memory_bench.h) trains a mechanism and the no-memory
// baseline on a task and compares them on held-out streams.
//
// A stream is S segments of T tokens: ids (S, T) and next-token targets (S, T), -100 where
// nothing is scored. Every scored position also carries a probe kind saying which figure it
// counts towards: `far` (the answer lies beyond the window: the task's headline figure) or
// `local` (the answer is inside the window: a sanity check, or "all other tokens").
//
// Streams are a pure function of (seed, split, index): stream i of the train split is the same
// on every run and machine, and the eval split never shares a stream with it (different
// hash salt; longdoc also holds out whole documents). Nothing is downloaded.
//
//   recall       key->value pairs written at the start of segment 0, queried ("Q k" -> v)
//                in the last two segments (>= 2 segments = 2T tokens later, so beyond both the
//                window and an XL cache of the previous segment). Each segment also holds
//                in-segment items "k v ... Q k v" (an induction curriculum: without them the
//                read/write projections of a detached memory never learn to address it:
//                docs/memory-results.md). Keys never repeat within a stream.
//                Metric exact_match: the fraction of far queries whose value (one token) is
//                the model's argmax. Chance 1/values.
//   copy-far     a random string of L symbols at offset 0 of segment 0, reproduced with
//                teacher forcing from offset 0 of segment `gap` ("COPY s1 .. sL": COPY
//                predicts s1, s_i predicts s_{i+1}); filler elsewhere. Metric token_accuracy
//                over the L copied symbols. Chance 1/symbols.
//   longdoc      language modelling on long real documents (default corpus: the C/C++
//                headers under /usr/include), raw bytes as tokens (ids 0..255, the ids of
//                text::ByteTokenizer), targets cross segment boundaries (the last byte of a
//                segment predicts the first of the next). Metric bits_per_byte over every
//                byte; also over the far bytes: the byte at stream position p (predicted in
//                segment s = (p - 1) / T) is far when the n-gram (default n = 4) ending at p
//                occurred earlier in the stream and its latest earlier occurrence starts
//                before segment s - 1 — the best context for that byte is more than one
//                window back (not in the current segment, nor in an XL cache of the previous
//                one). Documents whose path hash is 0 mod 10 are held out for eval.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "memory/task_options.h"

namespace mnemo::memory {

enum class Split { train, eval };

// What a scored position counts towards.
enum class Probe : int8_t { none = 0, local = 1, far = 2 };

// One stream: S * T tokens, row-major (segment, position).
struct Stream {
  std::vector<int64_t> ids;
  std::vector<int64_t> targets;  // -100 = not scored
  std::vector<Probe> probes;     // none exactly where targets are -100
};

// B streams side by side, on the host, laid out (S, B, T).
struct StreamBatch {
  int64_t segments = 0, batch = 0, length = 0;  // S, B, T
  std::vector<int64_t> ids, targets;            // (S, B, T)
  std::vector<Probe> probes;                    // (S, B, T)

  size_t index(int64_t s, int64_t b, int64_t t) const {
    return size_t((s * batch + b) * length + t);
  }
  // Segment s as (B, T) i64 tensors on `device`.
  Tensor ids_tensor(int64_t s, Device device = Device::cpu()) const;
  Tensor targets_tensor(int64_t s, Device device = Device::cpu()) const;
  std::vector<Tensor> ids_segments(Device device = Device::cpu()) const;
  std::vector<Tensor> targets_segments(Device device = Device::cpu()) const;
};

// Counts over the positions of one probe kind.
struct ProbeTally {
  int64_t tokens = 0;   // scored positions
  int64_t correct = 0;  // ... whose argmax prediction is the target
  double nll_nats = 0;  // sum of -log p(target)

  double accuracy() const;        // correct / tokens (throws when tokens == 0)
  double bits_per_token() const;  // nll_nats / ln 2 / tokens (throws when tokens == 0)
};

// Predictions of a model over streams, accumulated per probe kind.
struct Tally {
  ProbeTally local, far;

  // Segment s of `batch`: predicted (B * T) argmax ids and nll (B * T) = -log p(target) in
  // nats, row-major (b, t); positions with target -100 are skipped.
  void add(const StreamBatch& batch, int64_t s, const std::vector<int64_t>& predicted,
           const std::vector<double>& nll);
  // The same from a model's logits (B, T, V) for segment s, on any device: argmax and
  // next-token loss of every position.
  void add_logits(const StreamBatch& batch, int64_t s, const Tensor& logits);
  ProbeTally all() const;  // local and far together
};

class MemoryTask {
 public:
  virtual ~MemoryTask() = default;

  virtual std::string name() const = 0;    // "recall", "copy-far", "longdoc"
  virtual std::string metric() const = 0;  // "exact_match", "token_accuracy", "bits_per_byte"
  virtual bool higher_is_better() const { return true; }
  virtual int64_t vocab_size() const = 0;
  virtual int64_t segment_length() const = 0;  // T
  virtual int64_t num_segments() const = 0;    // S
  // The options the task was made with, defaults filled in (for the report).
  virtual nlohmann::json config() const = 0;

  // Stream `index` of `split`: a pure function of (seed, split, index).
  virtual Stream stream(Split split, int64_t index) const = 0;
  // Streams first .. first + count - 1 side by side.
  StreamBatch batch(Split split, int64_t first, int64_t count) const;

  // The headline figure from a tally over eval streams.
  virtual double score(const Tally& tally) const = 0;
  // Secondary figures from the same tally, {"name": value} (local accuracy, chance, ...).
  virtual nlohmann::json details(const Tally& tally) const = 0;
};

// "recall", "copy-far", "longdoc".
std::vector<std::string> task_names();
// Throws mnemo::Error naming an unknown task, an option the task does not take, or a value
// out of range.
std::unique_ptr<MemoryTask> make_task(const std::string& name, uint64_t seed,
                                      const TaskOptions& options);

}  // namespace mnemo::memory

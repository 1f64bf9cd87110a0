// Data-parallel gradient reduction: gradients are grouped into buckets of about
// `bucket_bytes`, and each bucket is reduced across ranks with one all_reduce as soon as every
// gradient in it is complete, started from the autograd post-accumulate hooks — so the first
// buckets are on the wire while backward is still computing the rest.
//
//   params, in reverse registration order (≈ the order backward finishes them), are cut into
//   buckets; bucket b holds a flat buffer of the sum of its parameters' sizes. Parameters that
//   do not require grad (frozen, as ExplicitLM's freeze_backbone leaves its backbone) are left
//   out: they keep no gradient, where a reduced zero would let the optimizer decay them.
//   hook(p):  ready[b(p)] += 1; when ready[b] == |b|, mark b complete; then reduce every
//             complete bucket from `next` on, in index order (all ranks issue the collectives in
//             the same order, whatever order their hooks fire in).
//   reduce(b): pack the grads into the buffer, start all_reduce(op) (deferred: on a GPU it runs
//             on the communication stream while backward goes on computing on the compute
//             stream, ordered by events; on the CPU it completes at once).
//   finish():  reduce the buckets still pending (a parameter without a gradient this step
//             contributes zeros), wait for all of them, unpack, reset the counters.
//
// op: avg when each rank's loss is its own mean, sum when every rank already scaled its loss
// by the global token count (the trainer: then the sum is the global mean gradient, with no
// division that depends on the number of ranks).
//
// exact: the gradients arrive in f64 (autograd/exact_grad.h: split-invariant sums), the
// buckets are f64, and finish() rounds every gradient to its parameter's dtype once, after
// the all_reduce: the result does not depend on how the batch was split across ranks.
//
// With gradient accumulation, disable the sync for all but the last micro-batch: the grads
// then add up locally and are reduced once. With world size 1 nothing is registered and
// finish() only rounds (exact) or does nothing, so one process runs the same code without
// paying for it.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "train/distributed/communicator.h"

namespace mnemo::train {

class GradientSync {
 public:
  struct Options {
    int64_t bucket_bytes = int64_t(25) << 20;
    dist::ReduceOp op = dist::ReduceOp::avg;
    bool exact = false;
  };
  GradientSync(dist::Communicator& comm, const std::vector<Tensor>& params, Options options);
  // Averaging f32 buckets of bucket_bytes.
  GradientSync(dist::Communicator& comm, const std::vector<Tensor>& params, int64_t bucket_bytes)
      : GradientSync(comm, params, Options{.bucket_bytes = bucket_bytes}) {}
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  void set_enabled(bool enabled) { enabled_ = enabled; }
  // Completes the reduction after backward; every rank then holds the same gradients, in
  // their parameters' dtypes.
  void finish();
  int64_t num_buckets() const { return int64_t(buckets_.size()); }

 private:
  struct Bucket {
    std::vector<size_t> params;  // indices into params_
    int64_t numel = 0;
    int64_t ready = 0;
    bool complete = false;
    Tensor buffer;  // (numel,) f32, or f64 when exact
  };
  void on_ready(size_t param);
  void reduce_ready_buckets();
  void reduce(Bucket& bucket);
  void unpack(const Bucket& bucket);

  dist::Communicator& comm_;
  Options options_;
  std::vector<Tensor> params_;
  std::vector<size_t> bucket_of_;
  std::vector<Bucket> buckets_;
  size_t next_ = 0;  // the first bucket not reduced yet
  bool enabled_ = true;
};

}  // namespace mnemo::train

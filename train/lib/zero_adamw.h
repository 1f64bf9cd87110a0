// ZeroAdamW: AdamW with its state sharded across data-parallel ranks (ZeRO stage 1, Rajbhandari
// et al., "ZeRO: Memory Optimizations Toward Training Trillion Parameter Models").
//
// Plain data parallelism keeps a full copy of AdamW's two moments on every rank and averages
// full gradients with all_reduce. ZeRO-1 gives each rank 1/W of the optimizer state instead:
//
//   all parameters, in group order, are laid end to end as one flat f32 vector of N elements,
//   padded with zeros to P = W * S (S = ceil(N / W)); rank r owns the shard [r*S, (r+1)*S).
//
//   grad_norm():         pack every .grad into flat (P,) (undefined grad = zeros);
//                        reduce_scatter(avg or sum): grad_shard (S,) = flat[r*S..] combined
//                        over ranks; returns the GLOBAL L2 norm: sum of squares of the shard
//                        in f64, all_reduce(sum), sqrt (the padding is zero and adds nothing).
//   step(scale):         for each parameter piece that falls inside the shard, one adamw_ call
//                        on narrow() views: the parameter's flat view, grad_shard, exp_avg and
//                        exp_avg_sq (S,) — with that parameter's group weight decay and
//                        lr * lr_scale; then pack the updated shard into param_shard (S,),
//                        all_gather it into flat (P,) and copy every parameter back out, so all
//                        ranks end with complete, identical parameters.
//
// all_reduce of a gradient costs a reduce_scatter plus an all_gather, so the traffic is the
// same as plain data parallelism; what changes is memory. Per rank, in f32 elements:
//
//   plain AdamW:  2N (exp_avg, exp_avg_sq)
//   ZeroAdamW:    4S + P  (exp_avg, exp_avg_sq, grad_shard, param_shard; one flat buffer that
//                 carries gradients in and parameters out) ~ (4/W + 1) N
//
// so with W ranks the moments shrink W-fold (the flat staging buffer is the price of the
// collectives; for big W the state drops from 2N to about N). With W = 1 the shard is the whole
// vector, every piece is a whole parameter, and the update is bit for bit optim::AdamW's (same
// adamw_ kernel on the same elements in the same order). Two differences from optim::AdamW:
// a parameter without a gradient is updated as if its gradient were zero (decay and moments
// still move: a shard cannot skip part of a collective), and the moments exist from the start.
//
// It is an optim::AdamW (the same hyper-parameters and their checks) and so an
// optim::Optimizer, which a trainer holds like AdamW: grad_norm() is where the
// gradients are reduce-scattered (collective: every rank calls it once per step, after
// backward), step(grad_scale) updates the shard and all-gathers the parameters, and
// state_tensors() gathers the full moments (collective). reduces_gradients() is true, so the
// trainer adds no all_reduce hooks of its own.
//
// Checkpoints use optim::Optimizer::state_tensors()'s format — full tensors named
// "<param>.exp_avg" / "<param>.exp_avg_sq" with the parameter's shape — so a run saved with W
// ranks resumes with any other number of ranks, or with optim::AdamW.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "optim/adamw.h"
#include "train/distributed/communicator.h"

namespace mnemo::train {

class ZeroAdamW final : public optim::AdamW {
 public:
  // Parameters: f32, contiguous, on the CPU, unique names (empty names -> "group<g>.<i>", as in
  // optim::Optimizer). The communicator must outlive this object. op: how gradients combine
  // across ranks: avg (each rank's loss is its own mean) or sum (the losses are already
  // scaled by the global token count, as the trainer does).
  ZeroAdamW(dist::Communicator& comm, std::vector<optim::ParamGroup> groups, double lr,
            double beta1 = 0.9, double beta2 = 0.95, double eps = 1e-8,
            dist::ReduceOp op = dist::ReduceOp::avg);

  // Collective. After backward on this rank's share of the batch (local grads, not reduced):
  // reduce-scatters them so that this rank's shard of the combined gradient is ready for
  // step(), and returns the global gradient L2 norm (the same on every rank). f64 gradients
  // (autograd/exact_grad.h) are reduced in f64.
  double grad_norm() override;
  bool reduces_gradients() const override { return true; }
  // Collective. One AdamW update of this rank's shard at lr() (times each group's lr_scale),
  // the gradient multiplied by grad_scale first; then every rank's parameters are complete
  // again. steps_taken() grows by one.
  using AdamW::step;
  void step(double grad_scale) override;

  // Collective: every rank gets the full state, named and shaped as optim::AdamW's.
  optim::NamedTensors state_tensors() const override;
  // Not collective: keeps this rank's shard of `full` (any floating dtype, converted to f32),
  // checked as optim::Optimizer::load_state_tensors checks (a parameter has both slots or
  // none: none gives zero moments). Throws mnemo::Error naming the key, changing nothing.
  void load_state_tensors(const optim::NamedTensors& full) override;

  int64_t numel() const { return numel_; }              // N: all parameters' elements
  int64_t shard_numel() const { return shard_numel_; }  // S = ceil(N / W)
  int64_t shard_begin() const { return int64_t(comm_.rank()) * shard_numel_; }

 private:
  // Calls fn(i, begin, length) for each parameter params()[i] overlapping this rank's shard,
  // where [begin, begin + length) is the overlap in flat coordinates.
  template <typename Fn>
  void for_each_piece(Fn&& fn) const;

  dist::Communicator& comm_;
  dist::ReduceOp op_;
  std::vector<int64_t> offsets_;  // params()[i]'s first element in the flat vector
  int64_t numel_ = 0, shard_numel_ = 0;
  Tensor flat_;          // (W*S,) f32: gradients in, gathered parameters out
  Tensor grad_shard_;    // (S,) f32: this rank's combined gradient
  Tensor flat64_;        // (W*S,) f64, gradients in, when they arrive in f64 (made on first use)
  Tensor grad_shard64_;  // (S,) f64
  Tensor param_shard_;   // (S,) f32: staging for all_gather (padding stays zero)
  Tensor exp_avg_;       // (S,) f32
  Tensor exp_avg_sq_;    // (S,) f32
};

}  // namespace mnemo::train

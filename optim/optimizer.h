// Optimizer: the base class of SGD and AdamW — parameter groups, the learning rate, the step
// count, and per-parameter state that can be saved and restored by name.
//
// A training step, with gradient accumulation over `micro` micro-batches:
//
//   optimizer.zero_grad();                       // every .grad becomes undefined
//   for (int m = 0; m < micro; ++m) {
//     Tensor loss = model(batch[m]) / micro;     // divide, so the sum is the batch mean
//     loss.backward();                           // grads ADD UP across backward calls
//   }
//   double norm = optimizer.grad_norm();                      // optional: for clipping
//   optimizer.set_lr(schedule.at(optimizer.steps_taken()));  // optional (optim/schedule.h)
//   optimizer.step(optim::clip_factor(norm, max_norm));       // or step() (optim/clip.h)
//
// Gradient accumulation needs no class: backward accumulates into .grad (+=) until
// zero_grad() clears it, so k backward passes over losses divided by k leave the gradient of
// the mean loss over all k micro-batches, exactly as one large batch would (up to rounding).
//
// Parameters come in groups (ParamGroup): each group has its own weight decay and a factor on
// the optimizer's learning rate (optim/param_groups.h makes the usual decay/no-decay split).
// Every parameter has a unique name; its state tensors are saved as "<name>.<slot>", e.g.
// "model.norm.weight.exp_avg", so a checkpoint can store them next to the weights. A parameter
// whose .grad is undefined at step() is skipped: not updated, no state created, no decay.
//
// grad_scale multiplies every gradient before the update without rewriting it: clipping's
// factor goes there (clip_factor, optim/clip.h). Subclasses: SGD (sgd.h), AdamW (adamw.h), and
// ZeroAdamW (train/lib/zero_adamw.h), whose state is sharded across data-parallel ranks: for
// it grad_norm() and state_tensors() are collective, which is why they are virtual here.
//
// The step count (steps_taken) is one number for the whole optimizer; AdamW's bias correction
// uses it (PyTorch counts per parameter; the two agree whenever every parameter receives a
// gradient at every step, as in LM training). Save it next to the state tensors and restore it
// with set_steps_taken.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace mnemo::optim {

struct ParamGroup {
  // names[i] names params[i]. Names must be unique across all groups; if names is empty, the
  // optimizer names the parameters "group<g>.<i>".
  std::vector<std::string> names;
  std::vector<Tensor> params;  // leaves with requires_grad; floating, contiguous
  double weight_decay = 0;     // AdamW: decoupled decay; SGD: L2 added to the gradient
  double lr_scale = 1;         // this group's learning rate is lr() * lr_scale
};

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter that has a gradient, that gradient multiplied by
  // grad_scale first; then steps_taken() grows by one.
  virtual void step(double grad_scale) = 0;
  void step() { step(1.0); }
  // Makes every parameter's gradient undefined (the next backward starts from nothing).
  void zero_grad();
  // The L2 norm of the whole gradient the next step() applies (before grad_scale), for
  // clipping. Call it after backward and before step(). Default: global_grad_norm over the
  // parameters (optim/clip.h). A sharded optimizer first sums the gradients across ranks
  // here, so for it the call is collective and required once per step.
  virtual double grad_norm();
  // True when the optimizer itself sums gradients across data-parallel ranks (ZeRO): the
  // trainer then must not all_reduce them as well.
  virtual bool reduces_gradients() const { return false; }

  double lr() const { return lr_; }
  void set_lr(double lr);
  int64_t steps_taken() const { return steps_taken_; }
  void set_steps_taken(int64_t steps);

  const std::vector<ParamGroup>& groups() const { return groups_; }
  std::string_view kind() const { return kind_; }  // "SGD", "AdamW"

  // The live state tensors ("<param name>.<slot>", parameter order, slot order). Only
  // parameters that have state (were stepped with a gradient) appear. The tensors are the
  // optimizer's own: write them out before the next step, or clone them. Collective for a
  // sharded optimizer (every rank calls it; every rank gets the whole state).
  virtual NamedTensors state_tensors() const;
  // Replaces the whole state with `state` (copied, converted to the state dtype and the
  // parameter's device). Every name must be a known "<param>.<slot>" with the parameter's
  // shape, at most once; a parameter has either all of its slots or none (none: it starts
  // fresh, as if never stepped). Throws mnemo::Error naming the key otherwise, changing
  // nothing.
  virtual void load_state_tensors(const NamedTensors& state);

 protected:
  // slot_names: the state each parameter keeps ({"exp_avg", "exp_avg_sq"}, ...).
  Optimizer(std::string_view kind, std::vector<ParamGroup> groups, double lr,
            std::vector<std::string> slot_names);

  struct ParamState {
    std::string name;
    Tensor param;
    size_t group = 0;           // index into groups()
    std::vector<Tensor> slots;  // one per slot name; undefined until first created
  };
  std::vector<ParamState>& params() { return params_; }
  const std::vector<ParamState>& params() const { return params_; }
  const std::vector<std::string>& slot_names() const { return slot_names_; }
  // The dtype the state of a parameter of this dtype is kept in (the parameter's by default).
  virtual DType state_dtype(DType param_dtype) const { return param_dtype; }
  // A zero state tensor for p (its shape, its device, state_dtype).
  Tensor zero_state(const Tensor& param) const;
  // p's gradient ready for an update (contiguous, the parameter's dtype), or an undefined
  // tensor when p has none. Throws naming the parameter if the shape differs.
  Tensor gradient_of(const ParamState& p) const;
  // The checks of load_state_tensors: for params()[i] and slot s, the tensor `state` gives
  // (null where it gives none). Throws mnemo::Error naming the key of a bad entry.
  std::vector<std::vector<const Tensor*>> match_state(const NamedTensors& state) const;
  void count_step() { ++steps_taken_; }

 private:
  std::string kind_;
  std::vector<ParamGroup> groups_;
  std::vector<ParamState> params_;
  std::vector<std::string> slot_names_;
  double lr_ = 0;
  int64_t steps_taken_ = 0;
};

}  // namespace mnemo::optim

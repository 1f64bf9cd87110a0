// Learning-rate schedules: linear warmup, then cosine, linear or no decay.
//
// at(step), for the step about to be taken (0-based: the first optimizer step is step 0),
// with W = warmup_steps and N = total_steps:
//
//   step < W:        max_lr * (step + 1) / W            (warmup: max_lr/W, 2 max_lr/W, ...,
//                                                        reaching max_lr at step W - 1)
//   W <= step < N:   progress = (step - W) / (N - W)    (0 at step W, -> 1 at step N)
//                    cosine:   min_lr + (max_lr - min_lr) * (1 + cos(pi * progress)) / 2
//                    linear:   max_lr - (max_lr - min_lr) * progress
//                    constant: max_lr
//   step >= N:       min_lr (cosine, linear); max_lr (constant: it never decays)
//
// W = 0 means no warmup (step 0 already runs at max_lr). Requirements, checked by at():
// 0 <= min_lr <= max_lr (finite), 0 <= W <= N, step >= 0.
#pragma once

#include <cstdint>
#include <string_view>

namespace mnemo::optim {

struct LrSchedule {
  enum Decay { cosine, linear, constant };

  double max_lr = 1e-3;
  double min_lr = 0;
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;
  Decay decay = cosine;

  double at(int64_t step) const;
  void validate() const;  // throws mnemo::Error naming the bad field
};

// "cosine", "linear", "constant" (as written in configs); throws mnemo::Error otherwise.
LrSchedule::Decay decay_from_name(std::string_view name);

}  // namespace mnemo::optim

// LrSchedule::at: see schedule.h for the formulas.
#include "optim/schedule.h"

#include <cmath>
#include <numbers>

#include "core/error.h"

namespace mnemo::optim {

void LrSchedule::validate() const {
  MNEMO_CHECK(std::isfinite(max_lr) && max_lr >= 0,
              "LrSchedule: max_lr must be finite and >= 0, got {}", max_lr);
  MNEMO_CHECK(std::isfinite(min_lr) && min_lr >= 0 && min_lr <= max_lr,
              "LrSchedule: min_lr must be in [0, max_lr = {}], got {}", max_lr, min_lr);
  MNEMO_CHECK(warmup_steps >= 0, "LrSchedule: warmup_steps must be >= 0, got {}", warmup_steps);
  MNEMO_CHECK(total_steps >= warmup_steps,
              "LrSchedule: total_steps ({}) must be >= warmup_steps ({})", total_steps,
              warmup_steps);
  MNEMO_CHECK(decay == cosine || decay == linear || decay == constant,
              "LrSchedule: unknown decay {}", int(decay));
}

double LrSchedule::at(int64_t step) const {
  validate();
  MNEMO_CHECK(step >= 0, "LrSchedule::at: step must be >= 0, got {}", step);
  if (step < warmup_steps) return max_lr * double(step + 1) / double(warmup_steps);
  if (decay == constant) return max_lr;
  if (step >= total_steps) return min_lr;
  const double progress = double(step - warmup_steps) / double(total_steps - warmup_steps);
  if (decay == linear) return max_lr - (max_lr - min_lr) * progress;
  return min_lr + (max_lr - min_lr) * 0.5 * (1 + std::cos(std::numbers::pi * progress));
}

LrSchedule::Decay decay_from_name(std::string_view name) {
  if (name == "cosine") return LrSchedule::cosine;
  if (name == "linear") return LrSchedule::linear;
  if (name == "constant") return LrSchedule::constant;
  fail("LrSchedule: unknown decay '{}' (expected cosine, linear or constant)", name);
}

}  // namespace mnemo::optim

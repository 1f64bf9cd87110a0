// `mnemo demo-mlp`: the autograd end to end on a problem small enough to watch.
//
// A multi-layer perceptron (2 -> H -> H -> K, ReLU) learns to tell apart the K arms of a
// generated spiral — a problem no linear model can solve — with plain full-batch gradient
// descent written out by hand: forward, cross_entropy, backward(), then for each parameter
// p -= lr * p.grad under no_grad. Everything is seeded (Philox), so a run is reproducible
// on any thread count.
#pragma once

#include <cstdint>
#include <iosfwd>

#include "core/device.h"

namespace mnemo {

struct DemoMlpOptions {
  int64_t steps = 500;
  uint64_t seed = 0;
  int threads = 0;  // CPU threads; 0 keeps the OpenMP default
  double learning_rate = 0.5;
  int64_t classes = 3;  // K: spiral arms
  int64_t points_per_class = 200;
  int64_t hidden = 64;      // H
  int64_t print_every = 0;  // 0: about 20 lines per run
  Device device = Device::cpu();
};

struct DemoMlpResult {
  double first_loss = 0;  // before the first update
  double final_loss = 0;  // after the last update
  double final_accuracy = 0;
  double seconds = 0;  // training time, data generation excluded
};

// Trains as described above, printing progress lines to out.
DemoMlpResult run_demo_mlp(const DemoMlpOptions& options, std::ostream& out);

}  // namespace mnemo

// `mnemo memory-bench capacity --mechanism titans`: how many associations one Titans memory
// holds — a check of the inner loop alone (memory/titans_memory.h), with no outer training.
//
// For each memory model (linear, mlp, attention: memory/titans_models.h), `trials`
// independent memories of head dim D each read one stream of random (k, v) pairs, k and v
// unit vectors in R^D, `chunk_size` pairs per chunk, every chunk its own update batch
// (online: chunk n's surprise is taken at the weights after chunk n-1), with fixed gates:
//   S_n = eta S_{n-1} - theta grad l_n(W_{n-1}),   W_n = (1 - alpha) W_{n-1} + S_n
// from the model's initial weights (titans_models.h: linear 0, mlp and attention random but
// for the last matrix). After N pairs (N = 4, 8, ..., max_pairs) it reads every stored key
// with W_N (chunks of chunk_size, as stored) and reports the mean cosine between M(k_i) and
// v_i over the N pairs, over the oldest quarter and over the newest quarter (forgetting
// trades the first for the second); the cosine of what the updates added, M_W(k_i) -
// M_W0(k_i), with v_i (a residual memory reads k_i itself before anything is stored, which
// hides a small stored part from the plain cosine); and the mean squared error |M(k_i) -
// v_i|^2 (1 for an empty linear memory).
//
// Output: one JSON line per model and N:
//   {"task": "capacity", "memory_model", "pairs": N, "cosine", "cosine_oldest",
//    "cosine_newest", "cosine_added", "error", "theta", "eta", "alpha", "head_dim", "chunk_size",
//    "trials", "seed"}
// and an SVG chart of cosine against N (log scale) with one line per model.
//
// Settings come from `--memory key=value` (the memory's fixed settings): memory_model (one
// model; default all three), head_dim (32), theta (0.01), eta (0.9), alpha (0), chunk_size
// (1), max_pairs (256), trials (8). A key it does not take is an error naming it.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mnemo::train {

struct CapacityOptions {
  std::vector<std::string> models = {"linear", "mlp", "attention"};
  int64_t head_dim = 32;
  double theta = 0.01, eta = 0.9, alpha = 0;
  int64_t chunk_size = 1;
  int64_t max_pairs = 256;
  int64_t trials = 8;
  uint64_t seed = 0;
  std::string plot = "memory-capacity.svg";  // the chart; "" = none

  // "key=value" items as `--memory` gives them; throws naming a bad key or value.
  void apply(const std::vector<std::string>& overrides);
};

// The rows, in order (model by model, N growing); writes the chart; progress on `log`.
std::vector<nlohmann::json> run_memory_capacity(const CapacityOptions& options, std::ostream& log);

// The chart's SVG text: cosine (y, 0..1) against pairs (x, log2), one polyline per series.
struct CapacitySeries {
  std::string name;
  std::vector<std::pair<int64_t, double>> points;  // (pairs, cosine)
};
std::string capacity_svg(const std::vector<CapacitySeries>& series, const std::string& title);

}  // namespace mnemo::train

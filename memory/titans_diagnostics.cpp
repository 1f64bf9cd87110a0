// diagnose_titans (titans_diagnostics.h).
#include "memory/titans_diagnostics.h"

#include <algorithm>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"

namespace mnemo::memory {

namespace {

// Scores streams [0, streams) segment by segment; with wipe, the memory is reset before the
// last two segments. Accumulates the gates of every memory layer when `gates` is given.
struct GateSums {
  double theta = 0, eta = 0, alpha = 0;
  int64_t calls = 0;
  double stored = 0;  // sum over batches of the mean |W_end - W_0|
  int64_t batches = 0;
  Tally readout;  // the task's tally of the read-out's own logits (output_logits of it)
};

Tally score(TitansLM& lm, const MemoryTask& task, int64_t streams, int64_t batch, Device device,
            bool wipe, std::vector<GateSums>* gates) {
  Tally tally;
  for (int64_t first = 0; first < streams; first += batch) {
    const int64_t count = std::min(batch, streams - first);
    const StreamBatch b = task.batch(Split::eval, first, count);
    const MemoryState initial = lm.initial_state(count);
    MemoryState state = initial;
    for (int64_t s = 0; s < b.segments; ++s) {
      if (wipe && s == b.segments - 2) state = lm.initial_state(count);
      std::vector<Tensor> readouts;
      const SegmentOutput out = lm.forward_with_readouts(b.ids_tensor(s, device), state,
                                                         gates != nullptr ? &readouts : nullptr);
      tally.add_logits(b, s, out.logits);
      state = out.state;
      if (gates == nullptr) continue;
      for (size_t i = 0; i < lm.config.layers.size(); ++i) {
        if (readouts[i].defined()) {
          (*gates)[i].readout.add_logits(b, s, lm.output_logits(readouts[i]));
        }
        const NeuralMemory& m = *lm.memory_blocks[size_t(lm.config.layers[i])]->memory;
        if (!m.last_gates.theta.defined()) continue;
        GateSums& g = (*gates)[i];
        g.theta += mean(m.last_gates.theta).item();
        g.eta += mean(m.last_gates.eta).item();
        g.alpha += mean(m.last_gates.alpha).item();
        g.calls += 1;
      }
    }
    if (gates == nullptr) continue;
    for (size_t i = 0; i < lm.config.layers.size(); ++i) {
      const std::string p = TitansLM::prefix(lm.config.layers[i]);
      const Tensor stored = state.at(p + ".weights") - initial.at(p + ".weights");  // (B, H, P)
      (*gates)[i].stored += mean(sqrt(sum(stored * stored, {2}))).item();
      (*gates)[i].batches += 1;
    }
  }
  return tally;
}

}  // namespace

nlohmann::json diagnose_titans(TitansLM& lm, const MemoryTask& task, int64_t streams, int64_t batch,
                               Device device) {
  MNEMO_CHECK(streams >= 1 && batch >= 1, "diagnose_titans: bad size {} streams, batch {}", streams,
              batch);
  NoGradGuard no_grad;
  const bool was_training = lm.is_training();
  lm.eval();
  std::vector<GateSums> gates(lm.config.layers.size());
  for (int64_t layer : lm.config.layers) lm.memory_blocks[size_t(layer)]->memory->record = true;
  score(lm, task, streams, batch, device, false, &gates);
  for (int64_t layer : lm.config.layers) lm.memory_blocks[size_t(layer)]->memory->record = false;
  const Tally wiped = score(lm, task, streams, batch, device, true, nullptr);
  lm.train(was_training);

  nlohmann::json out;
  out["far_score_wiped"] = task.score(wiped);
  for (size_t i = 0; i < gates.size(); ++i) {
    const int64_t layer = lm.config.layers[i];
    const GateSums& g = gates[i];
    const NeuralMemory& m = *lm.memory_blocks[size_t(layer)]->memory;
    const double calls = double(std::max<int64_t>(1, g.calls));
    const Tensor w0 = to(m.initial_weights, Device::cpu());
    out["layer." + std::to_string(layer)] = {
        {"theta", g.theta / calls},
        {"eta", g.eta / calls},
        {"alpha", g.alpha / calls},
        {"initial_norm", mean(sqrt(sum(w0 * w0, {1}))).item()},
        {"stored_norm", g.stored / double(std::max<int64_t>(1, g.batches))}};
    if (g.readout.all().tokens > 0) {
      out["layer." + std::to_string(layer)]["readout_score"] = task.score(g.readout);
    }
  }
  return out;
}

}  // namespace mnemo::memory

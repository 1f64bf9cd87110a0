// diagnose_memorizing (memorizing_diagnostics.h).
#include "memory/memorizing_diagnostics.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>
#include <vector>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"

namespace mnemo::memory {

namespace {

struct HeadCounts {
  int64_t probes = 0, any = 0;
  std::vector<int64_t> hit_next, hit_source;
  std::vector<double> p_next;
  double chance_sum = 0;
};

double norm_of(const Tensor& grad) {
  if (!grad.defined()) return 0.0;
  return std::sqrt(sum(mul(grad, grad)).item());
}

// Gradient norms of the memory layer's q/k projections from the loss on one probe kind.
nlohmann::json probe_gradients(MemorizingLM& lm, const MemoryTask& task, int64_t streams,
                               Probe kind, Device device) {
  const StreamBatch b = task.batch(Split::train, 0, streams);
  std::vector<Tensor> ids, targets;
  bool any = false;
  for (int64_t s = 0; s < b.segments; ++s) {
    std::vector<int64_t> t(size_t(b.batch * b.length), -100);
    for (int64_t r = 0; r < b.batch; ++r) {
      for (int64_t i = 0; i < b.length; ++i) {
        const size_t at = b.index(s, r, i);
        if (b.probes[at] == kind && b.targets[at] != -100) {
          t[size_t(r * b.length + i)] = b.targets[at];
          any = true;
        }
      }
    }
    ids.push_back(b.ids_tensor(s, device));
    targets.push_back(mnemo::to(from_vector(t, {b.batch, b.length}), device));
  }
  if (!any) return nullptr;
  lm.zero_grad();
  const double loss = lm.forward_backward(ids, targets, lm.initial_state(b.batch));
  const auto& attn = *lm.memory_block->self_attn;
  nlohmann::json j = {{"loss", loss},
                      {"q_proj", norm_of(attn.q_proj->weight.grad())},
                      {"k_proj", norm_of(attn.k_proj->weight.grad())},
                      {"v_proj", norm_of(attn.v_proj->weight.grad())}};
  lm.zero_grad();
  return j;
}

std::vector<double> values_of(const Tensor& t) {
  return mnemo::to(mnemo::to(detach(t), DType::f64), Device::cpu()).to_vector<double>();
}

}  // namespace

nlohmann::json diagnose_memorizing(MemorizingLM& lm, const MemoryTask& task, int64_t streams,
                                   int64_t batch, Device device) {
  MNEMO_CHECK(streams >= 1 && batch >= 1, "diagnose_memorizing: bad size {} streams, batch {}",
              streams, batch);
  const auto& attn = *lm.memory_block->self_attn;
  const int64_t H = attn.num_heads, N = attn.memory.capacity;
  HeadCounts c;
  c.hit_next.assign(size_t(H), 0);
  c.hit_source.assign(size_t(H), 0);
  c.p_next.assign(size_t(H), 0.0);

  const bool was_training = lm.is_training(), was_recording = lm.record_reads;
  lm.eval();
  lm.record_reads = true;
  {
    NoGradGuard no_grad;
    for (int64_t first = 0; first < streams; first += batch) {
      const int64_t count = std::min(batch, streams - first);
      const StreamBatch b = task.batch(Split::eval, first, count);
      const int64_t T = b.length;
      // last[r][x]: the latest stream position of token x in the segments read so far.
      std::vector<std::unordered_map<int64_t, int64_t>> last(static_cast<size_t>(count));
      MemoryState state = lm.initial_state(count);
      for (int64_t s = 0; s < b.segments; ++s) {
        SegmentOutput out = lm.forward_segment(b.ids_tensor(s, device), state);
        const auto& read = lm.last_read;
        const int64_t K = read.lookup.indices.size(3);
        const std::vector<int64_t> slots =
            mnemo::to(read.lookup.indices, Device::cpu()).to_vector<int64_t>();
        const std::vector<double> valid = values_of(read.lookup.valid);
        const std::vector<double> logits = values_of(read.memory_logits);
        const std::vector<double> held = values_of(read.count);
        for (int64_t r = 0; r < count; ++r) {
          for (int64_t t = 0; t < T; ++t) {
            const size_t at = b.index(s, r, t);
            if (b.probes[at] != Probe::far) continue;
            const auto src = last[size_t(r)].find(b.ids[at]);
            if (src == last[size_t(r)].end()) continue;
            const int64_t entries = int64_t(held[size_t(r)]), start = s * T - entries;
            if (entries == 0) continue;
            // Slot of stream position q (held when start <= q < s T): N - s T + q.
            const int64_t p = src->second;
            const int64_t want_next = p + 1 < s * T && p + 1 >= start ? N - s * T + p + 1 : -1;
            const int64_t want_source = p >= start ? N - s * T + p : -1;
            c.probes += 1;
            c.chance_sum += double(std::min(K, entries)) / double(entries);
            bool any = false;
            for (int64_t h = 0; h < H; ++h) {
              const size_t row = size_t(((r * H + h) * T + t) * K);
              double m = -INFINITY, den = 0, num = 0;
              for (int64_t k = 0; k < K; ++k) {
                if (valid[row + size_t(k)] != 0) m = std::max(m, logits[row + size_t(k)]);
              }
              bool next = false, source = false;
              for (int64_t k = 0; k < K; ++k) {
                if (valid[row + size_t(k)] == 0) continue;
                const double e = std::exp(logits[row + size_t(k)] - m);
                den += e;
                if (slots[row + size_t(k)] == want_next) {
                  next = true;
                  num = e;
                }
                if (slots[row + size_t(k)] == want_source) source = true;
              }
              c.hit_next[size_t(h)] += next ? 1 : 0;
              c.hit_source[size_t(h)] += source ? 1 : 0;
              c.p_next[size_t(h)] += den > 0 ? num / den : 0.0;
              any = any || next;
            }
            c.any += any ? 1 : 0;
          }
        }
        for (int64_t r = 0; r < count; ++r) {
          for (int64_t t = 0; t < T; ++t) last[size_t(r)][b.ids[b.index(s, r, t)]] = s * T + t;
        }
        state = std::move(out.state);
      }
    }
  }
  lm.record_reads = was_recording;
  lm.last_read = {};

  nlohmann::json j;
  j["far_probes"] = c.probes;
  if (c.probes > 0) {
    const double n = double(c.probes);
    std::vector<double> next, source, p;
    for (int64_t h = 0; h < H; ++h) {
      next.push_back(double(c.hit_next[size_t(h)]) / n);
      source.push_back(double(c.hit_source[size_t(h)]) / n);
      p.push_back(c.p_next[size_t(h)] / n);
    }
    j["hit_next"] = next;
    j["hit_source"] = source;
    j["p_next"] = p;
    j["hit_next_any_head"] = double(c.any) / n;
    j["chance"] = c.chance_sum / n;
  }
  if (attn.gate == MemoryGate::sigmoid) {
    j["gate"] = values_of(sigmoid(attn.gate_bias));
  } else {
    j["temperature"] = values_of(exp(attn.memory_log_temperature));
  }
  if (attn.alibi_slopes.defined()) j["alibi_slopes"] = values_of(attn.alibi_slopes);

  lm.train(true);
  j["grad_norm_local_probes"] =
      probe_gradients(lm, task, std::min(streams, batch), Probe::local, device);
  j["grad_norm_far_probes"] =
      probe_gradients(lm, task, std::min(streams, batch), Probe::far, device);
  lm.train(was_training);
  return j;
}

}  // namespace mnemo::memory

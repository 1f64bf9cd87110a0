// MemoryState helpers and SegmentLM's defaults (see segment_lm.h).
#include "memory/segment_lm.h"

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"

namespace mnemo::memory {

const Tensor* MemoryState::find(std::string_view name) const {
  for (const auto& [key, value] : tensors) {
    if (key == name) return &value;
  }
  return nullptr;
}

const Tensor& MemoryState::at(std::string_view name) const {
  const Tensor* t = find(name);
  MNEMO_CHECK(t != nullptr, "memory state: no tensor named '{}' ({} tensors)", name,
              tensors.size());
  return *t;
}

void MemoryState::set(const std::string& name, Tensor value) {
  for (auto& [key, existing] : tensors) {
    if (key == name) {
      existing = std::move(value);
      return;
    }
  }
  tensors.emplace_back(name, std::move(value));
}

MemoryState MemoryState::detached() const {
  MemoryState out;
  for (const auto& [key, value] : tensors) {
    out.tensors.emplace_back(key, value.defined() ? detach(value) : value);
  }
  return out;
}

MemoryState SegmentLM::reset_rows(const MemoryState& state,
                                  const std::vector<int64_t>& rows) const {
  if (rows.empty() || state.empty()) return state;
  const int64_t batch = state.tensors.front().second.size(0);
  const MemoryState fresh = initial_state(batch);
  MemoryState out;
  for (const auto& [name, value] : state.tensors) {
    const Tensor& init = fresh.at(name);
    MNEMO_CHECK(init.shape() == value.shape(),
                "reset_rows: state '{}' has shape {}, the initial state {}", name,
                shape_str(value.shape()), shape_str(init.shape()));
    // keep (B, 1, ..., 1): 1 for rows that continue, 0 for rows that restart.
    std::vector<double> keep(size_t(batch), 1.0);
    for (int64_t r : rows) {
      MNEMO_CHECK(r >= 0 && r < batch, "reset_rows: row {} out of range for {} streams", r, batch);
      keep[size_t(r)] = 0.0;
    }
    Shape mask_shape(size_t(value.dim()), 1);
    mask_shape[0] = batch;
    const Tensor mask = mnemo::to(gt(from_vector(keep, mask_shape), 0.0), value.device());
    out.tensors.emplace_back(name, where(mask, value, init));
  }
  return out;
}

SegmentLoss segment_loss(const Tensor& logits, const Tensor& targets) {
  MNEMO_CHECK(logits.dim() == 3 && targets.dim() == 2 && logits.size(0) == targets.size(0) &&
                  logits.size(1) == targets.size(1),
              "segment_loss: logits {} and targets {} do not match (want (B, T, V) and (B, T))",
              shape_str(logits.shape()), shape_str(targets.shape()));
  const int64_t V = logits.size(2);
  const Tensor flat_targets = reshape(targets, {-1});
  const Tensor per_token =
      cross_entropy(reshape(logits, {-1, V}), flat_targets, -100, 0.0, Reduction::none);
  SegmentLoss loss;
  loss.sum = sum(per_token);
  loss.count = int64_t(sum(ne(flat_targets, -100.0)).item());
  return loss;
}

int64_t scored_targets(const std::vector<Tensor>& ids, const std::vector<Tensor>& targets) {
  MNEMO_CHECK(!ids.empty() && ids.size() == targets.size(),
              "forward_backward: {} id segments and {} target segments", ids.size(),
              targets.size());
  int64_t count = 0;
  for (const Tensor& t : targets) count += int64_t(sum(ne(t, -100.0)).item());
  MNEMO_CHECK(count > 0, "forward_backward: every target is ignored (-100)");
  return count;
}

double SegmentLM::forward_backward(const std::vector<Tensor>& ids,
                                   const std::vector<Tensor>& targets, const MemoryState& initial,
                                   MemoryState* final_state, double grad_scale) {
  const int64_t count = scored_targets(ids, targets);
  MemoryState state = initial;
  Tensor total;
  for (size_t s = 0; s < ids.size(); ++s) {
    SegmentOutput out = forward_segment(ids[s], state);
    SegmentLoss loss = segment_loss(out.logits, targets[s]);
    total = total.defined() ? add(total, loss.sum) : loss.sum;
    state = std::move(out.state);
  }
  const Tensor mean = mul(total, 1.0 / double(count));
  backward(mean, full({}, grad_scale, options_of(mean)));
  if (final_state != nullptr) *final_state = state.detached();
  return mean.item();
}

}  // namespace mnemo::memory

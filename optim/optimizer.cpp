// Optimizer: parameter bookkeeping, gradients, and state save/restore (see optimizer.h).
#include "optim/optimizer.h"

#include <cmath>
#include <map>
#include <unordered_map>

#include "core/error.h"
#include "core/ops/factory.h"
#include "core/ops/view.h"
#include "optim/clip.h"

namespace mnemo::optim {

Optimizer::Optimizer(std::string_view kind, std::vector<ParamGroup> groups, double lr,
                     std::vector<std::string> slot_names)
    : kind_(kind), groups_(std::move(groups)), slot_names_(std::move(slot_names)) {
  set_lr(lr);
  std::unordered_map<std::string, size_t> by_name;
  std::unordered_map<const TensorImpl*, size_t> by_tensor;
  for (size_t g = 0; g < groups_.size(); ++g) {
    ParamGroup& group = groups_[g];
    if (group.names.empty()) {
      for (size_t i = 0; i < group.params.size(); ++i) {
        group.names.push_back(fmt::format("group{}.{}", g, i));
      }
    }
    MNEMO_CHECK(group.names.size() == group.params.size(),
                "{}: group {} has {} names for {} parameters", kind_, g, group.names.size(),
                group.params.size());
    MNEMO_CHECK(std::isfinite(group.weight_decay) && group.weight_decay >= 0,
                "{}: group {} weight_decay must be finite and >= 0, got {}", kind_, g,
                group.weight_decay);
    MNEMO_CHECK(std::isfinite(group.lr_scale) && group.lr_scale >= 0,
                "{}: group {} lr_scale must be finite and >= 0, got {}", kind_, g, group.lr_scale);
    for (size_t i = 0; i < group.params.size(); ++i) {
      const std::string& name = group.names[i];
      const Tensor& param = group.params[i];
      MNEMO_CHECK(param.defined(), "{}: parameter '{}' is undefined", kind_, name);
      MNEMO_CHECK(is_floating(param.dtype()), "{}: parameter '{}' must be floating, got {}", kind_,
                  name, param.dtype());
      MNEMO_CHECK(param.is_contiguous(), "{}: parameter '{}' must be contiguous", kind_, name);
      auto [named, fresh_name] = by_name.emplace(name, params_.size());
      MNEMO_CHECK(fresh_name, "{}: parameter name '{}' appears twice", kind_, name);
      auto [same, fresh_tensor] = by_tensor.emplace(param.impl(), params_.size());
      MNEMO_CHECK(fresh_tensor, "{}: parameter '{}' is the same tensor as '{}'; list it once",
                  kind_, name, params_[same->second].name);
      params_.push_back({name, param, g, std::vector<Tensor>(slot_names_.size())});
    }
  }
}

void Optimizer::zero_grad() {
  for (ParamState& p : params_) {
    if (p.param.grad().defined()) p.param.set_grad(Tensor());
  }
}

void Optimizer::set_lr(double lr) {
  MNEMO_CHECK(std::isfinite(lr) && lr >= 0, "{}: lr must be finite and >= 0, got {}", kind_, lr);
  lr_ = lr;
}

void Optimizer::set_steps_taken(int64_t steps) {
  MNEMO_CHECK(steps >= 0, "{}: steps_taken must be >= 0, got {}", kind_, steps);
  steps_taken_ = steps;
}

NamedTensors Optimizer::state_tensors() const {
  NamedTensors out;
  for (const ParamState& p : params_) {
    for (size_t s = 0; s < slot_names_.size(); ++s) {
      if (p.slots[s].defined()) out.emplace_back(p.name + "." + slot_names_[s], p.slots[s]);
    }
  }
  return out;
}

double Optimizer::grad_norm() {
  std::vector<Tensor> tensors;
  tensors.reserve(params_.size());
  for (const ParamState& p : params_) tensors.push_back(p.param);
  return global_grad_norm(tensors);
}

std::vector<std::vector<const Tensor*>> Optimizer::match_state(const NamedTensors& state) const {
  std::map<std::string, std::pair<size_t, size_t>> keys;  // "<name>.<slot>" -> (param, slot)
  for (size_t i = 0; i < params_.size(); ++i) {
    for (size_t s = 0; s < slot_names_.size(); ++s) {
      keys.emplace(params_[i].name + "." + slot_names_[s], std::pair{i, s});
    }
  }
  std::vector<std::vector<const Tensor*>> given(params_.size(),
                                                std::vector<const Tensor*>(slot_names_.size()));
  for (const auto& [key, tensor] : state) {
    auto it = keys.find(key);
    MNEMO_CHECK(it != keys.end(), "{}: unknown optimizer state '{}'", kind_, key);
    auto [i, s] = it->second;
    const Tensor& param = params_[i].param;
    MNEMO_CHECK(given[i][s] == nullptr, "{}: optimizer state '{}' given twice", kind_, key);
    MNEMO_CHECK(tensor.defined(), "{}: optimizer state '{}' is undefined", kind_, key);
    MNEMO_CHECK(is_floating(tensor.dtype()), "{}: optimizer state '{}' must be floating, got {}",
                kind_, key, tensor.dtype());
    MNEMO_CHECK(tensor.shape() == param.shape(),
                "{}: optimizer state '{}' has shape {}, its parameter {}", kind_, key,
                shape_str(tensor.shape()), shape_str(param.shape()));
    given[i][s] = &tensor;
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    size_t count = 0;
    for (const Tensor* t : given[i]) count += t != nullptr;
    if (count == 0 || count == slot_names_.size()) continue;
    for (size_t s = 0; s < slot_names_.size(); ++s) {
      MNEMO_CHECK(given[i][s] != nullptr,
                  "{}: optimizer state '{}.{}' is missing (other state of '{}' is given)", kind_,
                  params_[i].name, slot_names_[s], params_[i].name);
    }
  }
  return given;
}

void Optimizer::load_state_tensors(const NamedTensors& state) {
  // Check everything first, so that a bad entry leaves the optimizer as it was.
  const std::vector<std::vector<const Tensor*>> given = match_state(state);
  for (size_t i = 0; i < params_.size(); ++i) {
    for (size_t s = 0; s < slot_names_.size(); ++s) {
      Tensor& slot = params_[i].slots[s];
      slot = Tensor();
      if (given[i][s] == nullptr) continue;
      slot = empty(params_[i].param.shape(),
                   {state_dtype(params_[i].param.dtype()), params_[i].param.device()});
      copy_(slot, *given[i][s]);
    }
  }
}

Tensor Optimizer::zero_state(const Tensor& param) const {
  return zeros(param.shape(), {state_dtype(param.dtype()), param.device()});
}

Tensor Optimizer::gradient_of(const ParamState& p) const {
  Tensor grad = p.param.grad();
  if (!grad.defined()) return grad;
  MNEMO_CHECK(grad.shape() == p.param.shape(),
              "{}: the gradient of '{}' has shape {}, the parameter {}", kind_, p.name,
              shape_str(grad.shape()), shape_str(p.param.shape()));
  MNEMO_CHECK(grad.device() == p.param.device(),
              "{}: the gradient of '{}' is on {}, the parameter on {}", kind_, p.name,
              grad.device(), p.param.device());
  grad = core::to(grad, p.param.dtype());
  return core::contiguous(grad);
}

}  // namespace mnemo::optim

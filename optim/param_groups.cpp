// decay_groups and the scalar-control group: see param_groups.h.
#include "optim/param_groups.h"

#include <cmath>
#include <unordered_map>

#include "core/error.h"

namespace mnemo::optim {

std::vector<ParamGroup> decay_groups(const NamedTensors& named_params, double weight_decay) {
  MNEMO_CHECK(std::isfinite(weight_decay) && weight_decay >= 0,
              "decay_groups: weight_decay must be finite and >= 0, got {}", weight_decay);
  // One entry per distinct tensor, in order of first appearance.
  struct Entry {
    std::string name;
    Tensor param;
    bool decay;
  };
  std::vector<Entry> entries;
  std::unordered_map<const TensorImpl*, size_t> seen;
  for (const auto& [name, param] : named_params) {
    MNEMO_CHECK(param.defined(), "decay_groups: parameter '{}' is undefined", name);
    const bool embed = name.find("embed") != std::string::npos;
    auto [it, fresh] = seen.emplace(param.impl(), entries.size());
    if (fresh) {
      entries.push_back({name, param, param.dim() >= 2 && !embed});
    } else if (embed) {
      entries[it->second].decay = false;
    }
  }
  std::vector<ParamGroup> groups(2);
  groups[0].weight_decay = weight_decay;
  groups[1].weight_decay = 0;
  for (Entry& e : entries) {
    ParamGroup& group = groups[e.decay ? 0 : 1];
    group.names.push_back(std::move(e.name));
    group.params.push_back(std::move(e.param));
  }
  return groups;
}

bool is_scalar_control(const std::string& name, const Tensor& param) {
  return param.dim() <= 1 && param.numel() <= 64 && name.find("norm") == std::string::npos;
}

void split_scalar_controls(std::vector<ParamGroup>& groups, double lr_scale) {
  MNEMO_CHECK(std::isfinite(lr_scale) && lr_scale > 0,
              "split_scalar_controls: lr_scale must be finite and > 0, got {}", lr_scale);
  ParamGroup scalars;
  scalars.lr_scale = lr_scale;
  for (ParamGroup& group : groups) {
    MNEMO_CHECK(group.names.size() == group.params.size(),
                "split_scalar_controls: a group has {} names for {} parameters", group.names.size(),
                group.params.size());
    ParamGroup kept = group;
    kept.names.clear();
    kept.params.clear();
    for (size_t i = 0; i < group.params.size(); ++i) {
      ParamGroup& to = is_scalar_control(group.names[i], group.params[i]) ? scalars : kept;
      to.names.push_back(group.names[i]);
      to.params.push_back(group.params[i]);
    }
    group = std::move(kept);
  }
  groups.push_back(std::move(scalars));
}

}  // namespace mnemo::optim

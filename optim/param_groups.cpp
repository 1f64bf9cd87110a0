// decay_groups: see param_groups.h.
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

}  // namespace mnemo::optim

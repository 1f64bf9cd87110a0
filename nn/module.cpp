// Module: registration, recursive traversal, state_dict and in-place conversion (module.h).
#include "nn/module.h"

#include <unordered_map>
#include <unordered_set>

#include "autograd/grad_mode.h"
#include "core/error.h"
#include "core/ops/view.h"

namespace mnemo::nn {

namespace {

std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

// Points t's impl at the data of `converted` (a different tensor with t's shape), so every
// handle on t sees the new dtype/device. Gradients of the old data no longer fit: dropped.
void retarget(const Tensor& t, const Tensor& converted) {
  if (converted.is_same(t)) return;
  TensorImpl* impl = t.impl();
  impl->storage = converted.storage();
  impl->shape = converted.shape();
  impl->strides = converted.strides();
  impl->offset = converted.offset();
  impl->dtype = converted.dtype();
  if (t.autograd_meta() != nullptr) t.set_grad(Tensor());
}

}  // namespace

void Module::check_new_name(const std::string& name) const {
  MNEMO_CHECK(!name.empty() && name.find('.') == std::string::npos,
              "Module: invalid name '{}' (must be non-empty and contain no '.')", name);
  for (const auto& [n, t] : params_) {
    MNEMO_CHECK(n != name, "Module: '{}' is already registered as a parameter", name);
  }
  for (const Buffer& b : buffers_) {
    MNEMO_CHECK(b.name != name, "Module: '{}' is already registered as a buffer", name);
  }
  for (const auto& [n, m] : children_) {
    MNEMO_CHECK(n != name, "Module: '{}' is already registered as a module", name);
  }
}

Tensor Module::register_parameter(const std::string& name, Tensor t) {
  check_new_name(name);
  MNEMO_CHECK(t.defined(), "Module: parameter '{}' is undefined", name);
  MNEMO_CHECK(is_floating(t.dtype()), "Module: parameter '{}' must be floating, got {}", name,
              t.dtype());
  t.set_requires_grad(true);
  params_.emplace_back(name, t);
  return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t, bool persistent) {
  check_new_name(name);
  MNEMO_CHECK(t.defined(), "Module: buffer '{}' is undefined", name);
  buffers_.push_back({name, t, persistent});
  return t;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  check_new_name(name);
  MNEMO_CHECK(module != nullptr, "Module: child module '{}' is null", name);
  children_.emplace_back(name, std::move(module));
}

void Module::collect(const std::string& prefix, NamedTensors& out,
                     std::initializer_list<Kind> kinds) const {
  for (Kind kind : kinds) {
    if (kind == Kind::parameters) {
      for (const auto& [name, t] : params_) out.emplace_back(join(prefix, name), t);
    } else {
      for (const Buffer& b : buffers_) {
        if (b.persistent || kind == Kind::buffers) out.emplace_back(join(prefix, b.name), b.tensor);
      }
    }
  }
  for (const auto& [name, child] : children_) child->collect(join(prefix, name), out, kinds);
}

NamedTensors Module::named_parameters() const {
  NamedTensors all;
  collect("", all, {Kind::parameters});
  NamedTensors unique;
  std::unordered_set<const TensorImpl*> seen;
  for (auto& [name, t] : all) {
    if (seen.insert(t.impl()).second) unique.emplace_back(std::move(name), t);
  }
  return unique;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (const auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

NamedTensors Module::named_buffers() const {
  NamedTensors buffers;
  collect("", buffers, {Kind::buffers});
  return buffers;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

NamedTensors Module::state_dict() const {
  NamedTensors state;
  collect("", state, {Kind::parameters, Kind::persistent_buffers});
  return state;
}

void Module::load_state_dict(const NamedTensors& state, bool strict) {
  const NamedTensors own = state_dict();
  std::unordered_map<std::string, Tensor> given;
  for (const auto& [name, t] : state) {
    MNEMO_CHECK(given.emplace(name, t).second, "load_state_dict: key '{}' is given twice", name);
  }
  std::unordered_set<std::string> own_names;
  NoGradGuard no_grad;
  for (const auto& [name, dst] : own) {
    own_names.insert(name);
    auto it = given.find(name);
    if (it == given.end()) {
      MNEMO_CHECK(!strict, "load_state_dict: missing key '{}'", name);
      continue;
    }
    const Tensor& src = it->second;
    MNEMO_CHECK(src.defined(), "load_state_dict: key '{}' holds an undefined tensor", name);
    MNEMO_CHECK(src.shape() == dst.shape(),
                "load_state_dict: key '{}' has shape {}, the module expects {}", name,
                shape_str(src.shape()), shape_str(dst.shape()));
    copy_(dst, src);
  }
  if (strict) {
    for (const auto& [name, t] : state) {
      MNEMO_CHECK(own_names.count(name) != 0, "load_state_dict: unexpected key '{}'", name);
    }
  }
  after_load_state_dict();
}

void Module::train(bool training) {
  training_ = training;
  for (auto& [name, child] : children_) child->train(training);
}

void Module::zero_grad() {
  for (const Tensor& p : parameters()) {
    if (p.autograd_meta() != nullptr) p.set_grad(Tensor());
  }
}

void Module::to(DType dtype) {
  NamedTensors all;
  collect("", all, {Kind::parameters, Kind::buffers});
  for (const auto& [name, t] : all) {
    if (is_floating(t.dtype())) retarget(t, core::to(t, dtype));
  }
}

void Module::to(Device device) {
  NamedTensors all;
  collect("", all, {Kind::parameters, Kind::buffers});
  for (const auto& [name, t] : all) retarget(t, core::to(t, device));
}

}  // namespace mnemo::nn

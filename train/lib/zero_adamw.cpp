// ZeroAdamW: flat layout, sharded AdamW step, state gather/load (see zero_adamw.h).
#include "train/lib/zero_adamw.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <unordered_set>

#include "core/error.h"
#include "core/ops/factory.h"
#include "core/ops/optim.h"
#include "core/ops/view.h"

namespace mnemo::train {

namespace {

const char* const kSlots[2] = {"exp_avg", "exp_avg_sq"};

// The parameter as a flat (numel,) view of its own storage (no copy).
Tensor flat_view(const Tensor& t) {
  return core::view(t, {t.numel()});
}

}  // namespace

ZeroAdamW::ZeroAdamW(dist::Communicator& comm, std::vector<optim::ParamGroup> groups, double lr,
                     double beta1, double beta2, double eps)
    : comm_(comm), groups_(std::move(groups)), lr_(lr), beta1_(beta1), beta2_(beta2), eps_(eps) {
  MNEMO_CHECK(std::isfinite(lr) && lr >= 0, "ZeroAdamW: lr must be finite and >= 0, got {}", lr);
  MNEMO_CHECK(beta1 >= 0 && beta1 < 1, "ZeroAdamW: beta1 must be in [0, 1), got {}", beta1);
  MNEMO_CHECK(beta2 >= 0 && beta2 < 1, "ZeroAdamW: beta2 must be in [0, 1), got {}", beta2);
  MNEMO_CHECK(std::isfinite(eps) && eps >= 0, "ZeroAdamW: eps must be finite and >= 0, got {}",
              eps);
  std::unordered_set<std::string> names;
  std::unordered_set<const TensorImpl*> tensors;
  for (size_t g = 0; g < groups_.size(); ++g) {
    optim::ParamGroup& group = groups_[g];
    if (group.names.empty()) {
      for (size_t i = 0; i < group.params.size(); ++i) {
        group.names.push_back(fmt::format("group{}.{}", g, i));
      }
    }
    MNEMO_CHECK(group.names.size() == group.params.size(),
                "ZeroAdamW: group {} has {} names for {} parameters", g, group.names.size(),
                group.params.size());
    MNEMO_CHECK(std::isfinite(group.weight_decay) && group.weight_decay >= 0,
                "ZeroAdamW: group {} weight_decay must be finite and >= 0, got {}", g,
                group.weight_decay);
    MNEMO_CHECK(std::isfinite(group.lr_scale) && group.lr_scale >= 0,
                "ZeroAdamW: group {} lr_scale must be finite and >= 0, got {}", g, group.lr_scale);
    for (size_t i = 0; i < group.params.size(); ++i) {
      const std::string& name = group.names[i];
      const Tensor& p = group.params[i];
      MNEMO_CHECK(p.defined(), "ZeroAdamW: parameter '{}' is undefined", name);
      MNEMO_CHECK(p.dtype() == DType::f32,
                  "ZeroAdamW: parameter '{}' is {}; --zero 1 supports f32 parameters only", name,
                  p.dtype());
      MNEMO_CHECK(p.device().is_cpu(), "ZeroAdamW: parameter '{}' is on {}; only CPU for now", name,
                  p.device());
      MNEMO_CHECK(p.is_contiguous(), "ZeroAdamW: parameter '{}' must be contiguous", name);
      MNEMO_CHECK(names.insert(name).second, "ZeroAdamW: parameter name '{}' appears twice", name);
      MNEMO_CHECK(tensors.insert(p.impl()).second,
                  "ZeroAdamW: parameter '{}' is a tensor already listed; list it once", name);
      entries_.push_back({name, p, g, numel_});
      numel_ += p.numel();
    }
  }
  const int64_t world = comm_.world_size();
  shard_numel_ = std::max<int64_t>(1, (numel_ + world - 1) / world);
  flat_ = zeros({world * shard_numel_});
  grad_shard_ = zeros({shard_numel_});
  param_shard_ = zeros({shard_numel_});
  exp_avg_ = zeros({shard_numel_});
  exp_avg_sq_ = zeros({shard_numel_});
}

template <typename Fn>
void ZeroAdamW::for_each_piece(Fn&& fn) const {
  const int64_t lo = shard_begin(), hi = lo + shard_numel_;
  for (const Entry& e : entries_) {
    const int64_t begin = std::max(lo, e.offset);
    const int64_t end = std::min(hi, e.offset + e.param.numel());
    if (begin < end) fn(e, begin, end - begin);
  }
}

double ZeroAdamW::reduce_gradients(dist::ReduceOp op) {
  // f64 gradients (autograd/exact_grad.h) are reduced in f64 and rounded once, afterwards.
  bool exact = false;
  for (const Entry& e : entries_) {
    exact = exact || (e.param.grad().defined() && e.param.grad().dtype() == DType::f64);
  }
  if (exact && !flat64_.defined()) {
    flat64_ = zeros({flat_.numel()}, {.dtype = DType::f64});
    grad_shard64_ = zeros({shard_numel_}, {.dtype = DType::f64});
  }
  const Tensor& flat = exact ? flat64_ : flat_;
  // Pack: flat[offset .. offset + numel) = grad (zeros where undefined); padding stays zero.
  for (const Entry& e : entries_) {
    Tensor slot = core::narrow(flat, 0, e.offset, e.param.numel());
    Tensor grad = e.param.grad();
    if (!grad.defined()) {
      fill_(slot, 0);
      continue;
    }
    MNEMO_CHECK(grad.shape() == e.param.shape(),
                "ZeroAdamW: the gradient of '{}' has shape {}, the parameter {}", e.name,
                shape_str(grad.shape()), shape_str(e.param.shape()));
    copy_(slot, core::reshape(grad, {e.param.numel()}));
  }
  fill_(core::narrow(flat, 0, numel_, flat.numel() - numel_), 0);
  if (exact) {
    comm_.reduce_scatter(flat64_, grad_shard64_, op);
    copy_(grad_shard_, grad_shard64_);
  } else {
    comm_.reduce_scatter(flat_, grad_shard_, op);
  }

  // Global norm: this shard's sum of squares in f64, summed over ranks.
  double local = 0;
  const float* g = grad_shard_.data<float>();
  for (int64_t i = 0; i < shard_numel_; ++i) local += double(g[i]) * double(g[i]);
  Tensor total = from_vector(std::vector<double>{local}, {1}, {DType::f64});
  comm_.all_reduce(total, dist::ReduceOp::sum);
  return std::sqrt(total.item());
}

void ZeroAdamW::step(double lr, double grad_scale) {
  MNEMO_CHECK(std::isfinite(lr) && lr >= 0, "ZeroAdamW: lr must be finite and >= 0, got {}", lr);
  MNEMO_CHECK(std::isfinite(grad_scale), "ZeroAdamW: grad_scale must be finite, got {}",
              grad_scale);
  lr_ = lr;
  AdamWParams hyper;
  hyper.beta1 = beta1_;
  hyper.beta2 = beta2_;
  hyper.eps = eps_;
  hyper.step = steps_taken_ + 1;
  hyper.grad_scale = grad_scale;
  const int64_t lo = shard_begin();
  // Update the pieces of the parameters inside the shard, in place.
  for_each_piece([&](const Entry& e, int64_t begin, int64_t length) {
    const optim::ParamGroup& group = groups_[e.group];
    hyper.lr = lr * group.lr_scale;
    hyper.weight_decay = group.weight_decay;
    Tensor param = core::narrow(flat_view(e.param), 0, begin - e.offset, length);
    adamw_(param, core::narrow(grad_shard_, 0, begin - lo, length),
           core::narrow(exp_avg_, 0, begin - lo, length),
           core::narrow(exp_avg_sq_, 0, begin - lo, length), hyper);
    copy_(core::narrow(param_shard_, 0, begin - lo, length), param);
  });
  // Every rank's updated shard to every rank, then back into the parameters.
  comm_.all_gather(param_shard_, flat_);
  for (const Entry& e : entries_) {
    copy_(flat_view(e.param), core::narrow(flat_, 0, e.offset, e.param.numel()));
  }
  ++steps_taken_;
}

void ZeroAdamW::zero_grad() {
  for (Entry& e : entries_) {
    if (e.param.grad().defined()) e.param.set_grad(Tensor());
  }
}

void ZeroAdamW::set_steps_taken(int64_t steps) {
  MNEMO_CHECK(steps >= 0, "ZeroAdamW: steps_taken must be >= 0, got {}", steps);
  steps_taken_ = steps;
}

optim::NamedTensors ZeroAdamW::gather_state_tensors() {
  optim::NamedTensors out;
  Tensor* shards[2] = {&exp_avg_, &exp_avg_sq_};
  std::vector<Tensor> full(2);
  for (int s = 0; s < 2; ++s) {
    full[s] = empty({flat_.numel()});
    comm_.all_gather(*shards[s], full[s]);
  }
  for (const Entry& e : entries_) {
    for (int s = 0; s < 2; ++s) {
      Tensor piece = core::narrow(full[s], 0, e.offset, e.param.numel());
      out.emplace_back(e.name + "." + kSlots[s], core::view(core::clone(piece), e.param.shape()));
    }
  }
  return out;
}

void ZeroAdamW::load_state_tensors(const optim::NamedTensors& full) {
  // Check everything first, so that a bad entry leaves the state as it was.
  std::map<std::string, std::pair<size_t, int>> keys;  // "<name>.<slot>" -> (entry, slot)
  for (size_t i = 0; i < entries_.size(); ++i) {
    for (int s = 0; s < 2; ++s) keys.emplace(entries_[i].name + "." + kSlots[s], std::pair{i, s});
  }
  std::vector<std::array<const Tensor*, 2>> given(entries_.size(), {nullptr, nullptr});
  for (const auto& [key, tensor] : full) {
    auto it = keys.find(key);
    MNEMO_CHECK(it != keys.end(), "ZeroAdamW: unknown optimizer state '{}'", key);
    auto [i, s] = it->second;
    const Tensor& param = entries_[i].param;
    MNEMO_CHECK(given[i][s] == nullptr, "ZeroAdamW: optimizer state '{}' given twice", key);
    MNEMO_CHECK(tensor.defined(), "ZeroAdamW: optimizer state '{}' is undefined", key);
    MNEMO_CHECK(is_floating(tensor.dtype()),
                "ZeroAdamW: optimizer state '{}' must be floating, got {}", key, tensor.dtype());
    MNEMO_CHECK(tensor.shape() == param.shape(),
                "ZeroAdamW: optimizer state '{}' has shape {}, its parameter {}", key,
                shape_str(tensor.shape()), shape_str(param.shape()));
    given[i][s] = &tensor;
  }
  for (size_t i = 0; i < entries_.size(); ++i) {
    const bool has0 = given[i][0] != nullptr, has1 = given[i][1] != nullptr;
    MNEMO_CHECK(has0 == has1,
                "ZeroAdamW: optimizer state '{}.{}' is missing (other state of '{}' is given)",
                entries_[i].name, kSlots[has0 ? 1 : 0], entries_[i].name);
  }
  // Keep this rank's shard: the overlap of each parameter's flat range with the shard.
  const int64_t lo = shard_begin();
  Tensor* shards[2] = {&exp_avg_, &exp_avg_sq_};
  for (int s = 0; s < 2; ++s) fill_(*shards[s], 0);
  for_each_piece([&](const Entry& e, int64_t begin, int64_t length) {
    const size_t i = size_t(&e - entries_.data());
    for (int s = 0; s < 2; ++s) {
      if (given[i][s] == nullptr) continue;
      Tensor src =
          core::narrow(core::reshape(*given[i][s], {e.param.numel()}), 0, begin - e.offset, length);
      copy_(core::narrow(*shards[s], 0, begin - lo, length), src);
    }
  });
}

}  // namespace mnemo::train

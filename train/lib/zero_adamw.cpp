// ZeroAdamW: flat layout, sharded AdamW step, state gather/load (see zero_adamw.h).
#include "train/lib/zero_adamw.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/ops/factory.h"
#include "core/ops/optim.h"
#include "core/ops/view.h"

namespace mnemo::train {

namespace {

// The parameter as a flat (numel,) view of its own storage (no copy).
Tensor flat_view(const Tensor& t) {
  return core::view(t, {t.numel()});
}

}  // namespace

ZeroAdamW::ZeroAdamW(dist::Communicator& comm, std::vector<optim::ParamGroup> groups, double lr,
                     double beta1, double beta2, double eps, dist::ReduceOp op)
    : AdamW("ZeroAdamW", std::move(groups), lr, beta1, beta2, eps), comm_(comm), op_(op) {
  // The base class has checked names, groups and duplicates; the flat layout needs more.
  for (const ParamState& p : params()) {
    MNEMO_CHECK(p.param.dtype() == DType::f32,
                "ZeroAdamW: parameter '{}' is {}; --zero 1 supports f32 parameters only", p.name,
                p.param.dtype());
    MNEMO_CHECK(p.param.device().is_cpu(), "ZeroAdamW: parameter '{}' is on {}; only CPU for now",
                p.name, p.param.device());
    offsets_.push_back(numel_);
    numel_ += p.param.numel();
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
  for (size_t i = 0; i < offsets_.size(); ++i) {
    const int64_t begin = std::max(lo, offsets_[i]);
    const int64_t end = std::min(hi, offsets_[i] + params()[i].param.numel());
    if (begin < end) fn(i, begin, end - begin);
  }
}

double ZeroAdamW::grad_norm() {
  // f64 gradients (autograd/exact_grad.h) are reduced in f64 and rounded once, afterwards.
  bool exact = false;
  for (const ParamState& p : params()) {
    exact = exact || (p.param.grad().defined() && p.param.grad().dtype() == DType::f64);
  }
  if (exact && !flat64_.defined()) {
    flat64_ = zeros({flat_.numel()}, {.dtype = DType::f64});
    grad_shard64_ = zeros({shard_numel_}, {.dtype = DType::f64});
  }
  const Tensor& flat = exact ? flat64_ : flat_;
  // Pack: flat[offset .. offset + numel) = grad (zeros where undefined); padding stays zero.
  for (size_t i = 0; i < offsets_.size(); ++i) {
    const ParamState& p = params()[i];
    Tensor slot = core::narrow(flat, 0, offsets_[i], p.param.numel());
    Tensor grad = p.param.grad();
    if (!grad.defined()) {
      fill_(slot, 0);
      continue;
    }
    MNEMO_CHECK(grad.shape() == p.param.shape(),
                "ZeroAdamW: the gradient of '{}' has shape {}, the parameter {}", p.name,
                shape_str(grad.shape()), shape_str(p.param.shape()));
    copy_(slot, core::reshape(grad, {p.param.numel()}));
  }
  fill_(core::narrow(flat, 0, numel_, flat.numel() - numel_), 0);
  if (exact) {
    comm_.reduce_scatter(flat64_, grad_shard64_, op_);
    copy_(grad_shard_, grad_shard64_);
  } else {
    comm_.reduce_scatter(flat_, grad_shard_, op_);
  }

  // Global norm: this shard's sum of squares in f64, summed over ranks.
  double local = 0;
  const float* g = grad_shard_.data<float>();
  for (int64_t i = 0; i < shard_numel_; ++i) local += double(g[i]) * double(g[i]);
  Tensor total = from_vector(std::vector<double>{local}, {1}, {DType::f64});
  comm_.all_reduce(total, dist::ReduceOp::sum);
  return std::sqrt(total.item());
}

void ZeroAdamW::step(double grad_scale) {
  AdamWParams hyper = next_step_params(grad_scale);
  const int64_t lo = shard_begin();
  // Update the pieces of the parameters inside the shard, in place.
  for_each_piece([&](size_t i, int64_t begin, int64_t length) {
    const ParamState& p = params()[i];
    const optim::ParamGroup& group = groups()[p.group];
    hyper.lr = lr() * group.lr_scale;
    hyper.weight_decay = group.weight_decay;
    Tensor param = core::narrow(flat_view(p.param), 0, begin - offsets_[i], length);
    adamw_(param, core::narrow(grad_shard_, 0, begin - lo, length),
           core::narrow(exp_avg_, 0, begin - lo, length),
           core::narrow(exp_avg_sq_, 0, begin - lo, length), hyper);
    copy_(core::narrow(param_shard_, 0, begin - lo, length), param);
  });
  // Every rank's updated shard to every rank, then back into the parameters.
  comm_.all_gather(param_shard_, flat_);
  for (size_t i = 0; i < offsets_.size(); ++i) {
    const Tensor& param = params()[i].param;
    copy_(flat_view(param), core::narrow(flat_, 0, offsets_[i], param.numel()));
  }
  count_step();
}

optim::NamedTensors ZeroAdamW::state_tensors() const {
  optim::NamedTensors out;
  const Tensor* shards[2] = {&exp_avg_, &exp_avg_sq_};
  std::vector<Tensor> full(2);
  for (int s = 0; s < 2; ++s) {
    full[s] = empty({flat_.numel()});
    comm_.all_gather(*shards[s], full[s]);
  }
  for (size_t i = 0; i < offsets_.size(); ++i) {
    const ParamState& p = params()[i];
    for (int s = 0; s < 2; ++s) {
      Tensor piece = core::narrow(full[s], 0, offsets_[i], p.param.numel());
      out.emplace_back(p.name + "." + slot_names()[size_t(s)],
                       core::view(core::clone(piece), p.param.shape()));
    }
  }
  return out;
}

void ZeroAdamW::load_state_tensors(const optim::NamedTensors& full) {
  // Check everything first, so that a bad entry leaves the state as it was.
  const std::vector<std::vector<const Tensor*>> given = match_state(full);
  // Keep this rank's shard: the overlap of each parameter's flat range with the shard.
  const int64_t lo = shard_begin();
  Tensor* shards[2] = {&exp_avg_, &exp_avg_sq_};
  for (int s = 0; s < 2; ++s) fill_(*shards[s], 0);
  for_each_piece([&](size_t i, int64_t begin, int64_t length) {
    for (int s = 0; s < 2; ++s) {
      if (given[i][size_t(s)] == nullptr) continue;
      const Tensor whole = core::reshape(*given[i][size_t(s)], {params()[i].param.numel()});
      copy_(core::narrow(*shards[s], 0, begin - lo, length),
            core::narrow(whole, 0, begin - offsets_[i], length));
    }
  });
}

}  // namespace mnemo::train

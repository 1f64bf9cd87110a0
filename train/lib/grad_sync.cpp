// Bucketed gradient averaging (see grad_sync.h).
#include "train/lib/grad_sync.h"

#include "autograd/engine.h"
#include "autograd/ops.h"
#include "core/error.h"

namespace mnemo::train {

namespace {

// A frozen parameter (requires_grad false) has no gradient to reduce: leaving it out keeps
// it without one, so the optimizer never moves it.
std::vector<Tensor> trainable(const std::vector<Tensor>& params) {
  std::vector<Tensor> out;
  for (const Tensor& p : params) {
    if (p.requires_grad()) out.push_back(p);
  }
  return out;
}

}  // namespace

GradientSync::GradientSync(dist::Communicator& comm, const std::vector<Tensor>& params,
                           Options options)
    : comm_(comm), options_(options), params_(trainable(params)), bucket_of_(params_.size()) {
  MNEMO_CHECK(options.bucket_bytes > 0, "data parallel: the bucket size must be positive, got {}",
              options.bucket_bytes);
  if (comm_.world_size() == 1) return;
  const DType dtype = options.exact ? DType::f64 : DType::f32;
  const int64_t bucket_numel =
      std::max<int64_t>(1, options.bucket_bytes / int64_t(dtype_size(dtype)));
  for (size_t i = params_.size(); i-- > 0;) {
    if (buckets_.empty() || buckets_.back().numel >= bucket_numel) buckets_.emplace_back();
    buckets_.back().params.push_back(i);
    buckets_.back().numel += params_[i].numel();
    bucket_of_[i] = buckets_.size() - 1;
  }
  for (Bucket& b : buckets_) {
    b.buffer = empty({b.numel}, {.dtype = dtype, .device = params_[0].device()});
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    register_post_accumulate_grad_hook(params_[i], [this, i](const Tensor&) { on_ready(i); });
  }
}

void GradientSync::on_ready(size_t param) {
  if (!enabled_) return;
  Bucket& b = buckets_[bucket_of_[param]];
  if (++b.ready == int64_t(b.params.size())) {
    b.complete = true;
    reduce_ready_buckets();
  }
}

void GradientSync::reduce_ready_buckets() {
  while (next_ < buckets_.size() && buckets_[next_].complete) reduce(buckets_[next_++]);
}

// Packs the bucket and starts its all_reduce; on a GPU it runs on the communication stream
// while backward goes on (all_reduce_deferred). finish() waits and unpacks.
void GradientSync::reduce(Bucket& b) {
  int64_t offset = 0;
  for (size_t i : b.params) {
    const Tensor& p = params_[i];
    Tensor slot = narrow(b.buffer, 0, offset, p.numel());
    if (p.grad().defined()) {
      copy_(slot, reshape(p.grad(), {p.numel()}));
    } else {
      fill_(slot, 0);
    }
    offset += p.numel();
  }
  comm_.all_reduce_deferred(b.buffer, options_.op);
}

void GradientSync::unpack(const Bucket& b) {
  int64_t offset = 0;
  for (size_t i : b.params) {
    Tensor p = params_[i];
    Tensor reduced = view(narrow(b.buffer, 0, offset, p.numel()), p.shape());
    if (p.grad().defined() && p.grad().dtype() == p.dtype()) {
      copy_(p.grad(), reduced);
    } else {
      // A copy (the bucket is reused); an f64 gradient is rounded here, once.
      p.set_grad(reduced.dtype() == p.dtype() ? clone(reduced) : to(reduced, p.dtype()));
    }
    offset += p.numel();
  }
}

void GradientSync::finish() {
  for (Bucket& b : buckets_) b.complete = true;
  reduce_ready_buckets();
  if (!buckets_.empty()) comm_.wait_deferred();
  for (const Bucket& b : buckets_) unpack(b);
  // One process (no buckets), or a parameter the buckets did not cover: round what is left.
  for (Tensor& p : params_) {
    if (p.grad().defined() && p.grad().dtype() != p.dtype()) p.set_grad(to(p.grad(), p.dtype()));
  }
  for (Bucket& b : buckets_) {
    b.ready = 0;
    b.complete = false;
  }
  next_ = 0;
}

}  // namespace mnemo::train

#include "autograd/node.h"

#include "autograd/grad_mode.h"

namespace mnemo {

namespace {
thread_local bool grad_mode_enabled = true;
}

bool GradMode::is_enabled() {
  return grad_mode_enabled;
}
void GradMode::set_enabled(bool enabled) {
  grad_mode_enabled = enabled;
}

namespace autograd {

Node::~Node() {
  std::vector<std::shared_ptr<Node>> orphans;
  auto take_orphans = [&](std::vector<Edge>& edges) {
    for (Edge& edge : edges) {
      if (edge.meta && edge.meta.use_count() == 1 && edge.meta->grad_fn &&
          edge.meta->grad_fn.use_count() == 1) {
        orphans.push_back(std::move(edge.meta->grad_fn));
      }
    }
  };
  take_orphans(inputs);
  while (!orphans.empty()) {
    std::shared_ptr<Node> node = std::move(orphans.back());
    orphans.pop_back();
    take_orphans(node->inputs);
  }  // each node is destroyed here with its own orphans already taken
}

bool should_record(std::initializer_list<const Tensor*> inputs) {
  if (!GradMode::is_enabled()) return false;
  for (const Tensor* t : inputs) {
    if (t->defined() && t->requires_grad()) return true;
  }
  return false;
}

bool should_record(const TensorList& inputs) {
  if (!GradMode::is_enabled()) return false;
  for (const Tensor& t : inputs) {
    if (t.defined() && t.requires_grad()) return true;
  }
  return false;
}

void record(RuleName rule, const Tensor& out, const TensorList& inputs, BackwardFn fn) {
  const std::string_view name = rule.str();
  auto node = std::make_shared<Node>();
  node->name = name;
  node->backward = std::move(fn);
  node->inputs.reserve(inputs.size());
  for (const Tensor& input : inputs) {
    Edge edge;
    if (input.defined()) {
      edge.shape = input.shape();
      edge.dtype = input.dtype();
      if (input.requires_grad()) {
        input.ensure_autograd_meta();
        edge.meta = input.impl()->autograd;
      }
    }
    node->inputs.push_back(std::move(edge));
  }
  AutogradMeta& meta = out.ensure_autograd_meta();
  MNEMO_ASSERT(meta.grad_fn == nullptr, "{}: output already has a grad_fn ({})", name,
               out.grad_fn_name());
  meta.requires_grad = true;
  meta.grad_fn = node;
  meta.grad_fn_name = name;
  node->output = out.impl()->autograd;
}

}  // namespace autograd
}  // namespace mnemo

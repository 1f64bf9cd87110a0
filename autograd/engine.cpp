// The backward engine (see engine.h).
//
// 1. Discover: depth-first from the roots' nodes, counting for every node and every leaf
//    how many edges point at it.
// 2. Run: a node is ready when all its incoming edges have delivered (Kahn's algorithm), so
//    its output gradient is complete when its rule runs; same for leaves, whose hooks then
//    fire exactly once per pass with the full gradient.
#include "autograd/engine.h"

#include <deque>
#include <optional>
#include <unordered_map>

#include "autograd/exact_grad.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops.h"

namespace mnemo {

namespace {

using autograd::Node;

// Sums g into slot (slot may be undefined). Out of place: gradients flowing through the tape
// may be shared (add's rule hands the same dy to both inputs).
void accumulate(Tensor& slot, const Tensor& g) {
  if (!g.defined()) return;
  slot = slot.defined() ? add(slot, g) : g;
}

// Fits a rule's gradient to its input: undo broadcasting, match the dtype. Under an
// ExactGradGuard a leaf's gradient is kept in f64, and summed over broadcast dims in f64
// (exact_grad.h).
Tensor fit_to_input(const Tensor& g, const autograd::Edge& edge, std::string_view node_name) {
  const bool leaf = edge.meta && !edge.meta->grad_fn;
  const DType dtype = leaf ? autograd::exact_grad_dtype(edge.dtype) : edge.dtype;
  Tensor out = dtype == DType::f64 && edge.dtype != DType::f64 ? to(g, DType::f64) : g;
  if (out.shape() != edge.shape) {
    MNEMO_ASSERT(out.dim() >= int64_t(edge.shape.size()),
                 "backward of {}: gradient of shape {} for an input of shape {}", node_name,
                 shape_str(out.shape()), shape_str(edge.shape));
    out = sum_to(out, edge.shape);
  }
  if (out.dtype() != dtype) out = to(out, dtype);
  return out;
}

Tensor run_hooks(AutogradMeta& meta, Tensor g) {
  for (const GradHook& hook : meta.hooks) {
    Tensor replaced = hook(g);
    if (replaced.defined()) g = replaced;
  }
  return g;
}

// Stores a finished leaf (or retained) gradient into meta.grad. The first time, the gradient
// is copied (it may be shared with other edges or the caller), so that later in-place
// accumulation into .grad never writes through an alias.
void store_grad(AutogradMeta& meta, const Tensor& g, bool create_graph) {
  if (!meta.grad.defined()) {
    meta.grad = create_graph ? g : core::clone(g);
  } else if (create_graph) {
    meta.grad = add(meta.grad, g);
  } else {
    add_(meta.grad, g);
  }
}

struct Pass {
  BackwardOptions options;
  // What autograd::grad asked for: meta -> slot in captured (everything else goes to .grad).
  std::unordered_map<AutogradMeta*, size_t> capture;
  TensorList captured;

  std::unordered_map<Node*, int> node_deps;
  std::unordered_map<AutogradMeta*, int> leaf_deps;
  std::unordered_map<Node*, Tensor> node_grads;
  std::unordered_map<AutogradMeta*, Tensor> leaf_grads;
  std::unordered_map<Node*, std::shared_ptr<Node>> keep_alive;
  std::deque<Node*> ready;

  void discover(const std::vector<std::shared_ptr<Node>>& roots) {
    std::vector<Node*> stack;
    for (const auto& root : roots) {
      if (keep_alive.emplace(root.get(), root).second) stack.push_back(root.get());
    }
    while (!stack.empty()) {
      Node* node = stack.back();
      stack.pop_back();
      for (const autograd::Edge& edge : node->inputs) {
        if (!edge.meta) continue;
        const std::shared_ptr<Node>& next = edge.meta->grad_fn;
        if (next) {
          ++node_deps[next.get()];
          if (keep_alive.emplace(next.get(), next).second) stack.push_back(next.get());
        } else {
          ++leaf_deps[edge.meta.get()];
        }
      }
    }
  }

  void finish_leaf(AutogradMeta& meta, Tensor g) {
    if (!g.defined()) return;
    g = run_hooks(meta, g);
    auto it = capture.find(&meta);
    if (it != capture.end()) {
      accumulate(captured[it->second], g);
      return;
    }
    if (!meta.requires_grad) return;
    store_grad(meta, g, options.create_graph);
    for (const PostAccumulateHook& hook : meta.post_accumulate_hooks) hook(meta.grad);
  }

  // Delivers one input gradient of a node (g may be undefined: "zero, but counted").
  void deliver(const autograd::Edge& edge, const Tensor& g) {
    AutogradMeta* meta = edge.meta.get();
    if (meta->grad_fn) {
      Node* next = meta->grad_fn.get();
      accumulate(node_grads[next], g);
      if (--node_deps[next] == 0) ready.push_back(next);
    } else {
      accumulate(leaf_grads[meta], g);
      if (--leaf_deps[meta] == 0) {
        finish_leaf(*meta, leaf_grads[meta]);
        leaf_grads.erase(meta);
      }
    }
  }

  void run_node(Node* node) {
    Tensor g = node_grads[node];
    node_grads.erase(node);
    if (auto out = node->output.lock(); out && g.defined()) {
      g = run_hooks(*out, g);
      auto it = capture.find(out.get());
      if (it != capture.end()) accumulate(captured[it->second], g);
      if (out->retains_grad) store_grad(*out, g, options.create_graph);
    }
    TensorList input_grads;
    if (g.defined()) {
      MNEMO_CHECK(node->backward != nullptr,
                  "backward of {}: the graph was already freed by an earlier backward; pass "
                  "retain_graph to backward through it twice",
                  node->name);
      autograd::Needs needs(node->inputs.size());
      for (size_t i = 0; i < needs.size(); ++i) needs[i] = node->inputs[i].meta != nullptr;
      input_grads = node->backward(g, needs);
      MNEMO_ASSERT(input_grads.size() == node->inputs.size(),
                   "backward of {}: rule returned {} gradients for {} inputs", node->name,
                   input_grads.size(), node->inputs.size());
    }
    if (!options.retain_graph) node->backward = nullptr;
    for (size_t i = 0; i < node->inputs.size(); ++i) {
      const autograd::Edge& edge = node->inputs[i];
      if (!edge.meta) continue;
      Tensor gi = i < input_grads.size() && input_grads[i].defined()
                      ? fit_to_input(input_grads[i], edge, node->name)
                      : Tensor();
      deliver(edge, gi);
    }
  }

  void run(const TensorList& roots, const TensorList& grad_outputs) {
    std::vector<std::shared_ptr<Node>> root_nodes;
    for (const Tensor& root : roots) {
      if (root.autograd_meta() && root.autograd_meta()->grad_fn) {
        root_nodes.push_back(root.autograd_meta()->grad_fn);
      }
    }
    discover(root_nodes);
    for (size_t i = 0; i < roots.size(); ++i) {
      AutogradMeta* meta = roots[i].autograd_meta();
      if (meta->grad_fn) {
        accumulate(node_grads[meta->grad_fn.get()], grad_outputs[i]);
      } else {
        finish_leaf(*meta, grad_outputs[i]);
      }
    }
    for (const auto& root : root_nodes) {
      if (node_deps[root.get()] == 0) ready.push_back(root.get());
    }
    // Roots that also feed other roots become ready through deliver(); a node is queued
    // exactly once, when its count reaches zero.
    std::unordered_map<Node*, bool> queued;
    while (!ready.empty()) {
      Node* node = ready.front();
      ready.pop_front();
      if (queued[node]) continue;
      queued[node] = true;
      run_node(node);
    }
  }
};

TensorList default_grad_outputs(const TensorList& roots, const TensorList& grad_outputs) {
  MNEMO_CHECK(grad_outputs.empty() || grad_outputs.size() == roots.size(),
              "backward: {} roots but {} grad_outputs", roots.size(), grad_outputs.size());
  TensorList out(roots.size());
  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& root = roots[i];
    MNEMO_CHECK(root.defined(), "backward: root {} is undefined", i);
    MNEMO_CHECK(root.requires_grad(),
                "backward: root {} of shape {} does not require grad (was it computed under "
                "no_grad, or from tensors without requires_grad?)",
                i, shape_str(root.shape()));
    Tensor g = grad_outputs.empty() ? Tensor() : grad_outputs[i];
    if (!g.defined()) {
      MNEMO_CHECK(root.numel() == 1,
                  "backward: root of shape {} is not a scalar; pass a grad_output of that shape",
                  shape_str(root.shape()));
      g = ones_like(root);
    }
    MNEMO_CHECK(g.shape() == root.shape(),
                "backward: grad_output of shape {} for a root of shape {}", shape_str(g.shape()),
                shape_str(root.shape()));
    out[i] = g;
  }
  return out;
}

}  // namespace

void backward(const TensorList& roots, const TensorList& grad_outputs, BackwardOptions options) {
  TensorList gs = default_grad_outputs(roots, grad_outputs);
  std::optional<NoGradGuard> no_grad;
  if (!options.create_graph) no_grad.emplace();
  Pass pass;
  pass.options = options;
  pass.run(roots, gs);
}

void backward(const Tensor& root, const Tensor& grad_output, BackwardOptions options) {
  backward(TensorList{root}, TensorList{grad_output}, options);
}

TensorList grad(const TensorList& outputs, const TensorList& inputs, const TensorList& grad_outputs,
                BackwardOptions options) {
  TensorList gs = default_grad_outputs(outputs, grad_outputs);
  std::optional<NoGradGuard> no_grad;
  if (!options.create_graph) no_grad.emplace();
  Pass pass;
  pass.options = options;
  pass.captured.resize(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    MNEMO_CHECK(inputs[i].defined() && inputs[i].requires_grad(),
                "grad: input {} does not require grad", i);
    pass.capture[&inputs[i].ensure_autograd_meta()] = i;
  }
  pass.run(outputs, gs);
  return pass.captured;
}

void register_hook(const Tensor& t, GradHook hook) {
  MNEMO_CHECK(t.requires_grad(), "register_hook: tensor of shape {} does not require grad",
              shape_str(t.shape()));
  t.ensure_autograd_meta().hooks.push_back(std::move(hook));
}

void register_post_accumulate_grad_hook(const Tensor& t, PostAccumulateHook hook) {
  MNEMO_CHECK(t.requires_grad() && t.is_leaf(),
              "register_post_accumulate_grad_hook: expects a leaf that requires grad");
  t.ensure_autograd_meta().post_accumulate_hooks.push_back(std::move(hook));
}

void retain_grad(const Tensor& t) {
  MNEMO_CHECK(t.requires_grad(), "retain_grad: tensor does not require grad");
  t.ensure_autograd_meta().retains_grad = true;
}

}  // namespace mnemo

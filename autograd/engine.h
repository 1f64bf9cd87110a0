// The backward engine: walks the tape from the roots in reverse topological order, calling
// each node's rule once all of its output's gradient has arrived, and accumulates into .grad
// of the leaves that require grad.
#pragma once

#include "core/tensor.h"

namespace mnemo {

struct BackwardOptions {
  bool retain_graph = false;  // keep the saved tensors so backward can run again
  bool create_graph = false;  // record the backward pass itself (for higher-order gradients)
};

// root: a scalar, or any shape with grad_output of the same shape.
void backward(const Tensor& root, const Tensor& grad_output = {}, BackwardOptions options = {});
void backward(const TensorList& roots, const TensorList& grad_outputs,
              BackwardOptions options = {});

// The gradients of outputs with respect to inputs, returned instead of accumulated into .grad
// (undefined where an input does not influence the outputs).
TensorList grad(const TensorList& outputs, const TensorList& inputs,
                const TensorList& grad_outputs = {}, BackwardOptions options = {});

// Hooks (see core/tensor.h). A grad hook may replace the gradient flowing into t; a post-
// accumulate hook runs on a leaf once its .grad holds this pass's complete gradient (what
// data-parallel training uses to start an allreduce as soon as a gradient is ready).
void register_hook(const Tensor& t, GradHook hook);
void register_post_accumulate_grad_hook(const Tensor& t, PostAccumulateHook hook);
// Keep .grad on a non-leaf tensor.
void retain_grad(const Tensor& t);

}  // namespace mnemo

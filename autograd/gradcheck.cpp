#include "autograd/gradcheck.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <unordered_set>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops.h"

namespace mnemo {

namespace {

double dot(const Tensor& v, const Tensor& y) {
  std::vector<double> a = v.to_vector<double>();
  std::vector<double> b = y.to_vector<double>();
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Storage offset (in elements) of the element with row-major position `linear`.
int64_t element_offset(const Tensor& t, int64_t linear) {
  int64_t offset = t.offset();
  for (int64_t d = t.dim() - 1; d >= 0; --d) {
    int64_t size = t.shape()[d];
    offset += (linear % size) * t.strides()[d];
    linear /= size;
  }
  return offset;
}

// The rule names of the nodes y's tape holds (each node visited once).
std::vector<std::string_view> tape_rules(const Tensor& y) {
  std::vector<std::string_view> names;
  std::unordered_set<const autograd::Node*> seen;
  std::vector<const autograd::Node*> stack;
  if (y.autograd_meta() && y.autograd_meta()->grad_fn)
    stack.push_back(y.autograd_meta()->grad_fn.get());
  while (!stack.empty()) {
    const autograd::Node* node = stack.back();
    stack.pop_back();
    if (!seen.insert(node).second) continue;
    names.push_back(node->name);
    for (const autograd::Edge& edge : node->inputs) {
      if (edge.meta && edge.meta->grad_fn) stack.push_back(edge.meta->grad_fn.get());
    }
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

}  // namespace

GradcheckResult gradcheck(const std::function<Tensor(const TensorList&)>& fn,
                          const TensorList& inputs, GradcheckOptions options) {
  GradcheckResult result;
  TensorList checked;
  for (const Tensor& x : inputs) {
    if (!x.defined() || !x.requires_grad()) continue;
    MNEMO_CHECK(x.dtype() == DType::f64 && x.device().is_cpu(),
                "gradcheck: inputs that require grad must be f64 on the CPU, got {} on {}",
                x.dtype(), x.device());
    MNEMO_CHECK(x.is_leaf(), "gradcheck: inputs must be leaves");
    checked.push_back(x);
  }
  MNEMO_CHECK(!checked.empty(), "gradcheck: no input requires grad");

  Tensor y = fn(inputs);
  MNEMO_CHECK(y.requires_grad(), "gradcheck: the output does not depend on any checked input");
  result.rules = tape_rules(y);
  std::mt19937_64 rng(options.seed);
  std::normal_distribution<double> normal;
  std::vector<double> v_values(size_t(y.numel()));
  for (double& value : v_values) value = normal(rng);
  Tensor v = from_vector(v_values, y.shape(), {DType::f64});
  TensorList analytic = grad({y}, checked, {v});

  NoGradGuard no_grad;
  for (size_t k = 0; k < checked.size(); ++k) {
    const Tensor& x = checked[k];
    std::vector<double> a = analytic[k].defined() ? analytic[k].to_vector<double>()
                                                  : std::vector<double>(size_t(x.numel()), 0.0);
    double* data = static_cast<double*>(x.storage()->data());
    for (int64_t i = 0; i < x.numel(); ++i) {
      double& element = data[element_offset(x, i)];
      const double saved = element;
      element = saved + options.eps;
      double plus = dot(v, fn(inputs));
      element = saved - options.eps;
      double minus = dot(v, fn(inputs));
      element = saved;
      double numeric = (plus - minus) / (2 * options.eps);
      double error = std::abs(a[size_t(i)] - numeric);
      result.max_abs_error = std::max(result.max_abs_error, error);
      ++result.elements_checked;
      if (result.ok && !(error <= options.atol + options.rtol * std::abs(numeric))) {
        result.ok = false;
        result.message = fmt::format(
            "input {} (shape {}), element {}: backward gives {:.10g}, finite differences {:.10g}",
            k, shape_str(x.shape()), i, a[size_t(i)], numeric);
      }
    }
  }
  return result;
}

}  // namespace mnemo

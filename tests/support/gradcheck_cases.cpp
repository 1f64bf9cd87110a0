#include "gradcheck_cases.h"

#include <algorithm>
#include <random>
#include <set>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/gradcheck.h"

namespace mnemo::test {

namespace {

bool listed(const std::vector<int>& list, int i) {
  return std::find(list.begin(), list.end(), i) != list.end();
}

Tensor uniform_f64(const Shape& shape, double lo, double hi, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> values(size_t(numel(shape)));
  for (double& v : values) v = dist(rng);
  return from_vector(values, shape, {DType::f64});
}

// The rules the running TEST_GRADCHECK case's gradchecks went through (null outside one).
std::set<std::string_view>* rules_seen = nullptr;

std::vector<std::string_view>& registry() {
  static std::vector<std::string_view> ops;  // filled during static initialisation
  return ops;
}

bool has_rule(std::string_view op) {
  for (const autograd::Derivative& d : autograd::derivatives) {
    if (d.op == op) return d.kind == autograd::Derivative::rule;
  }
  return false;
}

}  // namespace

TensorList make_inputs(const GradcheckCase& c) {
  std::mt19937_64 rng(std::hash<std::string>{}(c.label));
  TensorList inputs;
  for (size_t i = 0; i < c.shapes.size(); ++i) {
    const Shape& shape = c.shapes[i];
    Tensor x;
    if (listed(c.non_contiguous, int(i)) && shape.size() >= 2) {
      Shape swapped = shape;
      std::swap(swapped[swapped.size() - 1], swapped[swapped.size() - 2]);
      x = detach(core::transpose(uniform_f64(swapped, c.lo, c.hi, rng), -1, -2));
    } else if (listed(c.non_contiguous, int(i)) && shape.size() == 1) {
      Tensor base = uniform_f64({shape[0] * 2}, c.lo, c.hi, rng);
      x = detach(core::slice(base, 0, 0, shape[0] * 2, 2));
    } else {
      x = uniform_f64(shape, c.lo, c.hi, rng);
    }
    if (!listed(c.constant, int(i))) x.set_requires_grad(true);
    inputs.push_back(x);
  }
  return inputs;
}

void check_gradients(const std::vector<GradcheckCase>& cases) {
  for (const GradcheckCase& c : cases) {
    INFO("case: ", c.label);
    TensorList inputs = make_inputs(c);
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (listed(c.non_contiguous, int(i)) && inputs[i].numel() > 1) {
        CHECK_MESSAGE(!inputs[i].is_contiguous(), "input ", i, " should be non-contiguous");
      }
    }
    GradcheckOptions options;
    options.atol = c.atol;
    options.rtol = c.rtol;
    options.eps = c.eps;
    GradcheckResult result = gradcheck(c.fn, inputs, options);
    CHECK_MESSAGE(result.ok, result.message);
    CHECK(result.elements_checked > 0);
    if (rules_seen) rules_seen->insert(result.rules.begin(), result.rules.end());
  }
}

Tensor weigh(const Tensor& y) {
  Tensor w = core::reshape(arange(1, double(y.numel()) + 1, 1, {DType::f64}), y.shape());
  return mul(y, w);
}

GradcheckFn backward_of_dy(std::function<Tensor(const Tensor&)> op) {
  return [op](const TensorList& in) {
    EnableGradGuard grad_mode;
    Tensor x = detach(in[0]);
    x.set_requires_grad(true);
    return grad({op(x)}, {x}, {in[1]}, {.create_graph = true})[0];
  };
}

const std::vector<std::string_view>& gradcheck_ops() {
  return registry();
}

namespace detail {

bool register_gradcheck_op(std::string_view op) {
  registry().push_back(op);
  return true;
}

void run_gradcheck_case(std::string_view op, void (*body)()) {
  std::set<std::string_view> seen;
  rules_seen = &seen;
  struct Reset {
    ~Reset() { rules_seen = nullptr; }
  } reset;
  body();
  if (has_rule(op)) {
    CHECK_MESSAGE(seen.count(op) == 1, "the gradchecks of 'gradcheck: ", op,
                  "' never went through the rule ", op, " (check_gradients records the rules)");
  }
}

}  // namespace detail

}  // namespace mnemo::test

#include "gradcheck_cases.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <random>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"

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
    GradcheckResult result = gradcheck(c.fn, inputs, options);
    CHECK_MESSAGE(result.ok, result.message);
    CHECK(result.elements_checked > 0);
  }
}

}  // namespace mnemo::test

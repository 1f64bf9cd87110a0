// gradcheck: compares the gradients autograd computes with central finite differences, in f64
// on the CPU.
//
// For y = fn(inputs) and a random cotangent v (shape of y), it checks, for every element x_i
// of every input that requires grad,
//     d(v . y)/dx_i  (backward)   ~=   (v . fn(x + eps e_i) - v . fn(x - eps e_i)) / (2 eps)
// which checks J^T v, the quantity backward computes. Inputs may be non-contiguous views (the
// perturbation goes through their strides) but must not overlap themselves (no expand).
// The result also names the rules on fn's tape (the derivative index's names, autograd/ops.h):
// the rules whose backward the check went through.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"

namespace mnemo {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-6;
  double rtol = 1e-4;
  uint64_t seed = 0;  // for the random cotangent v
};

struct GradcheckResult {
  bool ok = true;
  std::string message;  // on failure: which input, which element, the two values
  double max_abs_error = 0;
  int64_t elements_checked = 0;
  std::vector<std::string_view> rules;  // the nodes on y's tape, by rule name, sorted, once each
};

GradcheckResult gradcheck(const std::function<Tensor(const TensorList&)>& fn,
                          const TensorList& inputs, GradcheckOptions options = {});

}  // namespace mnemo

// Dropout(p): zeroes each element with probability p and scales the others by 1/(1-p) while
// the module is training (train()); the identity after eval(). Draws from gen, or from the
// process-wide generator when gen is null (the generator must outlive the module).
#pragma once

#include "core/ops/random.h"
#include "nn/module.h"

namespace mnemo::nn {

class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.1, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) const;  // any shape

  double p;

 private:
  Generator* gen_;
};

}  // namespace mnemo::nn

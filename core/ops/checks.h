// Argument checks shared by the op layer (core/ops/*.cpp).
#pragma once

#include <string_view>

#include "core/error.h"
#include "core/tensor.h"

namespace mnemo::core {

// Throws unless x is defined and floating: "{op}: expected a floating {what}, got ...".
inline void check_floating(std::string_view op, std::string_view what, const Tensor& x) {
  MNEMO_CHECK(x.defined(), "{}: undefined {}", op, what);
  MNEMO_CHECK(is_floating(x.dtype()), "{}: expected a floating {}, got {} of shape {}", op, what,
              x.dtype(), shape_str(x.shape()));
}

}  // namespace mnemo::core

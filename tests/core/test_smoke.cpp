#include <doctest/doctest.h>
#include "autograd/engine.h"
#include "autograd/ops.h"
using namespace mnemo;
TEST_CASE("smoke") {
  Tensor a = from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = transpose(a, 0, 1);
  CHECK(b.at({2, 1}) == 6);
  Tensor c = contiguous(b);
  CHECK(c.to_vector<float>() == std::vector<float>{1, 4, 2, 5, 3, 6});
  Tensor x = from_vector(std::vector<double>{1, 2, 3}, {3}, {DType::f64}).set_requires_grad();
  Tensor y = mul(mul(x, x), x);
  backward(y, ones_like(y));
  CHECK(x.grad().to_vector<double>() == std::vector<double>{3, 12, 27});
}

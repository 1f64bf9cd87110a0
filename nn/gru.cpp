// GRUCell (gru.h): two GEMMs per step (input and hidden), then the gates on (B, H) slices.
#include "nn/gru.h"

#include <cmath>

#include "autograd/ops.h"
#include "core/error.h"

namespace mnemo::nn {

GRUCell::GRUCell(int64_t in, int64_t H, bool bias, Generator* gen)
    : input_size(in), hidden_size(H) {
  MNEMO_CHECK(in > 0 && H > 0, "GRUCell: sizes must be positive, got input={} hidden={}", in, H);
  const double k = 1 / std::sqrt(double(H));
  weight_ih = register_parameter("weight_ih", uniform({3 * H, in}, -k, k, {}, gen));
  weight_hh = register_parameter("weight_hh", uniform({3 * H, H}, -k, k, {}, gen));
  if (bias) {
    bias_ih = register_parameter("bias_ih", uniform({3 * H}, -k, k, {}, gen));
    bias_hh = register_parameter("bias_hh", uniform({3 * H}, -k, k, {}, gen));
  }
}

Tensor GRUCell::forward(const Tensor& x, const Tensor& h_in) const {
  MNEMO_CHECK(x.dim() == 2 && x.size(1) == input_size, "GRUCell: input must be (B, {}), got {}",
              input_size, shape_str(x.shape()));
  const int64_t B = x.size(0), H = hidden_size;
  const Tensor h = h_in.defined() ? h_in : zeros({B, H}, options_of(x));
  MNEMO_CHECK(h.dim() == 2 && h.size(0) == B && h.size(1) == H,
              "GRUCell: hidden state must be ({}, {}), got {}", B, H, shape_str(h.shape()));
  const std::vector<Tensor> gi = split(linear(x, weight_ih, bias_ih), H, 1);  // 3 x (B, H)
  const std::vector<Tensor> gh = split(linear(h, weight_hh, bias_hh), H, 1);  // 3 x (B, H)
  const Tensor r = sigmoid(gi[0] + gh[0]);
  const Tensor z = sigmoid(gi[1] + gh[1]);
  const Tensor n = tanh(gi[2] + r * gh[2]);
  return n + z * (h - n);  // (1 - z) * n + z * h
}

}  // namespace mnemo::nn

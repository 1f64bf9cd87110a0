// MLP and SwiGLU (mlp.h).
#include "nn/mlp.h"

#include "autograd/ops.h"

namespace mnemo::nn {

MLP::MLP(int64_t dim, int64_t hidden_dim, bool bias, Generator* gen, double init_std) {
  fc = register_module("fc", std::make_shared<Linear>(dim, hidden_dim, bias, gen, init_std));
  proj = register_module("proj", std::make_shared<Linear>(hidden_dim, dim, bias, gen, init_std));
}

Tensor MLP::forward(const Tensor& x) const {
  return proj->forward(gelu(fc->forward(x)));
}

SwiGLU::SwiGLU(int64_t dim, int64_t I, Generator* gen, double init_std) : intermediate_dim(I) {
  gate_proj = register_module("gate_proj", std::make_shared<Linear>(dim, I, false, gen, init_std));
  up_proj = register_module("up_proj", std::make_shared<Linear>(dim, I, false, gen, init_std));
  down_proj = register_module("down_proj", std::make_shared<Linear>(I, dim, false, gen, init_std));
}

Tensor SwiGLU::forward(const Tensor& x) const {
  const Tensor w_gate_up = concat({gate_proj->weight, up_proj->weight}, 0);  // (2I, C)
  const Tensor gate_up = linear(x, w_gate_up);                               // (..., 2I)
  const std::vector<Tensor> parts = split(gate_up, intermediate_dim, -1);    // 2 x (..., I)
  return down_proj->forward(silu(parts[0]) * parts[1]);
}

}  // namespace mnemo::nn

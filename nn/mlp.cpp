// MLP and SwiGLU (mlp.h).
#include "nn/mlp.h"

#include "autograd/node.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "nn/fused_linear.h"

namespace mnemo::nn {

Tensor swiglu(const Tensor& gate, const Tensor& up) {
  MNEMO_CHECK(gate.defined() && up.defined() && gate.shape() == up.shape(),
              "swiglu: gate and up must have one shape, got {} and {}",
              gate.defined() ? shape_str(gate.shape()) : std::string("undefined"),
              up.defined() ? shape_str(up.shape()) : std::string("undefined"));
  const Tensor h = core::silu(gate);
  Tensor out = core::mul(h, up);
  if (autograd::should_record({&gate, &up})) {
    // du = dy h;  dg = (dy u) s (1 + g - h)   (math in mlp.h)
    autograd::record(
        "swiglu", out, {gate, up},
        [g = detach(gate), u = detach(up), h](const Tensor& dy,
                                              const autograd::Needs& needs) -> TensorList {
          Tensor dg, du;
          if (needs[0]) dg = mul(mul(dy, u), mul(sigmoid(g), affine(sub(g, h), 1, 1)));
          if (needs[1]) du = mul(dy, h);
          return {dg, du};
        });
  }
  return out;
}

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
  const int64_t C = x.size(-1);
  const Tensor rows = reshape(x, {-1, C});  // (R, C)
  const std::vector<Tensor> gate_up =
      fused_linear(rows, {gate_proj->weight, up_proj->weight});  // 2 x (R, I)
  return reshape(down_proj->forward(swiglu(gate_up[0], gate_up[1])), x.shape());
}

}  // namespace mnemo::nn

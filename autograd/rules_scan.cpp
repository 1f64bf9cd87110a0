// Derivative rule for scan, the linear recurrence h_t = a_t h_{t-1} + x_t. The rule saves
// the output h (it holds every h_{t-1} that da needs) and calls the explicit backward op,
// which runs the recurrence in reverse (core/cpu/scan.cpp).
#include "autograd/node.h"
#include "autograd/ops.h"

namespace mnemo {

using autograd::Needs;

// h_t = a_t h_{t-1} + x_t,  h_{-1} = h0
//   =>  g_t = dh_t + a_{t+1} g_{t+1},  dx_t = g_t,  da_t = g_t h_{t-1},  dh0 = a_0 g_0
// (da, dx come back in the broadcast shape; the engine sums them to a's and x's shapes.)
Tensor scan(const Tensor& a, const Tensor& x, int64_t dim, const Tensor& h0) {
  Tensor h = core::scan(a, x, dim, h0);
  if (autograd::should_record({&a, &x, &h0})) {
    autograd::record("scan", h, {a, x, h0},
                     [a = detach(a), h = detach(h), h0 = h0.defined() ? detach(h0) : Tensor(), dim](
                         const Tensor& dh, const Needs& needs) {
                       core::ScanGrads g = core::scan_backward(a, h, dim, h0, dh);
                       return TensorList{needs[0] ? g.da : Tensor(), needs[1] ? g.dx : Tensor(),
                                         needs[2] ? g.dh0 : Tensor()};
                     });
  }
  return h;
}

}  // namespace mnemo

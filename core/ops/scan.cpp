// scan: the linear recurrence h_t = a_t * h_{t-1} + x_t along one dim, and its backward.
//
// This is the primitive under gated linear RNNs and state-space layers: a (the decay or
// gate) and x (the input) broadcast together to the output's shape; h0 (the state before the
// first step) has that shape without `dim`, and zeros stand in when it is undefined.
//
// The op layer reduces every case to one layout: with B the product of the dims before `dim`,
// T its length and C the product of the dims after it, a contiguous tensor of the broadcast
// shape *is* a (B, T, C) array, so broadcasting, casting to a common dtype and making
// contiguous is all it takes (no transposes); the backend scans (B, T, C) and the result is
// viewed back in the broadcast shape.
//
// One coefficient per step for all channels (a of size 1 along every dim after `dim`, as for
// a gate per chunk applied to a memory's weights) goes to the CPU backend as a (B, T, 1),
// and its gradient comes back as (B, T, 1): expanding it to (B, T, C) would write and read C
// times the data, and summing da back over C another pass (the CUDA kernels take a expanded).
#include "core/backend.h"
#include "core/ops/factory.h"
#include "core/ops/nn.h"
#include "core/ops/view.h"

namespace mnemo::core {

namespace {

// The broadcast shape seen as (B, T, C) around dim.
struct ScanLayout {
  Shape shape;        // the broadcast shape of a and x (and of h)
  Shape state_shape;  // shape without dim (h0, dh0)
  int64_t dim = 0;
  int64_t B = 1, T = 0, C = 1;
};

ScanLayout scan_layout(std::string_view op, const Shape& shape, int64_t dim) {
  MNEMO_CHECK(!shape.empty(), "{}: inputs are 0-d; there is no dim to scan along", op);
  ScanLayout l;
  l.shape = shape;
  l.dim = normalize_dim(dim, int64_t(shape.size()), op);
  for (int64_t d = 0; d < int64_t(shape.size()); ++d) {
    if (d < l.dim) l.B *= shape[d];
    if (d > l.dim) l.C *= shape[d];
    if (d != l.dim) l.state_shape.push_back(shape[d]);
  }
  l.T = shape[l.dim];
  return l;
}

void check_floating(std::string_view op, std::string_view what, const Tensor& t) {
  MNEMO_CHECK(t.defined(), "{}: undefined {}", op, what);
  MNEMO_CHECK(is_floating(t.dtype()), "{}: {} must be floating, got {} of shape {}", op, what,
              t.dtype(), shape_str(t.shape()));
}

// t broadcast to `shape`, cast to dtype, contiguous, viewed as rows x cols.
Tensor as_layout(const Tensor& t, const Shape& shape, DType dtype, Shape layout) {
  return view(contiguous(expand(to(t, dtype), shape)), std::move(layout));
}

// The shape a is laid out in: l.shape, or l.shape with every dim after l.dim set to 1 when a
// does not vary along them and the backend takes one coefficient per step (the CPU's).
Shape coefficient_shape(const Tensor& a, const ScanLayout& l, Device device) {
  if (!device.is_cpu() || l.C <= 1) return l.shape;
  const int64_t lead = int64_t(l.shape.size()) - a.dim();  // a is aligned at the right
  for (int64_t d = l.dim + 1; d < int64_t(l.shape.size()); ++d) {
    if (d >= lead && a.shape()[size_t(d - lead)] != 1) return l.shape;
  }
  Shape rows = l.shape;
  for (int64_t d = l.dim + 1; d < int64_t(rows.size()); ++d) rows[size_t(d)] = 1;
  return rows;
}

// Whether `from` broadcasts to `to` (NumPy rules, aligned at the right).
bool broadcasts_to(const Shape& from, const Shape& to) {
  if (from.size() > to.size()) return false;
  for (size_t i = 1; i <= from.size(); ++i) {
    int64_t f = from[from.size() - i], t = to[to.size() - i];
    if (f != 1 && f != t) return false;
  }
  return true;
}

// h0 (or any state-shaped tensor): must broadcast to the state shape.
void check_state(std::string_view op, std::string_view what, const Tensor& h0,
                 const ScanLayout& l) {
  if (!h0.defined()) return;
  check_floating(op, what, h0);
  MNEMO_CHECK(broadcasts_to(h0.shape(), l.state_shape),
              "{}: {} of shape {} does not fit the state shape {} (the inputs' shape {} "
              "without dim {})",
              op, what, shape_str(h0.shape()), shape_str(l.state_shape), shape_str(l.shape), l.dim);
}

}  // namespace

Tensor scan(const Tensor& a, const Tensor& x, int64_t dim, const Tensor& h0) {
  check_floating("scan", "a", a);
  check_floating("scan", "x", x);
  common_device("scan", {&a, &x, &h0});
  ScanLayout l = scan_layout("scan", broadcast_shapes(a.shape(), x.shape(), "scan"), dim);
  check_state("scan", "h0", h0, l);
  DType dtype = promote(a.dtype(), x.dtype());
  Tensor h = Tensor::empty({l.B, l.T, l.C}, dtype, a.device());
  if (h.numel() > 0) {
    const Shape a_shape = coefficient_shape(a, l, a.device());
    backend_for(a.device())
        .scan(as_layout(a, a_shape, dtype, {l.B, l.T, numel(a_shape) / (l.B * l.T)}),
              as_layout(x, l.shape, dtype, {l.B, l.T, l.C}),
              h0.defined() ? as_layout(h0, l.state_shape, dtype, {l.B, l.C}) : Tensor(), h);
  }
  return view(h, l.shape);
}

ScanGrads scan_backward(const Tensor& a, const Tensor& h, int64_t dim, const Tensor& h0,
                        const Tensor& dh) {
  check_floating("scan_backward", "a", a);
  check_floating("scan_backward", "h", h);
  check_floating("scan_backward", "dh", dh);
  common_device("scan_backward", {&a, &h, &h0, &dh});
  ScanLayout l = scan_layout("scan_backward", h.shape(), dim);
  MNEMO_CHECK(broadcasts_to(a.shape(), h.shape()),
              "scan_backward: a of shape {} does not broadcast to the output shape {}",
              shape_str(a.shape()), shape_str(h.shape()));
  MNEMO_CHECK(dh.shape() == h.shape() && dh.dtype() == h.dtype(),
              "scan_backward: gradient {} {} does not match the output {} {}",
              shape_str(dh.shape()), dh.dtype(), shape_str(h.shape()), h.dtype());
  check_state("scan_backward", "h0", h0, l);
  const DType dtype = h.dtype();
  const Device device = h.device();
  // da comes back in a's layout: (B, T, C), or (B, T, 1) for one coefficient per step.
  const Shape a_shape = coefficient_shape(a, l, device);
  const int64_t a_channels = l.B * l.T == 0 ? l.C : numel(a_shape) / (l.B * l.T);
  Tensor da = Tensor::empty({l.B, l.T, a_channels}, dtype, device);
  Tensor dx = Tensor::empty({l.B, l.T, l.C}, dtype, device);
  Tensor dh0 = h0.defined() ? Tensor::empty({l.B, l.C}, dtype, device) : Tensor();
  if (dx.numel() > 0) {
    backend_for(device).scan_backward(
        as_layout(a, a_shape, dtype, {l.B, l.T, a_channels}),
        as_layout(h, l.shape, dtype, {l.B, l.T, l.C}),
        h0.defined() ? as_layout(h0, l.state_shape, dtype, {l.B, l.C}) : Tensor(),
        as_layout(dh, l.shape, dtype, {l.B, l.T, l.C}), da, dx, dh0);
  } else if (dh0.defined()) {
    fill_(dh0, 0);  // T == 0: h0 never reaches the output
  }
  return {view(da, a_shape), view(dx, l.shape), dh0.defined() ? view(dh0, l.state_shape) : dh0};
}

}  // namespace mnemo::core

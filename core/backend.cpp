#include "core/backend.h"

#include <algorithm>
#include <array>

#include "core/cpu/cpu_backend.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/view.h"
#include "core/profiler.h"

namespace mnemo {

namespace {

constexpr std::array<std::string_view, size_t(UnaryOp::count)> kUnaryNames = {
    "neg",  "exp",     "log",  "sqrt",      "rsqrt", "abs",  "tanh",        "sigmoid",
    "relu", "gelu",    "gelu_tanh", "silu", "softplus", "erf", "sign", "logical_not",
    "affine", "pow_scalar", "clamp"};
constexpr std::array<std::string_view, size_t(BinaryOp::count)> kBinaryNames = {
    "add", "sub", "mul", "div", "pow", "maximum", "minimum", "eq",
    "ne",  "lt",  "le",  "gt",  "ge",  "logical_and", "logical_or"};
constexpr std::array<std::string_view, size_t(ReduceOp::count)> kReduceNames = {"sum", "max",
                                                                                  "min"};
constexpr std::array<std::string_view, size_t(ArgReduceOp::count)> kArgReduceNames = {"argmax",
                                                                                        "argmin"};
constexpr std::array<std::string_view, size_t(RandomOp::count)> kRandomNames = {
    "uniform", "normal", "bernoulli", "randint"};

std::array<Backend*, kNumDeviceTypes>& backend_table() {
  static std::array<Backend*, kNumDeviceTypes> table{};
  return table;
}

}  // namespace

std::string_view op_name(UnaryOp op) { return kUnaryNames.at(size_t(op)); }
std::string_view op_name(BinaryOp op) { return kBinaryNames.at(size_t(op)); }
std::string_view op_name(ReduceOp op) { return kReduceNames.at(size_t(op)); }
std::string_view op_name(ArgReduceOp op) { return kArgReduceNames.at(size_t(op)); }
std::string_view op_name(RandomOp op) { return kRandomNames.at(size_t(op)); }

bool is_comparison(BinaryOp op) { return op >= BinaryOp::eq && op <= BinaryOp::ge; }
bool is_logical(BinaryOp op) { return op == BinaryOp::logical_and || op == BinaryOp::logical_or; }

DType stats_dtype(DType input) {
  return input == DType::bf16 || input == DType::f16 ? DType::f32 : input;
}

void Backend::unsupported(std::string_view op, const Tensor& on) const {
  fail("{}: not implemented on {} (backend {})", op, on.defined() ? on.device() : Device::cpu(),
       name());
}

// Every op defaults to "not implemented": a partial backend fails loudly, never silently.
void Backend::copy(const Tensor& src, const Tensor&) { unsupported("copy", src); }
void Backend::fill(const Tensor& dst, double) { unsupported("fill", dst); }
void Backend::arange(const Tensor& out, double, double) { unsupported("arange", out); }
void Backend::unary(UnaryOp op, const UnaryParams&, const Tensor& x, const Tensor&) {
  unsupported(op_name(op), x);
}
void Backend::binary(BinaryOp op, const Tensor& a, const Tensor&, const Tensor&) {
  unsupported(op_name(op), a);
}
void Backend::where(const Tensor& cond, const Tensor&, const Tensor&, const Tensor&) {
  unsupported("where", cond);
}
void Backend::reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>&, const Tensor&) {
  unsupported(op_name(op), x);
}
void Backend::arg_reduce(ArgReduceOp op, const Tensor& x, int64_t, const Tensor&) {
  unsupported(op_name(op), x);
}
void Backend::cumsum(const Tensor& x, int64_t, bool, const Tensor&) { unsupported("cumsum", x); }
void Backend::topk(const Tensor& x, int64_t, int64_t, bool, const Tensor&, const Tensor&) {
  unsupported("topk", x);
}
void Backend::matmul(const Tensor& a, const Tensor&, const Tensor&) { unsupported("matmul", a); }

void Backend::matmul_segment_sum(const Tensor& a, const Tensor& b, int64_t segment,
                                 const Tensor& out) {
  const int64_t K = a.size(1);
  for (int64_t k0 = 0; k0 < K; k0 += segment) {
    const int64_t n = std::min(segment, K - k0);
    add_(out, core::matmul(core::narrow(a, 1, k0, n), core::narrow(b, 0, k0, n)));
  }
}
void Backend::index_select(const Tensor& x, int64_t, const Tensor&, const Tensor&) {
  unsupported("index_select", x);
}
void Backend::index_add(const Tensor& out, int64_t, const Tensor&, const Tensor&) {
  unsupported("index_add", out);
}
void Backend::gather(const Tensor& x, int64_t, const Tensor&, const Tensor&) {
  unsupported("gather", x);
}
void Backend::scatter_add(const Tensor& out, int64_t, const Tensor&, const Tensor&) {
  unsupported("scatter_add", out);
}
void Backend::softmax(const Tensor& x, int64_t, bool log, const Tensor&) {
  unsupported(log ? "log_softmax" : "softmax", x);
}
void Backend::softmax_backward(const Tensor& y, const Tensor&, int64_t, bool log, const Tensor&) {
  unsupported(log ? "log_softmax_backward" : "softmax_backward", y);
}
void Backend::cross_entropy(const Tensor& logits, const Tensor&, int64_t, double, const Tensor&,
                            const Tensor&) {
  unsupported("cross_entropy", logits);
}
void Backend::cross_entropy_backward(const Tensor& logits, const Tensor&, const Tensor&,
                                     const Tensor&, int64_t, double, const Tensor&) {
  unsupported("cross_entropy_backward", logits);
}
void Backend::rms_norm(const Tensor& x, const Tensor&, double, const Tensor&, const Tensor&) {
  unsupported("rms_norm", x);
}
void Backend::rms_norm_backward(const Tensor& x, const Tensor&, const Tensor&, const Tensor&,
                                const Tensor&, const Tensor&) {
  unsupported("rms_norm_backward", x);
}
void Backend::layer_norm(const Tensor& x, const Tensor&, const Tensor&, double, const Tensor&,
                         const Tensor&, const Tensor&) {
  unsupported("layer_norm", x);
}
void Backend::layer_norm_backward(const Tensor& x, const Tensor&, const Tensor&, const Tensor&,
                                  const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  unsupported("layer_norm_backward", x);
}
void Backend::attention(const Tensor& q, const Tensor&, const Tensor&, const Tensor&, bool, double,
                        const Tensor&, const Tensor&) {
  unsupported("attention", q);
}
void Backend::attention_backward(const Tensor& q, const Tensor&, const Tensor&, const Tensor&,
                                 bool, double, const Tensor&, const Tensor&, const Tensor&,
                                 const Tensor&, const Tensor&, const Tensor&) {
  unsupported("attention_backward", q);
}
void Backend::adamw(const Tensor& param, const Tensor&, const Tensor&, const Tensor&,
                    const AdamWParams&) {
  unsupported("adamw", param);
}

void Backend::scan(const Tensor& a, const Tensor&, const Tensor&, const Tensor&) {
  unsupported("scan", a);
}
void Backend::scan_backward(const Tensor& a, const Tensor&, const Tensor&, const Tensor&,
                            const Tensor&, const Tensor&, const Tensor&) {
  unsupported("scan_backward", a);
}
void Backend::random(RandomOp op, const RandomParams&, PhiloxState, const Tensor& out) {
  unsupported(op_name(op), out);
}
void Backend::multinomial(const Tensor& probs, int64_t, bool, PhiloxState, const Tensor&) {
  unsupported("multinomial", probs);
}

void register_backend(DeviceType type, Backend* backend) {
  backend_table().at(size_t(type)) = backend;
}

bool has_backend(DeviceType type) {
  return type == DeviceType::cpu || backend_table().at(size_t(type)) != nullptr;
}

// While the profiler is on (core/profiler.h), every op goes through its recording decorator;
// otherwise this returns the real backend, at the cost of one relaxed atomic load.
Backend& backend_for(Device device) {
  Backend* backend = device.is_cpu() ? &cpu::backend() : backend_table().at(size_t(device.type));
  MNEMO_CHECK(backend != nullptr,
              "device {}: this build has no CUDA backend (configure with -DMNEMO_CUDA=ON)",
              device);
  if (profiler::enabled()) [[unlikely]] return profiler::wrap(*backend);
  return *backend;
}

Device common_device(std::string_view op, std::initializer_list<const Tensor*> inputs) {
  const Tensor* first = nullptr;
  for (const Tensor* t : inputs) {
    if (!t->defined()) continue;
    if (first == nullptr) {
      first = t;
    } else {
      MNEMO_CHECK(t->device() == first->device(), "{}: tensors on different devices {} and {}",
                  op, first->device(), t->device());
    }
  }
  MNEMO_CHECK(first != nullptr, "{}: no defined input tensor", op);
  return first->device();
}

}  // namespace mnemo

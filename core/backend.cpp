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

// The name tables, generated from core/backend_ops.def. The counts are asserted so that
// adding an entry there stops the build here and at every other table and switch over it.
#define MNEMO_NAME_OF(NAME, ...) #NAME,

static_assert(size_t(UnaryOp::count) == 19,
              "a new unary op needs a CPU kernel, a CUDA kernel and a gradient rule");
constexpr std::array<std::string_view, size_t(UnaryOp::count)> kUnaryNames = {
#define MNEMO_UNARY_OP MNEMO_NAME_OF
#include "core/backend_ops.def"
};
constexpr std::array<bool, size_t(UnaryOp::count)> kUnaryAcceptsIntegers = {
#define MNEMO_UNARY_OP(NAME, DTYPES) std::string_view(#DTYPES) == "any",
#include "core/backend_ops.def"
};
static_assert(size_t(BinaryOp::count) == 15,
              "a new binary op needs a CPU kernel, a CUDA kernel and a gradient rule");
constexpr std::array<std::string_view, size_t(BinaryOp::count)> kBinaryNames = {
#define MNEMO_BINARY_OP MNEMO_NAME_OF
#include "core/backend_ops.def"
};
static_assert(size_t(ReduceOp::count) == 3,
              "a new reduction needs a CPU kernel, a CUDA kernel and a gradient rule");
constexpr std::array<std::string_view, size_t(ReduceOp::count)> kReduceNames = {
#define MNEMO_REDUCE_OP MNEMO_NAME_OF
#include "core/backend_ops.def"
};
static_assert(size_t(ArgReduceOp::count) == 2,
              "a new arg reduction needs a CPU kernel and a CUDA kernel");
constexpr std::array<std::string_view, size_t(ArgReduceOp::count)> kArgReduceNames = {
#define MNEMO_ARG_REDUCE_OP MNEMO_NAME_OF
#include "core/backend_ops.def"
};
static_assert(size_t(RandomOp::count) == 4,
              "a new distribution needs a CPU kernel and a CUDA kernel drawing the same numbers");
constexpr std::array<std::string_view, size_t(RandomOp::count)> kRandomNames = {
#define MNEMO_RANDOM_OP MNEMO_NAME_OF
#include "core/backend_ops.def"
};
static_assert(size_t(BackendOp::count) == 31,
              "a new backend op needs a core/ops declaration, a CPU kernel, a CUDA kernel (or "
              "a composition), a profiler cost rule where it has FLOPs, and tests");
constexpr std::array<std::string_view, size_t(BackendOp::count)> kBackendOpNames = {
#define MNEMO_BACKEND_OP MNEMO_NAME_OF
#include "core/backend_ops.def"
};

#undef MNEMO_NAME_OF

std::array<Backend*, kNumDeviceTypes>& backend_table() {
  static std::array<Backend*, kNumDeviceTypes> table{};
  return table;
}

// table[op], for an op inside the table (a value past count is a bug of the caller's code).
template <class Op, size_t N>
std::string_view name_in(const std::array<std::string_view, N>& table, Op op) {
  MNEMO_ASSERT(size_t(op) < N, "op_name: invalid op value {} (there are {})", int(op), N);
  return table[size_t(op)];
}

}  // namespace

std::string_view op_name(UnaryOp op) {
  return name_in(kUnaryNames, op);
}
std::string_view op_name(BinaryOp op) {
  return name_in(kBinaryNames, op);
}
std::string_view op_name(ReduceOp op) {
  return name_in(kReduceNames, op);
}
std::string_view op_name(ArgReduceOp op) {
  return name_in(kArgReduceNames, op);
}
std::string_view op_name(RandomOp op) {
  return name_in(kRandomNames, op);
}
std::string_view op_name(BackendOp op) {
  return name_in(kBackendOpNames, op);
}

bool accepts_integers(UnaryOp op) {
  MNEMO_ASSERT(op < UnaryOp::count, "accepts_integers: invalid op value {}", int(op));
  return kUnaryAcceptsIntegers[size_t(op)];
}
bool is_comparison(BinaryOp op) {
  return op >= BinaryOp::eq && op <= BinaryOp::ge;
}
bool is_logical(BinaryOp op) {
  return op == BinaryOp::logical_and || op == BinaryOp::logical_or;
}

DType stats_dtype(DType input) {
  return input == DType::bf16 || input == DType::f16 ? DType::f32 : input;
}

void Backend::unsupported(std::string_view op, const Tensor& on) const {
  fail_internal("{}: not implemented on {} (backend {})", op,
                on.defined() ? on.device() : Device::cpu(), name());
}

// Every op defaults to "not implemented": a partial backend fails loudly, never silently.
#define MNEMO_BACKEND_OP(NAME, CATEGORY, PARAMETERS, ARGUMENTS, READS, WRITES)    \
  void Backend::NAME PARAMETERS {                                                 \
    unsupported(CallName<BackendOp::NAME>::of ARGUMENTS, first_tensor ARGUMENTS); \
  }
#define MNEMO_COMPOSED_OP(...)  // defined below
#include "core/backend_ops.def"

// The composition: one matmul per segment of K, each added to out in f64.
void Backend::matmul_segment_sum(const Tensor& a, const Tensor& b, int64_t segment,
                                 const Tensor& out) {
  const int64_t K = a.size(1);
  for (int64_t k0 = 0; k0 < K; k0 += segment) {
    const int64_t n = std::min(segment, K - k0);
    add_(out, core::matmul(core::narrow(a, 1, k0, n), core::narrow(b, 0, k0, n)));
  }
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
              "device {}: this build has no CUDA backend (configure with -DMNEMO_CUDA=ON)", device);
  if (profiler::enabled()) [[unlikely]]
    return profiler::wrap(*backend);
  return *backend;
}

Device common_device(std::string_view op, std::initializer_list<const Tensor*> inputs) {
  const Tensor* first = nullptr;
  for (const Tensor* t : inputs) {
    if (!t->defined()) continue;
    if (first == nullptr) {
      first = t;
    } else {
      MNEMO_CHECK(t->device() == first->device(), "{}: tensors on different devices {} and {}", op,
                  first->device(), t->device());
    }
  }
  MNEMO_CHECK(first != nullptr, "{}: no defined input tensor", op);
  return first->device();
}

}  // namespace mnemo

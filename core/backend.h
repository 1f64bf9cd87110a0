// Backend: the compute interface every device implements, and the table that maps a device
// to its backend.
//
// Core declares each op once (argument checks, shape/dtype inference, output allocation; see
// core/ops/*.h) and then calls one method here on the backend of the inputs' device. Backends
// only compute: they may assume the checks have passed and that outputs are allocated with
// the documented shape and dtype. A backend that lacks an op inherits the default method,
// which throws an InternalError (core/error.h) naming the op and the device: a backend's
// missing op is a limit of mnemo, not the caller's mistake.
//
// The ops themselves, their kinds and each op's contract (shapes, dtypes, what may be
// strided) are listed once, in core/backend_ops.def; this header generates the enums and
// the virtual methods from that list.
#pragma once

#include <cstdint>
#include <string_view>
#include <type_traits>
#include <vector>

#include "core/tensor.h"

namespace mnemo {

// ---- op families --------------------------------------------------------------------------

// The kinds of the ops that take one (core/backend_ops.def lists them with their meaning).
enum class UnaryOp : uint8_t {
#define MNEMO_UNARY_OP(NAME, DTYPES) NAME,
#include "core/backend_ops.def"
  count
};
struct UnaryParams {
  double alpha = 0;
  double beta = 0;
};

enum class BinaryOp : uint8_t {
#define MNEMO_BINARY_OP(NAME) NAME,
#include "core/backend_ops.def"
  count
};

enum class ReduceOp : uint8_t {
#define MNEMO_REDUCE_OP(NAME) NAME,
#include "core/backend_ops.def"
  count
};

enum class ArgReduceOp : uint8_t {
#define MNEMO_ARG_REDUCE_OP(NAME) NAME,
#include "core/backend_ops.def"
  count
};

struct AdamWParams {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;
  int64_t step = 1;       // 1 for the first step (bias correction)
  double grad_scale = 1;  // multiplies the gradient first (clipping, accumulation)
};

enum class RandomOp : uint8_t {
#define MNEMO_RANDOM_OP(NAME) NAME,
#include "core/backend_ops.def"
  count
};
struct RandomParams {
  double alpha = 0;
  double beta = 1;
};

// A position in a Philox-4x32-10 stream: the values of a random op depend only on (seed,
// offset, element index), as core/ops/random.h specifies, so every backend and every thread
// count produces the same numbers.
struct PhiloxState {
  uint64_t seed = 0;
  uint64_t offset = 0;
};

// The backend ops: one per method of Backend, in the order of core/backend_ops.def.
enum class BackendOp : uint8_t {
#define MNEMO_BACKEND_OP(NAME, ...) NAME,
#include "core/backend_ops.def"
  count
};

std::string_view op_name(UnaryOp op);
std::string_view op_name(BinaryOp op);
std::string_view op_name(ReduceOp op);
std::string_view op_name(ArgReduceOp op);
std::string_view op_name(RandomOp op);
std::string_view op_name(BackendOp op);
bool accepts_integers(UnaryOp op);  // the "any" dtypes of core/backend_ops.def
bool is_comparison(BinaryOp op);  // eq .. ge
bool is_logical(BinaryOp op);     // logical_and, logical_or
DType stats_dtype(DType input);   // f32 for bf16/f16, else input

// ---- the interface ------------------------------------------------------------------------

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;
  virtual Allocator* allocator(Device device) = 0;
  virtual void synchronize(Device /*device*/) {}

  // The ops: one virtual method per MNEMO_BACKEND_OP entry of core/backend_ops.def, which
  // states each one's contract. The defaults throw "OP: not implemented on DEVICE"; the
  // composed op (matmul_segment_sum) defaults to its composition of other ops.
#define MNEMO_BACKEND_OP(NAME, CATEGORY, PARAMETERS, ...) virtual void NAME PARAMETERS;
#include "core/backend_ops.def"

 protected:
  // Throws "OP: not implemented on DEVICE (backend NAME)".
  [[noreturn]] void unsupported(std::string_view op, const Tensor& on) const;
};

// The backend of a device. CPU is always there; CUDA registers itself when built in.
Backend& backend_for(Device device);
void register_backend(DeviceType type, Backend* backend);
bool has_backend(DeviceType type);

// The device all inputs share (undefined tensors are skipped); throws naming op if they differ.
Device common_device(std::string_view op, std::initializer_list<const Tensor*> inputs);

// ---- helpers for the code generated from core/backend_ops.def -----------------------------

// The name one call of a backend op goes by in errors and profiles: the kind for the ops
// that take one (unary(exp, ...) is "exp", reduce(sum, ...) is "sum"), log_softmax for a
// softmax with log set, else the op's own name. CallName<op>::of(arguments...).
template <BackendOp op>
struct CallName {
  template <class First, class... Rest>
  static std::string_view of([[maybe_unused]] const First& first, const Rest&...) {
    if constexpr (std::is_enum_v<First>) {
      return op_name(first);
    } else {
      return op_name(op);
    }
  }
};
template <>
struct CallName<BackendOp::softmax> {
  static std::string_view of(const Tensor&, int64_t, bool log, const Tensor&) {
    return log ? "log_softmax" : "softmax";
  }
};
template <>
struct CallName<BackendOp::softmax_backward> {
  static std::string_view of(const Tensor&, const Tensor&, int64_t, bool log, const Tensor&) {
    return log ? "log_softmax_backward" : "softmax_backward";
  }
};

// The first Tensor among an op's arguments: the tensor whose device the op runs on (all of
// an op's tensors share one) and the one an error names.
template <class... Args>
const Tensor& first_tensor(const Args&... args) {
  static_assert((std::is_same_v<Args, Tensor> || ...), "every backend op takes a tensor");
  const Tensor* first = nullptr;
  auto visit = [&first](const auto& arg) {
    if constexpr (std::is_same_v<std::decay_t<decltype(arg)>, Tensor>) {
      if (first == nullptr) first = &arg;
    }
  };
  (visit(args), ...);
  return *first;
}

}  // namespace mnemo

// DType: the element types a tensor can hold, and the helpers that turn a runtime dtype into a
// compile-time C++ type (visit_dtype) so that one templated kernel serves every dtype.
//
// bf16/f16 are stored as 16 bits and computed in f32 (see ComputeType). bool is stored as one
// byte (uint8_t 0/1) so that kernels can treat it as a number.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

#include "core/error.h"
#include "core/half.h"

namespace mnemo {

enum class DType : uint8_t { f32, f64, bf16, f16, i32, i64, boolean };
inline constexpr int kNumDTypes = 7;

size_t dtype_size(DType dtype);
std::string_view dtype_name(DType dtype);  // "f32", "bf16", "bool", ...
DType dtype_from_name(std::string_view name);  // throws mnemo::Error on an unknown name
bool is_floating(DType dtype);  // f32, f64, bf16, f16
bool is_integral(DType dtype);  // i32, i64, bool

// The dtype two operands are computed in: floating beats integral, wider beats narrower,
// bf16 with f16 gives f32. Used by binary ops, where, concat.
DType promote(DType a, DType b);

// The C++ type stored for each dtype.
template <typename T>
struct TypeTag {
  using type = T;
};

// The type arithmetic happens in: f32 for the 16-bit floats, the type itself otherwise.
template <typename T>
struct ComputeTypeOf {
  using type = T;
};
template <>
struct ComputeTypeOf<bf16> {
  using type = float;
};
template <>
struct ComputeTypeOf<f16> {
  using type = float;
};
template <typename T>
using ComputeType = typename ComputeTypeOf<T>::type;

// Converts one stored value to another stored type, through the compute types; converting
// to bool means "!= 0".
template <typename Dst, typename Src>
inline Dst convert(Src value) {
  if constexpr (std::is_same_v<Dst, uint8_t>) {
    return uint8_t(ComputeType<Src>(value) != ComputeType<Src>(0));
  } else {
    return Dst(static_cast<ComputeType<Dst>>(ComputeType<Src>(value)));
  }
}

template <typename T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() { return DType::f32; }
template <>
constexpr DType dtype_of<double>() { return DType::f64; }
template <>
constexpr DType dtype_of<bf16>() { return DType::bf16; }
template <>
constexpr DType dtype_of<f16>() { return DType::f16; }
template <>
constexpr DType dtype_of<int32_t>() { return DType::i32; }
template <>
constexpr DType dtype_of<int64_t>() { return DType::i64; }
template <>
constexpr DType dtype_of<uint8_t>() { return DType::boolean; }

// visit_dtype(dtype, "op", fn) calls fn(TypeTag<T>{}) with T the stored type of dtype.
// Usage: visit_dtype(x.dtype(), "exp", [&](auto tag) { using T = typename decltype(tag)::type; });
template <typename Fn>
decltype(auto) visit_dtype(DType dtype, std::string_view op, Fn&& fn) {
  switch (dtype) {
    case DType::f32: return fn(TypeTag<float>{});
    case DType::f64: return fn(TypeTag<double>{});
    case DType::bf16: return fn(TypeTag<bf16>{});
    case DType::f16: return fn(TypeTag<f16>{});
    case DType::i32: return fn(TypeTag<int32_t>{});
    case DType::i64: return fn(TypeTag<int64_t>{});
    case DType::boolean: return fn(TypeTag<uint8_t>{});
  }
  fail_internal("{}: invalid dtype {}", op, int(dtype));
}

// Same, restricted to the floating dtypes; any other dtype is an error naming the op.
template <typename Fn>
decltype(auto) visit_floating(DType dtype, std::string_view op, Fn&& fn) {
  switch (dtype) {
    case DType::f32: return fn(TypeTag<float>{});
    case DType::f64: return fn(TypeTag<double>{});
    case DType::bf16: return fn(TypeTag<bf16>{});
    case DType::f16: return fn(TypeTag<f16>{});
    default: break;
  }
  fail("{}: expected a floating dtype (f32, f64, bf16, f16), got {}", op, dtype_name(dtype));
}

// visit_bool(flag, fn) calls fn(std::true_type{}) or fn(std::false_type{}), so that a runtime
// flag picks a kernel's template argument: decltype(tag)::value inside fn.
template <typename Fn>
decltype(auto) visit_bool(bool flag, Fn&& fn) {
  if (flag) return fn(std::true_type{});
  return fn(std::false_type{});
}

}  // namespace mnemo

template <>
struct fmt::formatter<mnemo::DType> : fmt::formatter<std::string_view> {
  auto format(mnemo::DType d, fmt::format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(mnemo::dtype_name(d), ctx);
  }
};

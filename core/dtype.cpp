#include "core/dtype.h"

namespace mnemo {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::bf16: return 2;
    case DType::f16: return 2;
    case DType::i32: return 4;
    case DType::i64: return 8;
    case DType::boolean: return 1;
  }
  fail_internal("dtype_size: invalid dtype {}", int(dtype));
}

std::string_view dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::bf16: return "bf16";
    case DType::f16: return "f16";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
    case DType::boolean: return "bool";
  }
  return "invalid";
}

DType dtype_from_name(std::string_view name) {
  for (int i = 0; i < kNumDTypes; ++i) {
    if (dtype_name(DType(i)) == name) return DType(i);
  }
  if (name == "float32") return DType::f32;
  if (name == "float64") return DType::f64;
  if (name == "bfloat16") return DType::bf16;
  if (name == "float16") return DType::f16;
  if (name == "int32") return DType::i32;
  if (name == "int64") return DType::i64;
  fail("unknown dtype '{}' (expected one of f32, f64, bf16, f16, i32, i64, bool)", name);
}

bool is_floating(DType dtype) {
  return dtype == DType::f32 || dtype == DType::f64 || dtype == DType::bf16 ||
         dtype == DType::f16;
}

bool is_integral(DType dtype) { return !is_floating(dtype); }

DType promote(DType a, DType b) {
  if (a == b) return a;
  // Rank: bool < i32 < i64 < (bf16 | f16) < f32 < f64.
  auto rank = [](DType d) {
    switch (d) {
      case DType::boolean: return 0;
      case DType::i32: return 1;
      case DType::i64: return 2;
      case DType::bf16: return 3;
      case DType::f16: return 3;
      case DType::f32: return 4;
      case DType::f64: return 5;
    }
    return 0;
  };
  if (rank(a) == 3 && rank(b) == 3) return DType::f32;  // bf16 with f16
  return rank(a) >= rank(b) ? a : b;
}

}  // namespace mnemo

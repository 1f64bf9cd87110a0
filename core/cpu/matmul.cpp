#include "core/cpu/cpu_backend.h"
namespace mnemo::cpu {
void CpuBackend::matmul(const Tensor& a, const Tensor& b, const Tensor& out) { Backend::matmul(a, b, out); }
}  // namespace mnemo::cpu

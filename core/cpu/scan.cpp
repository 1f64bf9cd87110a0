#include "core/cpu/cpu_backend.h"
namespace mnemo::cpu {
void CpuBackend::scan(const Tensor& a, const Tensor& x, const Tensor& h0, const Tensor& h) { Backend::scan(a, x, h0, h); }
void CpuBackend::scan_backward(const Tensor& a, const Tensor& h, const Tensor& h0, const Tensor& dh, const Tensor& da, const Tensor& dx, const Tensor& dh0) { Backend::scan_backward(a, h, h0, dh, da, dx, dh0); }
}  // namespace mnemo::cpu

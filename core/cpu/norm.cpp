#include "core/cpu/cpu_backend.h"
namespace mnemo::cpu {
void CpuBackend::rms_norm(const Tensor& x, const Tensor& weight, double eps, const Tensor& y, const Tensor& rstd) { Backend::rms_norm(x, weight, eps, y, rstd); }
void CpuBackend::rms_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& rstd, const Tensor& dy, const Tensor& dx, const Tensor& dweight) { Backend::rms_norm_backward(x, weight, rstd, dy, dx, dweight); }
void CpuBackend::layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, const Tensor& y, const Tensor& mean, const Tensor& rstd) { Backend::layer_norm(x, weight, bias, eps, y, mean, rstd); }
void CpuBackend::layer_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd, const Tensor& dy, const Tensor& dx, const Tensor& dweight, const Tensor& dbias) { Backend::layer_norm_backward(x, weight, mean, rstd, dy, dx, dweight, dbias); }
}  // namespace mnemo::cpu

#include "core/cpu/cpu_backend.h"
namespace mnemo::cpu {
void CpuBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, bool causal, double scale, const Tensor& out, const Tensor& lse) { Backend::attention(q, k, v, mask, causal, scale, out, lse); }
void CpuBackend::attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, bool causal, double scale, const Tensor& out, const Tensor& lse, const Tensor& dout, const Tensor& dq, const Tensor& dk, const Tensor& dv) { Backend::attention_backward(q, k, v, mask, causal, scale, out, lse, dout, dq, dk, dv); }
}  // namespace mnemo::cpu

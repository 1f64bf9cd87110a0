#include "core/cpu/cpu_backend.h"
namespace mnemo::cpu {
void CpuBackend::index_select(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) { Backend::index_select(x, dim, index, out); }
void CpuBackend::index_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) { Backend::index_add(out, dim, index, src); }
void CpuBackend::gather(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) { Backend::gather(x, dim, index, out); }
void CpuBackend::scatter_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) { Backend::scatter_add(out, dim, index, src); }
}  // namespace mnemo::cpu

#include "core/cpu/cpu_backend.h"
namespace mnemo::cpu {
void CpuBackend::softmax(const Tensor& x, int64_t dim, bool log, const Tensor& out) { Backend::softmax(x, dim, log, out); }
void CpuBackend::softmax_backward(const Tensor& y, const Tensor& dy, int64_t dim, bool log, const Tensor& dx) { Backend::softmax_backward(y, dy, dim, log, dx); }
void CpuBackend::cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, double label_smoothing, const Tensor& loss, const Tensor& lse) { Backend::cross_entropy(logits, target, ignore_index, label_smoothing, loss, lse); }
void CpuBackend::cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse, const Tensor& dloss, int64_t ignore_index, double label_smoothing, const Tensor& dlogits) { Backend::cross_entropy_backward(logits, target, lse, dloss, ignore_index, label_smoothing, dlogits); }
}  // namespace mnemo::cpu

#include "core/cpu/cpu_backend.h"
namespace mnemo::cpu {
void CpuBackend::random(RandomOp op, const RandomParams& params, PhiloxState state, const Tensor& out) { Backend::random(op, params, state, out); }
void CpuBackend::multinomial(const Tensor& probs, int64_t num_samples, bool replacement, PhiloxState state, const Tensor& out) { Backend::multinomial(probs, num_samples, replacement, state, out); }
}  // namespace mnemo::cpu

// The linear scan h_t = a_t * h_{t-1} + x_t on the GPU, forward and backward.
//
// a, x, h (B, T, C) contiguous (the op layer broadcasts and lays them out so); h0 (B, C) or
// undefined (zeros). Backward (core/backend_ops.def), with g_t = dL/dh_t in total:
//   g_t = dh_t + a_{t+1} g_{t+1},   dx_t = g_t,   da_t = g_t h_{t-1},   dh0 = a_0 g_0,
// walking t = T-1 .. 0; h_{-1} is h0 (zeros if undefined).
//
// ---- Kernels ----
// One thread per independent recurrence (b, c): B * C threads (grid-stride), each walking T
// sequentially and carrying the state (or g) in the compute type (f32 for bf16/f16), as the
// CPU backend does. Neighbouring threads take neighbouring channels, so every step's loads and
// stores are coalesced. Each element is written by one thread in a fixed order: deterministic.
// The fast kernel, a chunked scan parallel over T for when B * C is small, is
// cuda/scan_fast.cu; scan() and scan_backward() call it unless kernel_choice() is reference.
//
// Measured: the reference kernels, not measured (they have run on an H100 in the CUDA tests,
// which check results, not speed). The default path's figures are in cuda/scan_fast.cu's
// header.
#include <cuda_runtime.h>

#include <cstdint>

#include "core/error.h"
#include "cuda/kernel_common.cuh"
#include "cuda/ops.h"
#include "cuda/rowops_common.cuh"
#include "cuda/rowops_fast.cuh"
#include "cuda/runtime.h"

namespace mnemo::cuda {

namespace {

// a, x, h (B, T, C); h0 (B, C) or null.
template <typename T>
__global__ void scan_kernel(const T* a, const T* x, const T* h0, T* h, int64_t B, int64_t steps,
                            int64_t C) {
  using A = Compute<T>;
  const int64_t lines = B * C;
  for (int64_t line = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; line < lines;
       line += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = line / C, c = line % C;
    A carry = h0 ? load(h0 + line) : A(0);  // h_{t-1}; h0 (B, C) is indexed by line itself
    for (int64_t t = 0; t < steps; ++t) {
      const int64_t i = (b * steps + t) * C + c;
      carry = load(a + i) * carry + load(x + i);
      h[i] = convert<T>(carry);
    }
  }
}

// a, h, dh, da, dx (B, T, C); h0, dh0 (B, C) or null.
template <typename T>
__global__ void scan_backward_kernel(const T* a, const T* h, const T* h0, const T* dh, T* da, T* dx,
                                     T* dh0, int64_t B, int64_t steps, int64_t C) {
  using A = Compute<T>;
  const int64_t lines = B * C;
  for (int64_t line = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; line < lines;
       line += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = line / C, c = line % C;
    A g = 0;       // g_t
    A a_next = 0;  // a_{t+1} (0 past the end)
    for (int64_t t = steps - 1; t >= 0; --t) {
      const int64_t i = (b * steps + t) * C + c;
      const A h_prev = t > 0 ? load(h + i - C) : (h0 ? load(h0 + line) : A(0));
      g = load(dh + i) + a_next * g;
      dx[i] = convert<T>(g);
      da[i] = convert<T>(g * h_prev);
      a_next = load(a + i);
    }
    if (dh0) dh0[line] = convert<T>(a_next * g);  // a_next holds a_0, g holds g_0
  }
}

}  // namespace

void scan(const Tensor& a_in, const Tensor& x_in, const Tensor& h0_in, const Tensor& h) {
  const int64_t B = h.size(0), steps = h.size(1), C = h.size(2);
  if (h.numel() == 0) return;
  assert_contiguous_output(h, "scan");
  MNEMO_ASSERT(a_in.dtype() == h.dtype() && x_in.dtype() == h.dtype() &&
                   (!h0_in.defined() || h0_in.dtype() == h.dtype()),
               "scan: a, x, h0 and h must share a dtype");
  const Tensor a = contiguous_on_device(a_in), x = contiguous_on_device(x_in);
  const Tensor h0 = contiguous_on_device(h0_in);
  if (kernel_choice() != KernelChoice::reference && scan_fast_applies(B, steps, C)) {
    return scan_fast(a, x, h0, h);
  }
  const int device = h.device().index;
  cuda::visit_floating(h.dtype(), "scan", [&](auto tag) {
    using T = typename decltype(tag)::type;
    scan_kernel<T><<<grid_for(B * C, device), kThreads, 0, stream(device)>>>(
        data<T>(a), data<T>(x), data_or_null<T>(h0), data<T>(h), B, steps, C);
    MNEMO_CUDA_CHECK_LAUNCH("scan_kernel");
  });
}

void scan_backward(const Tensor& a_in, const Tensor& h_in, const Tensor& h0_in, const Tensor& dh_in,
                   const Tensor& da, const Tensor& dx, const Tensor& dh0) {
  const int64_t B = h_in.size(0), steps = h_in.size(1), C = h_in.size(2);
  if (B * C == 0) return;
  MNEMO_ASSERT(da.is_contiguous() && dx.is_contiguous() && (!dh0.defined() || dh0.is_contiguous()),
               "scan_backward: outputs must be contiguous on the cuda backend");
  const Tensor a = contiguous_on_device(a_in), h = contiguous_on_device(h_in);
  const Tensor h0 = contiguous_on_device(h0_in), dh = contiguous_on_device(dh_in);
  if (kernel_choice() != KernelChoice::reference && scan_fast_applies(B, steps, C)) {
    return scan_backward_fast(a, h, h0, dh, da, dx, dh0);
  }
  const int device = h.device().index;
  cuda::visit_floating(h.dtype(), "scan_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    scan_backward_kernel<T><<<grid_for(B * C, device), kThreads, 0, stream(device)>>>(
        data<T>(a), data<T>(h), data_or_null<T>(h0), data<T>(dh), data<T>(da), data<T>(dx),
        data_or_null<T>(dh0), B, steps, C);
    MNEMO_CUDA_CHECK_LAUNCH("scan_backward_kernel");
  });
}

}  // namespace mnemo::cuda

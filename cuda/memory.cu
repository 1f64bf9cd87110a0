// The memory kernels of the CUDA backend: copy_on_device (dtype conversion + any strides;
// the device side of copy, whose host transfers are in cuda/copy.cpp), fill and arange.
//
// Every kernel is a grid-stride loop with one thread per output element (for_each_offset in
// cuda/kernel_common.cuh): the linear index i walks the output's shape in row-major order,
// OffsetCalc turns it into one element offset per operand (stride-0 dims broadcast), and the
// element is converted exactly as the CPU backend converts it (convert<To>, through f32 for
// bf16/f16, "!= 0" for bool).
//
//   copy_on_device  src, dst: same shape; src any strides (may broadcast); dst any strides.
//                   Same dtype and both contiguous: one cudaMemcpyAsync on the stream.
//   fill            dst any strides; the value is converted once on the host.
//   arange          out (n,) contiguous: out[i] = start + i * step, one f64 fused multiply-add.
//
// Measured: not measured. These kernels have run on an H100 (the CUDA tests check their
// results against the CPU backend, not their speed).
#include <cuda_runtime.h>

#include <cstdint>

#include "core/error.h"
#include "cuda/check.h"
#include "cuda/kernel_common.cuh"
#include "cuda/ops.h"

namespace mnemo::cuda {

namespace {

// The typed bodies (a __device__ lambda may not sit inside visit_dtype's generic lambda).
template <typename Dst, typename Src>
void copy_typed(const Tensor& src, const Tensor& dst) {
  const Src* s = data<Src>(src);
  Dst* d = data<Dst>(dst);
  for_each_offset<2>(
      dst.device(), dst.shape(), {&src, &dst},
      [=] __device__(const int64_t(&off)[2]) { d[off[1]] = convert<Dst>(s[off[0]]); });
}

template <typename T>
void fill_typed(const Tensor& dst, double value) {
  const T v = convert<T>(value);
  T* d = data<T>(dst);
  for_each_offset<1>(dst.device(), dst.shape(), {&dst},
                     [=] __device__(const int64_t(&off)[1]) { d[off[0]] = v; });
}

}  // namespace

void copy_on_device(const Tensor& src, const Tensor& dst) {
  MNEMO_ASSERT(src.shape() == dst.shape(), "copy_on_device: shapes {} and {} differ",
               shape_str(src.shape()), shape_str(dst.shape()));
  if (dst.numel() == 0) return;
  if (src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous()) {
    MNEMO_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(),
                                     size_t(dst.numel()) * dtype_size(dst.dtype()),
                                     cudaMemcpyDeviceToDevice, stream(dst.device())));
    return;
  }
  cuda::visit_dtype(dst.dtype(), "copy", [&](auto dst_tag) {
    cuda::visit_dtype(src.dtype(), "copy", [&](auto src_tag) {
      copy_typed<typename decltype(dst_tag)::type, typename decltype(src_tag)::type>(src, dst);
    });
  });
}

void fill(const Tensor& dst, double value) {
  if (dst.numel() == 0) return;
  cuda::visit_dtype(dst.dtype(), "fill",
                    [&](auto tag) { fill_typed<typename decltype(tag)::type>(dst, value); });
}

namespace {

// out[i] = convert(fma(i, step, start)): one rounding, exactly as the CPU (std::fma), so the
// two backends agree bit for bit.
template <typename T>
__global__ void arange_kernel(T* out, int64_t n, double start, double step) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    out[i] = convert<T>(__fma_rn(double(i), step, start));
  }
}

}  // namespace

void arange(const Tensor& out, double start, double step) {
  MNEMO_ASSERT(out.dim() == 1 && out.is_contiguous(), "arange: expected a contiguous (n,) output");
  const int64_t n = out.numel();
  if (n == 0) return;
  cuda::visit_dtype(out.dtype(), "arange", [&](auto tag) {
    using T = typename decltype(tag)::type;
    arange_kernel<T><<<grid_for(n, out.device().index), kThreads, 0, stream(out.device())>>>(
        data<T>(out), n, start, step);
    MNEMO_CUDA_CHECK_LAUNCH("arange_kernel");
  });
}

}  // namespace mnemo::cuda

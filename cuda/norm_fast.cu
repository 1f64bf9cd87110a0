// The fast RMSNorm on the GPU, forward and the backward's dx. The reference kernels
// (one block per row, scalar loads) stay in cuda/norm.cu, which calls these unless
// kernel_choice() is reference; dweight stays with norm.cu's deterministic two-pass column
// sums.
//
// x, y, dy, dx (N, C) contiguous rows; weight (C,) or null; rstd (N,) in the compute type
// (f32 for bf16/f16). The math is the reference's (core/cpu/norm.cpp):
//   y = x r w,  r = (mean(x^2) + eps)^-1/2;   dx = r g - x r^3 mean(g x),  g = dy w.
// Row sums in f64, as the reference and the CPU do (f32 sums of short rows with a small
// variance next to their mean, or a backward whose two terms nearly cancel, were 1e-5 to 1e-3
// off the CPU).
//
// ---- Kernels ----
// rms_norm_fast_kernel / rms_norm_backward_dx_fast_kernel <T, V, kWarpRows>:
//   Vectors: with V = kVec16<T> (f32 4, bf16/f16 8, f64 2) each access moves 16 bytes
//   (Vec<T, V>, cuda/rowops_vec.cuh). Used when C % V == 0 and every base pointer is
//   16-byte aligned (then every row is); otherwise V = 1 (scalar accesses, same kernel).
//   Rows: a "row group" of P threads owns a row; its thread p takes the vectors
//   j = p, p + P, ... of the row (neighbouring threads: neighbouring 16 bytes, coalesced).
//   - kWarpRows (C / V <= 128 vectors): a row group is one warp (P = 32), 8 rows per
//     256-thread block, the row sum is a warp butterfly (__shfl_xor_sync): short rows do not
//     idle most of a block, and no __syncthreads.
//   - otherwise: a row group is the block, row_threads(C / V) threads (each thread about 4
//     vectors or more), the row sum is block_reduce (cuda/rowops_common.cuh).
//   Both reduce with a fixed tree: bitwise repeatable. Two passes over the row (sum, then
//   write); the second reads the row back from L1/L2, not DRAM.
//
// ---- Cost (per element, s = element size) ----
// forward: 3 FLOPs, bytes 2s (read x, write y; w and rstd are small); backward dx: about 6
// FLOPs, bytes 3s (read x, dy, write dx), plus the dweight column sums (read x, dy again).
// Measured (the last H100 run of scripts/gpu-check.sh: bench/kernels.cpp beside PyTorch on the same
// GPU): rms_norm at 72% of the measured device copy bandwidth forward and 42% backward (dx here,
// dweight in cuda/norm.cu). Not done: a fused residual add (y = norm(x + residual), also returning
// x + residual) would need a new op in core/backend_ops.def.
#include <cuda_runtime.h>

#include <cstdint>

#include "core/error.h"
#include "cuda/kernel_common.cuh"
#include "cuda/ops.h"
#include "cuda/rowops_common.cuh"
#include "cuda/rowops_fast.cuh"
#include "cuda/rowops_vec.cuh"

namespace mnemo::cuda {

namespace {

// Rows of at most this many vectors go one per warp.
constexpr int64_t kWarpRowVectors = 4 * kWarp;
constexpr int kWarpRowThreads = 256;  // 8 warps, 8 rows at a time

// Sum over the 32 lanes of a warp with a fixed butterfly; every lane gets the result.
__device__ __forceinline__ double warp_sum(double value) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  }
  return value;
}

// Which rows a thread's row group takes and where the thread sits in it.
template <bool kWarpRows>
struct RowGroup {
  int64_t first, stride;  // rows first, first + stride, ...
  int64_t lane, size;     // this thread's place in the group, the group's thread count
  __device__ RowGroup() {
    if constexpr (kWarpRows) {
      const int64_t warps = blockDim.x / kWarp;
      first = int64_t(blockIdx.x) * warps + threadIdx.x / kWarp;
      stride = int64_t(gridDim.x) * warps;
      lane = threadIdx.x % kWarp;
      size = kWarp;
    } else {
      first = blockIdx.x;
      stride = gridDim.x;
      lane = threadIdx.x;
      size = blockDim.x;
    }
  }
};

// The row group's sum of value. Reached by every thread of the group (the whole block when
// !kWarpRows, since the row loop is uniform over the block).
template <bool kWarpRows>
__device__ __forceinline__ double group_sum(double value, double* scratch) {
  if constexpr (kWarpRows) {
    return warp_sum(value);
  } else {
    return block_reduce(value, SumOp{}, scratch);
  }
}

// The weights of vector j as compute values (1 without weight).
template <int V, typename T>
__device__ __forceinline__ Vec<Compute<T>, V> weight_vec(const T* w, int64_t j) {
  Vec<Compute<T>, V> out;
  if (w) {
    const Vec<T, V> wv = load_vec<V>(w, j);
#pragma unroll
    for (int e = 0; e < V; ++e) out.v[e] = convert<Compute<T>>(wv.v[e]);
  } else {
#pragma unroll
    for (int e = 0; e < V; ++e) out.v[e] = Compute<T>(1);
  }
  return out;
}

// x, y (N, C); w (C,) or null; rstd (N,). nv = C / V vectors per row.
template <typename T, int V, bool kWarpRows>
__global__ void __launch_bounds__(kMaxRowThreads)
    rms_norm_fast_kernel(const T* x, const T* w, T* y, Compute<T>* rstd, int64_t N, int64_t C,
                         double eps) {
  using A = Compute<T>;
  __shared__ double scratch[kMaxRowThreads / kWarp];
  const RowGroup<kWarpRows> group;
  const int64_t nv = C / V;
  for (int64_t n = group.first; n < N; n += group.stride) {
    const T* xr = x + n * C;
    T* yr = y + n * C;
    double ss = 0;
    for (int64_t j = group.lane; j < nv; j += group.size) {
      const Vec<T, V> xv = load_vec<V>(xr, j);
#pragma unroll
      for (int e = 0; e < V; ++e) {
        const double v = double(convert<A>(xv.v[e]));
        ss += v * v;
      }
    }
    ss = group_sum<kWarpRows>(ss, scratch);
    const A r = A(1.0 / sqrt(ss / double(C) + eps));
    for (int64_t j = group.lane; j < nv; j += group.size) {
      const Vec<T, V> xv = load_vec<V>(xr, j);
      const Vec<A, V> wv = weight_vec<V>(w, j);
      Vec<T, V> yv;
#pragma unroll
      for (int e = 0; e < V; ++e) yv.v[e] = convert<T>(convert<A>(xv.v[e]) * r * wv.v[e]);
      store_vec<V>(yr, j, yv);
    }
    if (group.lane == 0) rstd[n] = r;
  }
}

// dx = r g - x r^3 mean(g x), g = dy w. x, dy, dx (N, C); w (C,) or null; rstd (N,).
template <typename T, int V, bool kWarpRows>
__global__ void __launch_bounds__(kMaxRowThreads)
    rms_norm_backward_dx_fast_kernel(const T* x, const T* w, const T* dy, const Compute<T>* rstd,
                                     T* dx, int64_t N, int64_t C) {
  using A = Compute<T>;
  __shared__ double scratch[kMaxRowThreads / kWarp];
  const RowGroup<kWarpRows> group;
  const int64_t nv = C / V;
  for (int64_t n = group.first; n < N; n += group.stride) {
    const int64_t off = n * C;
    double gx = 0;
    for (int64_t j = group.lane; j < nv; j += group.size) {
      const Vec<T, V> xv = load_vec<V>(x + off, j), dyv = load_vec<V>(dy + off, j);
      const Vec<A, V> wv = weight_vec<V>(w, j);
#pragma unroll
      for (int e = 0; e < V; ++e) {
        const A g = convert<A>(dyv.v[e]) * wv.v[e];
        gx += double(g) * double(convert<A>(xv.v[e]));
      }
    }
    gx = group_sum<kWarpRows>(gx, scratch);
    const A r = rstd[n];
    const A k = A(double(r) * double(r) * double(r) * gx / double(C));
    for (int64_t j = group.lane; j < nv; j += group.size) {
      const Vec<T, V> xv = load_vec<V>(x + off, j), dyv = load_vec<V>(dy + off, j);
      const Vec<A, V> wv = weight_vec<V>(w, j);
      Vec<T, V> dxv;
#pragma unroll
      for (int e = 0; e < V; ++e) {
        const A g = convert<A>(dyv.v[e]) * wv.v[e];
        dxv.v[e] = convert<T>(r * g - convert<A>(xv.v[e]) * k);
      }
      store_vec<V>(dx + off, j, dxv);
    }
  }
}

// Calls launch(std::integral_constant<int, V>{}, std::bool_constant<kWarpRows>{}, grid,
// threads) with the vector width and row mapping for rows of C elements of T.
template <typename T, typename Launch>
void with_row_config(int64_t N, int64_t C, bool vectorisable, int device, Launch&& launch) {
  auto pick_rows = [&](auto v_tag) {
    constexpr int V = decltype(v_tag)::value;
    const int64_t nv = C / V;
    if (nv <= kWarpRowVectors) {
      launch(v_tag, std::true_type{}, grid_for(N * kWarp, device, kWarpRowThreads),
             kWarpRowThreads);
    } else {
      launch(v_tag, std::false_type{}, row_blocks(N, device), row_threads(nv));
    }
  };
  if (vectorisable && C % kVec16<T> == 0) {
    pick_rows(std::integral_constant<int, kVec16<T>>{});
  } else {
    pick_rows(std::integral_constant<int, 1>{});
  }
}

template <typename T>
void rms_norm_typed(const Tensor& x, const Tensor& w, double eps, const Tensor& y,
                    const Tensor& rstd) {
  using A = Compute<T>;
  const int64_t N = x.size(0), C = x.size(1);
  const int device = x.device().index;
  const bool vectorisable = aligned16(x.data_ptr()) && aligned16(y.data_ptr()) &&
                            (!w.defined() || aligned16(w.data_ptr()));
  with_row_config<T>(N, C, vectorisable, device,
                     [&](auto v_tag, auto rows_tag, unsigned grid, int threads) {
                       constexpr int V = decltype(v_tag)::value;
                       constexpr bool kWarpRows = decltype(rows_tag)::value;
                       rms_norm_fast_kernel<T, V, kWarpRows><<<grid, threads, 0, stream(device)>>>(
                           data<T>(x), data_or_null<T>(w), data<T>(y), data<A>(rstd), N, C, eps);
                       MNEMO_CUDA_CHECK_LAUNCH("rms_norm_fast_kernel");
                     });
}

template <typename T>
void rms_norm_backward_dx_typed(const Tensor& x, const Tensor& w, const Tensor& rstd,
                                const Tensor& dy, const Tensor& dx) {
  using A = Compute<T>;
  const int64_t N = x.size(0), C = x.size(1);
  const int device = x.device().index;
  const bool vectorisable = aligned16(x.data_ptr()) && aligned16(dy.data_ptr()) &&
                            aligned16(dx.data_ptr()) && (!w.defined() || aligned16(w.data_ptr()));
  with_row_config<T>(
      N, C, vectorisable, device, [&](auto v_tag, auto rows_tag, unsigned grid, int threads) {
        constexpr int V = decltype(v_tag)::value;
        constexpr bool kWarpRows = decltype(rows_tag)::value;
        rms_norm_backward_dx_fast_kernel<T, V, kWarpRows><<<grid, threads, 0, stream(device)>>>(
            data<T>(x), data_or_null<T>(w), data<T>(dy), data<A>(rstd), data<T>(dx), N, C);
        MNEMO_CUDA_CHECK_LAUNCH("rms_norm_backward_dx_fast_kernel");
      });
}

}  // namespace

void rms_norm_fast(const Tensor& x, const Tensor& weight, double eps, const Tensor& y,
                   const Tensor& rstd) {
  cuda::visit_floating(x.dtype(), "rms_norm", [&](auto tag) {
    rms_norm_typed<typename decltype(tag)::type>(x, weight, eps, y, rstd);
  });
}

void rms_norm_backward_dx_fast(const Tensor& x, const Tensor& weight, const Tensor& rstd,
                               const Tensor& dy, const Tensor& dx) {
  cuda::visit_floating(x.dtype(), "rms_norm_backward", [&](auto tag) {
    rms_norm_backward_dx_typed<typename decltype(tag)::type>(x, weight, rstd, dy, dx);
  });
}

}  // namespace mnemo::cuda

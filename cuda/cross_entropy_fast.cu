// The fast fused softmax-cross-entropy on the GPU, forward and backward, for large
// vocabularies (a 50k-class row of f32 is 200 KB). The reference kernels (three passes over
// the row: max, exp-sum, target) stay in cuda/cross_entropy.cu, which calls these unless
// kernel_choice() is reference. The probabilities are never stored.
//
// z (N, C) logits, contiguous; target (N,) i64; loss (N,) in z's dtype; lse (N,) and the
// arithmetic in the compute type (f32 for bf16/f16). The math is the reference's:
//   lse = m + log s,  m = max_c z_c,  s = sum_c exp(z_c - m)
//   loss = (1 - sm) ((m - z_t) + log s) + sm ((m - mean_c z_c) + log s)   (0 if t ignored)
//   dz_c = dloss (exp(z_c - lse) - (1 - sm) [c == t] - sm / C)             (0 if t ignored)
// A target outside [0, C) that is not ignore_index gives NaN (the CPU backend throws; a kernel
// cannot), never an out-of-range read.
//
// ---- Kernels ----
// cross_entropy_fast_kernel: one block per row (grid-stride over rows), row_threads(C / V)
//   threads. One pass over the row with an online max and exp-sum: each thread keeps (m, s)
//   over the elements it has seen; a new element v > m rescales, s = s exp(m - v) + 1, m = v,
//   else s += exp(v - m) (one exp per element, plus one when the max grows, which is rare).
//   The threads' (m, s) pairs combine with (m, s) . (m', s') = (M, s e^(m-M) + s' e^(m'-M)),
//   M = max(m, m') (commutative, so the butterfly gives every lane the same bits), in a fixed
//   tree: a warp butterfly, then the warps in order (block_reduce_max_sum). The sum of z for
//   label smoothing rides along in the same pass.
// cross_entropy_backward_fast_kernel: one block per row, row_threads(C / V) threads; each
//   element is read once and its gradient written once; no reduction.
// Vectors: a row is split into a scalar head up to the first 16-byte boundary, a body of
//   16-byte vectors (Vec<T, V>, V = kVec16<T>: f32 4, bf16 8; cuda/rowops_vec.cuh) and a
//   scalar tail, so any C (50257 included) reads the bulk of the row 16 bytes at a time.
//   Backward uses the same split for dz when z and dz sit at the same offset modulo 16 bytes
//   (else V = 1). Thread p takes body vectors p, p + P, ...: coalesced.
// Fixed trees, no atomics: bitwise repeatable. -inf logits contribute 0 (a transient s of an
// all -inf prefix is multiplied by exp(-inf) = 0 when a finite value arrives); a NaN logit
// makes the row's loss NaN, as in the reference.
//
// ---- Cost (per element, s = element size) ----
// forward: one exp and about 4 FLOPs, bytes s (read z once); backward: one exp and about 3
// FLOPs, bytes 2s (read z, write dz). The reference forward reads the row twice (three
// passes; later ones often from L2).
// Measured (the last H100 run of scripts/gpu-check.sh: bench/kernels.cpp beside PyTorch on the same
// GPU): of the measured device copy bandwidth, f32 70% forward and 91% backward, bf16 40% and 84%
// (bf16 forward is bound by instructions, not bytes).
#include <cuda_runtime.h>

#include <cstdint>

#include "core/error.h"
#include "cuda/cross_entropy.cuh"
#include "cuda/kernel_common.cuh"
#include "cuda/ops.h"
#include "cuda/rowops_common.cuh"
#include "cuda/rowops_fast.cuh"
#include "cuda/rowops_vec.cuh"

namespace mnemo::cuda {

namespace {

// A row split for vector access: elements [0, head) scalar, then nv vectors of V elements,
// then [tail_begin, C) scalar.
struct RowSplit {
  int64_t head, nv, tail_begin;
};

// row: the row's first element. V elements of T are 16 bytes (or V = 1: all one body).
template <int V, typename T>
__device__ __forceinline__ RowSplit split_row(const T* row, int64_t C) {
  constexpr uintptr_t kBytes = sizeof(T) * V;
  const int64_t misaligned = int64_t((reinterpret_cast<uintptr_t>(row) % kBytes) / sizeof(T));
  int64_t head = misaligned == 0 ? 0 : V - misaligned;
  if (head > C) head = C;
  const int64_t nv = (C - head) / V;
  return {head, nv, head + nv * V};
}

// Online (max, exp-sum) of one thread's elements.
template <typename A>
struct MaxSum {
  A m = -std::numeric_limits<A>::infinity();
  A s = 0;

  __device__ __forceinline__ void add(A v) {
    if (v > m) {
      s = s * exp_of(m - v) + A(1);
      m = v;
    } else {
      s += v == m ? A(1) : exp_of(v - m);  // v == m: also -inf == -inf (no NaN from inf - inf)
    }
  }
};

// s e^(from - to), exact when from == to (also for infinities).
template <typename A>
__device__ __forceinline__ A rescale(A s, A from, A to) {
  return from == to ? s : s * exp_of(from - to);
}

template <typename A>
__device__ __forceinline__ MaxSum<A> combine(MaxSum<A> a, MaxSum<A> b) {
  MaxSum<A> out;
  out.m = MaxOp{}(a.m, b.m);
  out.s = rescale(a.s, a.m, out.m) + rescale(b.s, b.m, out.m);
  return out;
}

// block_reduce (cuda/rowops_common.cuh) for (max, exp-sum) pairs: a warp butterfly, then every
// thread folds the warps in order. Every thread of the block must reach it.
template <typename A>
__device__ __forceinline__ MaxSum<A> block_reduce_max_sum(MaxSum<A> value, A* scratch_m,
                                                          A* scratch_s) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    MaxSum<A> other;
    other.m = __shfl_xor_sync(0xffffffffu, value.m, offset);
    other.s = __shfl_xor_sync(0xffffffffu, value.s, offset);
    value = combine(value, other);
  }
  const int lane = int(threadIdx.x) % kWarp, warp = int(threadIdx.x) / kWarp;
  const int warps = int(blockDim.x) / kWarp;
  __syncthreads();  // an earlier reduction may still be reading scratch
  if (lane == 0) {
    scratch_m[warp] = value.m;
    scratch_s[warp] = value.s;
  }
  __syncthreads();
  MaxSum<A> result;
  result.m = scratch_m[0];
  result.s = scratch_s[0];
  for (int w = 1; w < warps; ++w) {
    MaxSum<A> other;
    other.m = scratch_m[w];
    other.s = scratch_s[w];
    result = combine(result, other);
  }
  return result;
}

// z (N, C), target (N,) -> loss (N,), lse (N,). One block per row.
template <typename T, int V>
__global__ void __launch_bounds__(kMaxRowThreads)
    cross_entropy_fast_kernel(const T* z, const int64_t* target, int64_t N, int64_t C,
                              int64_t ignore_index, Compute<T> smoothing, T* loss,
                              Compute<T>* lse) {
  using A = Compute<T>;
  __shared__ A scratch_m[kMaxRowThreads / kWarp];
  __shared__ A scratch_s[kMaxRowThreads / kWarp];
  __shared__ A scratch_sum[kMaxRowThreads / kWarp];
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const T* zr = z + n * C;
    const RowSplit split = split_row<V>(zr, C);
    MaxSum<A> ms;
    A z_sum = 0;
    for (int64_t c = threadIdx.x; c < split.head; c += blockDim.x) {
      const A v = load(zr + c);
      ms.add(v);
      z_sum += v;
    }
    const T* body = zr + split.head;
    for (int64_t j = threadIdx.x; j < split.nv; j += blockDim.x) {
      const Vec<T, V> zv = load_vec<V>(body, j);
#pragma unroll
      for (int e = 0; e < V; ++e) {
        const A v = convert<A>(zv.v[e]);
        ms.add(v);
        z_sum += v;
      }
    }
    for (int64_t c = split.tail_begin + threadIdx.x; c < C; c += blockDim.x) {
      const A v = load(zr + c);
      ms.add(v);
      z_sum += v;
    }
    ms = block_reduce_max_sum(ms, scratch_m, scratch_s);
    if (smoothing != A(0)) z_sum = block_reduce(z_sum, SumOp{}, scratch_sum);  // uniform branch
    if (threadIdx.x == 0) {
      const A m = ms.m, log_sum = log_of(ms.s);
      lse[n] = m + log_sum;
      loss[n] = convert<T>(
          cross_entropy_row_loss(zr, target[n], C, ignore_index, m, log_sum, z_sum, smoothing));
    }
  }
}

// dz (N, C) = dloss (exp(z - lse) - q), q = (1 - sm) one_hot(t) + sm / C; 0 for ignored rows.
// z and dz share their offset modulo 16 bytes (or V = 1). One block per row.
template <typename T, int V>
__global__ void __launch_bounds__(kMaxRowThreads)
    cross_entropy_backward_fast_kernel(const T* z, const int64_t* target, const Compute<T>* lse,
                                       const T* dloss, int64_t N, int64_t C, int64_t ignore_index,
                                       Compute<T> smoothing, T* dz) {
  using A = Compute<T>;
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const T* zr = z + n * C;
    T* dzr = dz + n * C;
    const RowSplit split = split_row<V>(zr, C);
    const int64_t t = target[n];
    const bool ignored = t == ignore_index;
    const bool bad = t < 0 || t >= C;
    // Ignored rows: g = 0 and no NaN, so every gradient below is exactly 0 (for finite z;
    // the reference writes 0 regardless, so do the same explicitly).
    const A g = ignored ? A(0) : load(dloss + n), row_lse = lse[n];
    const A uniform = g * smoothing / A(C);
    const A one_hot = g * (A(1) - smoothing);
    auto grad = [&](A zc, int64_t c) {
      return ignored ? A(0) : cross_entropy_grad(zc, c, t, row_lse, g, uniform, one_hot, bad);
    };
    for (int64_t c = threadIdx.x; c < split.head; c += blockDim.x) {
      dzr[c] = convert<T>(grad(load(zr + c), c));
    }
    const T* body = zr + split.head;
    T* dbody = dzr + split.head;
    for (int64_t j = threadIdx.x; j < split.nv; j += blockDim.x) {
      const Vec<T, V> zv = load_vec<V>(body, j);
      Vec<T, V> dv;
#pragma unroll
      for (int e = 0; e < V; ++e) {
        dv.v[e] = convert<T>(grad(convert<A>(zv.v[e]), split.head + j * V + e));
      }
      store_vec<V>(dbody, j, dv);
    }
    for (int64_t c = split.tail_begin + threadIdx.x; c < C; c += blockDim.x) {
      dzr[c] = convert<T>(grad(load(zr + c), c));
    }
  }
}

template <typename T>
void cross_entropy_typed(const Tensor& z, const Tensor& target, int64_t ignore_index,
                         double smoothing, const Tensor& loss, const Tensor& lse) {
  using A = Compute<T>;
  constexpr int V = kVec16<T>;
  const int64_t N = z.size(0), C = z.size(1);
  const int device = z.device().index;
  cross_entropy_fast_kernel<T, V>
      <<<row_blocks(N, device), row_threads((C + V - 1) / V), 0, stream(device)>>>(
          data<T>(z), data<int64_t>(target), N, C, ignore_index, A(smoothing), data<T>(loss),
          data<A>(lse));
  MNEMO_CUDA_CHECK_LAUNCH("cross_entropy_fast_kernel");
}

template <typename T, int V>
void cross_entropy_backward_launch(const Tensor& z, const Tensor& target, const Tensor& lse,
                                   const Tensor& dloss, int64_t ignore_index, double smoothing,
                                   const Tensor& dz) {
  using A = Compute<T>;
  const int64_t N = z.size(0), C = z.size(1);
  const int device = z.device().index;
  cross_entropy_backward_fast_kernel<T, V>
      <<<row_blocks(N, device), row_threads((C + V - 1) / V), 0, stream(device)>>>(
          data<T>(z), data<int64_t>(target), data<A>(lse), data<T>(dloss), N, C, ignore_index,
          A(smoothing), data<T>(dz));
  MNEMO_CUDA_CHECK_LAUNCH("cross_entropy_backward_fast_kernel");
}

template <typename T>
void cross_entropy_backward_typed(const Tensor& z, const Tensor& target, const Tensor& lse,
                                  const Tensor& dloss, int64_t ignore_index, double smoothing,
                                  const Tensor& dz) {
  // The same split for z's and dz's rows needs the same offset modulo 16 bytes.
  const uintptr_t za = reinterpret_cast<uintptr_t>(z.data_ptr());
  const uintptr_t da = reinterpret_cast<uintptr_t>(dz.data_ptr());
  if (za % 16 == da % 16) {
    cross_entropy_backward_launch<T, kVec16<T>>(z, target, lse, dloss, ignore_index, smoothing, dz);
  } else {
    cross_entropy_backward_launch<T, 1>(z, target, lse, dloss, ignore_index, smoothing, dz);
  }
}

}  // namespace

void cross_entropy_fast(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                        double label_smoothing, const Tensor& loss, const Tensor& lse) {
  cuda::visit_floating(logits.dtype(), "cross_entropy", [&](auto tag) {
    cross_entropy_typed<typename decltype(tag)::type>(logits, target, ignore_index, label_smoothing,
                                                      loss, lse);
  });
}

void cross_entropy_backward_fast(const Tensor& logits, const Tensor& target, const Tensor& lse,
                                 const Tensor& dloss, int64_t ignore_index, double label_smoothing,
                                 const Tensor& dlogits) {
  cuda::visit_floating(logits.dtype(), "cross_entropy_backward", [&](auto tag) {
    cross_entropy_backward_typed<typename decltype(tag)::type>(
        logits, target, lse, dloss, ignore_index, label_smoothing, dlogits);
  });
}

}  // namespace mnemo::cuda

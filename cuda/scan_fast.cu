// The fast linear scan h_t = a_t * h_{t-1} + x_t on the GPU, forward and backward: a chunked
// two-pass scan over T. The reference kernels, one thread per (b, c) walking all of
// T, stay in cuda/scan.cu; scan.cu calls these unless kernel_choice() is reference and
// scan_fast_applies(B, T, C).
//
// a, x, h, dh, da, dx (B, T, C) contiguous; h0, dh0 (B, C) or null. State in the compute type
// (f32 for bf16/f16 and f32, f64 for f64), as the reference and the CPU backend do.
//
// Why: the reference has only B * C threads. With B * C = 16k (B 8, C 2048) that is about
// 120 threads per SM of an H100: far too few loads in flight to reach the memory bandwidth.
// Cutting T into K chunks gives B * K * C threads.
//
// ---- Algorithm (reduce, scan the chunk summaries, re-scan) ----
// The step h -> a h + x is an affine map; two steps compose as (a2, x2) o (a1, x1) =
// (a2 a1, a2 x1 + x2). T is cut into K chunks of L steps (the last may be shorter);
// chunk_plan(B, T, C) picks K from the shape alone, so results are bitwise repeatable.
//   1. scan_summary_kernel: thread (b, k, c) composes its chunk's L maps into (A_k, X_k)
//      (reads a, x once).
//   2. scan_carry_kernel: thread (b, c) walks the K summaries in order from h0 and writes
//      carry[b, k, c] = the state entering chunk k (K steps; tiny).
//   3. scan_apply_kernel: thread (b, k, c) re-runs its chunk from carry[b, k, c] with the
//      reference's recurrence and writes h (reads a, x, writes h).
// Backward is the same on the reverse recurrence g_t = dh_t + a_{t+1} g_{t+1} (a_T = 0):
//   1. scan_backward_summary_kernel: (A_k, X_k) of chunk k's maps g_{end} -> g_{start},
//      walking t = end-1 .. start with coefficient a_{t+1} (reads a, dh).
//   2. scan_backward_carry_kernel: thread (b, c) walks k = K-1 .. 0 from g_T = 0 and writes
//      carry[b, k, c] = g at the first step after chunk k; finally dh0 = a_0 g_0.
//   3. scan_backward_apply_kernel: thread (b, k, c) re-runs g over its chunk from the carry and
//      writes dx_t = g_t, da_t = g_t h_{t-1} (reads a, dh, h; writes dx, da).
// Thread mapping: neighbouring threads take neighbouring channels c (the index is
// ((b * K + k) * C + c)), so every load and store of a step is coalesced across a warp. Each
// output element is written by one thread in a fixed order: no atomics, deterministic. The
// chunk composition rounds differently from the sequential walk (chunk 0 is bit-identical to
// the reference), so the two agree to rounding, not bitwise.
//
// ---- Cost ----
// FLOPs: 2 per element forward (an fma), about 4 backward. Bytes per element (s = element
// size): forward 2s (pass 1) + 3s (pass 3) = 5s against the 3s minimum; backward 2s + 5s =
// 7s against 5s. (A decoupled look-back single pass would reach the minimum; not done.)
// Measured (the last H100 run of scripts/gpu-check.sh: bench/kernels.cpp beside PyTorch on the same
// GPU): 32-61% of the measured device copy bandwidth, depending on the case and direction.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "core/error.h"
#include "cuda/kernel_common.cuh"
#include "cuda/ops.h"
#include "cuda/rowops_common.cuh"
#include "cuda/rowops_fast.cuh"

namespace mnemo::cuda {

namespace {

// Enough threads to keep an H100 busy (132 SMs x 2048 threads is about 2^18), and chunks of
// at least this many steps so the summary pass stays a small part of a thread's work.
constexpr int64_t kTargetThreads = int64_t(1) << 18;
constexpr int64_t kMinChunk = 8;
// At or above this many recurrences the reference already has a useful number of threads and
// one pass over the data beats the chunked 5/3 passes.
constexpr int64_t kMaxLinesForChunks = int64_t(1) << 16;

struct ChunkPlan {
  int64_t K = 1;  // chunks
  int64_t L = 1;  // steps per chunk (the last chunk may be shorter)
};

// A function of the shape only (never of the device), so results repeat bitwise anywhere.
ChunkPlan chunk_plan(int64_t B, int64_t T, int64_t C) {
  ChunkPlan p;
  const int64_t lines = std::max<int64_t>(1, B * C);
  const int64_t want = (kTargetThreads + lines - 1) / lines;
  const int64_t most = std::max<int64_t>(1, T / kMinChunk);
  const int64_t K = std::max<int64_t>(1, std::min(want, most));
  p.L = (T + K - 1) / K;
  p.K = (T + p.L - 1) / p.L;  // every chunk non-empty
  return p;
}

// The chunk thread id = (b * K + k) * C + c as (b, k, c), and chunk k's steps [t0, t1) (chunks
// of L steps, the last one cut at `steps`).
struct ChunkIndex {
  int64_t b, k, c;
  int64_t t0, t1;
};
__device__ __forceinline__ ChunkIndex chunk_index(int64_t id, int64_t K, int64_t C, int64_t L,
                                                  int64_t steps) {
  const int64_t c = id % C, bk = id / C, k = bk % K;
  const int64_t t0 = k * L;
  return {bk / K, k, c, t0, t0 + L < steps ? t0 + L : steps};
}

// Calls f(id, chunk_index(id, ...)) for every chunk thread id of (B, K, C), grid-stride.
template <typename F>
__device__ __forceinline__ void for_each_chunk(int64_t B, int64_t steps, int64_t C, int64_t K,
                                               int64_t L, F&& f) {
  const int64_t n = B * K * C;
  for (int64_t id = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; id < n;
       id += int64_t(gridDim.x) * blockDim.x) {
    f(id, chunk_index(id, K, C, L, steps));
  }
}

// ---- forward ----------------------------------------------------------------------------------

// chunk_a, chunk_x (B, K, C): the composition of chunk k's maps, h_end = A h_start + X.
template <typename T>
__global__ void scan_summary_kernel(const T* a, const T* x, Compute<T>* chunk_a,
                                    Compute<T>* chunk_x, int64_t B, int64_t steps, int64_t C,
                                    int64_t K, int64_t L) {
  using A = Compute<T>;
  for_each_chunk(B, steps, C, K, L, [&](int64_t id, const ChunkIndex& ix) {
    const int64_t t0 = ix.t0, t1 = ix.t1;
    A pa = 1, px = 0;
#pragma unroll 4
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t i = (ix.b * steps + t) * C + ix.c;
      const A at = load(a + i);
      pa = at * pa;
      px = at * px + load(x + i);
    }
    chunk_a[id] = pa;
    chunk_x[id] = px;
  });
}

// carry (B, K, C): the state entering chunk k (h0, or 0, for k = 0). One thread per (b, c).
template <typename T>
__global__ void scan_carry_kernel(const T* h0, const Compute<T>* chunk_a, const Compute<T>* chunk_x,
                                  Compute<T>* carry, int64_t B, int64_t C, int64_t K) {
  using A = Compute<T>;
  const int64_t lines = B * C;
  for (int64_t line = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; line < lines;
       line += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = line / C, c = line % C;
    A state = h0 ? load(h0 + line) : A(0);
    for (int64_t k = 0; k < K; ++k) {
      const int64_t j = (b * K + k) * C + c;
      carry[j] = state;
      state = chunk_a[j] * state + chunk_x[j];
    }
  }
}

// h over chunk k from carry[b, k, c], with the reference's recurrence.
template <typename T>
__global__ void scan_apply_kernel(const T* a, const T* x, const Compute<T>* carry, T* h, int64_t B,
                                  int64_t steps, int64_t C, int64_t K, int64_t L) {
  using A = Compute<T>;
  for_each_chunk(B, steps, C, K, L, [&](int64_t id, const ChunkIndex& ix) {
    const int64_t t0 = ix.t0, t1 = ix.t1;
    A state = carry[id];
#pragma unroll 4
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t i = (ix.b * steps + t) * C + ix.c;
      state = load(a + i) * state + load(x + i);
      h[i] = convert<T>(state);
    }
  });
}

// ---- backward ---------------------------------------------------------------------------------

// a_{t+1}, or 0 past the last step. i: the element index of step t.
template <typename T>
__device__ __forceinline__ Compute<T> next_a(const T* a, int64_t i, int64_t t, int64_t steps,
                                             int64_t C) {
  return t + 1 < steps ? load(a + i + C) : Compute<T>(0);
}

// chunk_a, chunk_x (B, K, C): g_start = A g_end + X over chunk k, where g_end is g at the step
// after the chunk (g_T = 0).
template <typename T>
__global__ void scan_backward_summary_kernel(const T* a, const T* dh, Compute<T>* chunk_a,
                                             Compute<T>* chunk_x, int64_t B, int64_t steps,
                                             int64_t C, int64_t K, int64_t L) {
  using A = Compute<T>;
  for_each_chunk(B, steps, C, K, L, [&](int64_t id, const ChunkIndex& ix) {
    const int64_t t0 = ix.t0, t1 = ix.t1;
    A pa = 1, px = 0;
#pragma unroll 4
    for (int64_t t = t1 - 1; t >= t0; --t) {
      const int64_t i = (ix.b * steps + t) * C + ix.c;
      const A coeff = next_a(a, i, t, steps, C);
      pa = coeff * pa;
      px = coeff * px + load(dh + i);
    }
    chunk_a[id] = pa;
    chunk_x[id] = px;
  });
}

// carry (B, K, C): g at the step after chunk k (0 after the last). dh0 (B, C) = a_0 g_0, or
// null. One thread per (b, c).
template <typename T>
__global__ void scan_backward_carry_kernel(const T* a, const Compute<T>* chunk_a,
                                           const Compute<T>* chunk_x, Compute<T>* carry, T* dh0,
                                           int64_t B, int64_t steps, int64_t C, int64_t K) {
  using A = Compute<T>;
  const int64_t lines = B * C;
  for (int64_t line = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; line < lines;
       line += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = line / C, c = line % C;
    A g = 0;
    for (int64_t k = K - 1; k >= 0; --k) {
      const int64_t j = (b * K + k) * C + c;
      carry[j] = g;
      g = chunk_a[j] * g + chunk_x[j];
    }
    // g is g_0 now; a_0 is at (b, 0, c).
    if (dh0) dh0[line] = convert<T>(load(a + b * steps * C + c) * g);
  }
}

// dx, da over chunk k from carry[b, k, c], with the reference's recurrence.
template <typename T>
__global__ void scan_backward_apply_kernel(const T* a, const T* h, const T* h0, const T* dh,
                                           const Compute<T>* carry, T* da, T* dx, int64_t B,
                                           int64_t steps, int64_t C, int64_t K, int64_t L) {
  using A = Compute<T>;
  for_each_chunk(B, steps, C, K, L, [&](int64_t id, const ChunkIndex& ix) {
    const int64_t t0 = ix.t0, t1 = ix.t1;
    A g = carry[id];
#pragma unroll 4
    for (int64_t t = t1 - 1; t >= t0; --t) {
      const int64_t i = (ix.b * steps + t) * C + ix.c;
      const A h_prev = t > 0 ? load(h + i - C) : (h0 ? load(h0 + ix.b * C + ix.c) : A(0));
      g = load(dh + i) + next_a(a, i, t, steps, C) * g;
      dx[i] = convert<T>(g);
      da[i] = convert<T>(g * h_prev);
    }
  });
}

// The chunk plan of h (B, T, C) and the state buffers (B, K, C) that both directions use, in
// the compute type (f64 for f64, else f32).
struct ChunkState {
  int64_t B, steps, C;
  ChunkPlan plan;
  Tensor chunk_a, chunk_x, carry;
  unsigned chunk_grid;  // a grid for one thread per (b, k, c)
  unsigned line_grid;   // ... per (b, c)

  explicit ChunkState(const Tensor& h)
      : B(h.size(0)), steps(h.size(1)), C(h.size(2)), plan(chunk_plan(B, steps, C)) {
    const DType dtype = h.dtype() == DType::f64 ? DType::f64 : DType::f32;
    chunk_a = Tensor::empty({B, plan.K, C}, dtype, h.device());
    chunk_x = Tensor::empty({B, plan.K, C}, dtype, h.device());
    carry = Tensor::empty({B, plan.K, C}, dtype, h.device());
    chunk_grid = grid_for(B * plan.K * C, h.device().index);
    line_grid = grid_for(B * C, h.device().index);
  }
};

template <typename T>
void scan_typed(const Tensor& a, const Tensor& x, const Tensor& h0, const Tensor& h) {
  using A = Compute<T>;
  const ChunkState cs(h);
  const int64_t K = cs.plan.K, L = cs.plan.L;
  cudaStream_t st = stream(h.device());
  scan_summary_kernel<T><<<cs.chunk_grid, kThreads, 0, st>>>(
      data<T>(a), data<T>(x), data<A>(cs.chunk_a), data<A>(cs.chunk_x), cs.B, cs.steps, cs.C, K, L);
  MNEMO_CUDA_CHECK_LAUNCH("scan_summary_kernel");
  scan_carry_kernel<T><<<cs.line_grid, kThreads, 0, st>>>(data_or_null<T>(h0), data<A>(cs.chunk_a),
                                                          data<A>(cs.chunk_x), data<A>(cs.carry),
                                                          cs.B, cs.C, K);
  MNEMO_CUDA_CHECK_LAUNCH("scan_carry_kernel");
  scan_apply_kernel<T><<<cs.chunk_grid, kThreads, 0, st>>>(
      data<T>(a), data<T>(x), data<A>(cs.carry), data<T>(h), cs.B, cs.steps, cs.C, K, L);
  MNEMO_CUDA_CHECK_LAUNCH("scan_apply_kernel");
}

template <typename T>
void scan_backward_typed(const Tensor& a, const Tensor& h, const Tensor& h0, const Tensor& dh,
                         const Tensor& da, const Tensor& dx, const Tensor& dh0) {
  using A = Compute<T>;
  const ChunkState cs(h);
  const int64_t K = cs.plan.K, L = cs.plan.L;
  cudaStream_t st = stream(h.device());
  scan_backward_summary_kernel<T>
      <<<cs.chunk_grid, kThreads, 0, st>>>(data<T>(a), data<T>(dh), data<A>(cs.chunk_a),
                                           data<A>(cs.chunk_x), cs.B, cs.steps, cs.C, K, L);
  MNEMO_CUDA_CHECK_LAUNCH("scan_backward_summary_kernel");
  scan_backward_carry_kernel<T><<<cs.line_grid, kThreads, 0, st>>>(
      data<T>(a), data<A>(cs.chunk_a), data<A>(cs.chunk_x), data<A>(cs.carry), data_or_null<T>(dh0),
      cs.B, cs.steps, cs.C, K);
  MNEMO_CUDA_CHECK_LAUNCH("scan_backward_carry_kernel");
  scan_backward_apply_kernel<T><<<cs.chunk_grid, kThreads, 0, st>>>(
      data<T>(a), data<T>(h), data_or_null<T>(h0), data<T>(dh), data<A>(cs.carry), data<T>(da),
      data<T>(dx), cs.B, cs.steps, cs.C, K, L);
  MNEMO_CUDA_CHECK_LAUNCH("scan_backward_apply_kernel");
}

}  // namespace

bool scan_fast_applies(int64_t B, int64_t T, int64_t C) {
  return B * C > 0 && B * C < kMaxLinesForChunks && chunk_plan(B, T, C).K >= 2;
}

void scan_fast(const Tensor& a, const Tensor& x, const Tensor& h0, const Tensor& h) {
  cuda::visit_floating(h.dtype(), "scan",
                       [&](auto tag) { scan_typed<typename decltype(tag)::type>(a, x, h0, h); });
}

void scan_backward_fast(const Tensor& a, const Tensor& h, const Tensor& h0, const Tensor& dh,
                        const Tensor& da, const Tensor& dx, const Tensor& dh0) {
  cuda::visit_floating(h.dtype(), "scan_backward", [&](auto tag) {
    scan_backward_typed<typename decltype(tag)::type>(a, h, h0, dh, da, dx, dh0);
  });
}

}  // namespace mnemo::cuda

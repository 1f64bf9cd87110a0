// multinomial on the CUDA backend: the CPU backend's algorithm (core/ops/random.h), so the
// same PhiloxState gives the same samples.
//
//   probs (R, C) floating, any strides; out (R, n) i64 contiguous.
//
// 1. prep_rows_kernel, one thread per row (grid-stride over rows): reads the row's weights
//    left to right in f64, records the first bad weight, the sum, the non-zero count and the
//    last positive category in status (R, 3) f64 = (kind, category or count, value), and with
//    replacement writes the running sums into cdf (R, C) f64. The sums are sequential on
//    purpose: the same additions in the same order as the CPU, so the inverse CDF below
//    picks bit-for-bit the same category.
// 2. The host reads status back (one device -> host copy, which waits for the stream) and
//    throws for the first bad row with the CPU's message.
// 3a. With replacement, sample_cdf_kernel: one thread per draw (r, j); u = u53 of element
//    r*n + j; the sample is the first k with cdf[r, k] > u * total (binary search, as
//    std::upper_bound), or the last positive category when u * total rounded up to total.
// 3b. Without replacement (the exponential race): race_keys_kernel, one thread per (r, k):
//    key = -log1p(-u) / w_k (u = u53 of element r*C + k; capped at DBL_MAX; +inf for w = 0);
//    then cub::DeviceSegmentedRadixSort sorts each row's (key, k) pairs ascending. The sort
//    is stable, so equal keys keep increasing k, the CPU's tie rule. take_first_kernel copies
//    the first n indices of each row to out.
//
// Measured: not measured. These kernels have run on an H100 (the CUDA tests check their
// results against the CPU backend, not their speed).
#include <cuda_runtime.h>
#include <cub/cub.cuh>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "core/error.h"
#include "core/ops/view.h"
#include "core/random_stream.h"
#include "cuda/check.h"
#include "cuda/kernel_common.cuh"
#include "cuda/ops.h"

namespace mnemo::cuda {

namespace {

// status kinds (the CPU's RowCheck)
constexpr int kOk = 0, kBadWeight = 1, kBadSum = 2, kTooFew = 3;

// The u53 of "element" e of the stream: block e / 2, words 2(e % 2), 2(e % 2) + 1.
__device__ __forceinline__ double u53_at(int64_t e, PhiloxState state) {
  const philox::Words w = philox::block(uint64_t(e) / 2, state);
  const int h = int(e % 2);
  return philox::u53(w.w[2 * h], w.w[2 * h + 1]);
}

template <typename T>
__global__ void prep_rows_kernel(const T* p, int64_t stride_r, int64_t stride_c, int64_t R,
                                 int64_t C, int64_t n, bool replacement, double* cdf,
                                 double* status) {
  for (int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; r < R;
       r += int64_t(gridDim.x) * blockDim.x) {
    double* s = status + 3 * r;
    double total = 0;
    int64_t nonzero = 0, last_positive = 0;
    bool bad = false;
    for (int64_t k = 0; k < C; ++k) {
      const double w = double(load(p + r * stride_r + k * stride_c));
      if (!(w >= 0) || !isfinite(w)) {
        s[0] = kBadWeight, s[1] = double(k), s[2] = w;
        bad = true;
        break;
      }
      total += w;
      if (w > 0) ++nonzero, last_positive = k;
      if (replacement) cdf[r * C + k] = total;
    }
    if (bad) continue;
    if (!(total > 0) || !isfinite(total)) {
      s[0] = kBadSum, s[1] = 0, s[2] = total;
    } else if (!replacement && n > nonzero) {
      s[0] = kTooFew, s[1] = 0, s[2] = double(nonzero);
    } else {
      s[0] = kOk, s[1] = double(last_positive), s[2] = total;
    }
  }
}

__global__ void sample_cdf_kernel(const double* cdf, const double* status, int64_t R, int64_t C,
                                  int64_t n, PhiloxState state, int64_t* out) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < R * n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / n;  // draw j = i % n of row r uses element r * n + j == i
    const double target = u53_at(i, state) * status[3 * r + 2];
    const double* row = cdf + r * C;
    int64_t lo = 0, hi = C;  // the first k with row[k] > target (std::upper_bound)
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (row[mid] <= target) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    out[i] = lo < C ? lo : int64_t(status[3 * r + 1]);
  }
}

template <typename T>
__global__ void race_keys_kernel(const T* p, int64_t stride_r, int64_t stride_c, int64_t R,
                                 int64_t C, PhiloxState state, double* keys, int64_t* index) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < R * C;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / C, k = i % C;  // element r * C + k == i
    const double w = double(load(p + r * stride_r + k * stride_c));
    const double e = -log1p(-u53_at(i, state));
    const double key = e / w, cap = 1.7976931348623157e308;  // DBL_MAX
    keys[i] = w > 0 ? (cap < key ? cap : key) : __longlong_as_double(0x7ff0000000000000LL);
    index[i] = k;
  }
}

__global__ void take_first_kernel(const int64_t* sorted, int64_t R, int64_t C, int64_t n,
                                  int64_t* out) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < R * n;
       i += int64_t(gridDim.x) * blockDim.x) {
    out[i] = sorted[(i / n) * C + i % n];
  }
}

__global__ void row_offsets_kernel(int* offsets, int64_t R, int64_t C) {
  for (int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; r <= R;
       r += int64_t(gridDim.x) * blockDim.x) {
    offsets[r] = int(r * C);
  }
}

void throw_row_error(const double* s, int64_t row, int64_t num_samples) {
  switch (int(s[0])) {
    case kBadWeight:
      fail("multinomial: row {} has weight {} at category {} (weights must be finite and >= 0)",
           row, s[2], int64_t(s[1]));
    case kBadSum:
      fail("multinomial: the weights of row {} sum to {} (the sum must be positive and finite)",
           row, s[2]);
    case kTooFew:
      fail(
          "multinomial: row {} has {} non-zero weights, cannot draw {} samples without "
          "replacement",
          row, int64_t(s[2]), num_samples);
    default: break;
  }
}

template <typename T>
void launch_prep(const Tensor& probs, int64_t n, bool replacement, const Tensor& cdf,
                 const Tensor& status) {
  const int64_t R = probs.size(0), C = probs.size(1);
  prep_rows_kernel<T><<<grid_for(R, probs.device().index), kThreads, 0, stream(probs.device())>>>(
      data<T>(probs), probs.stride(0), probs.stride(1), R, C, n, replacement,
      replacement ? data<double>(cdf) : nullptr, data<double>(status));
  MNEMO_CUDA_CHECK_LAUNCH("prep_rows_kernel");
}

template <typename T>
void launch_race_keys(const Tensor& probs, PhiloxState state, const Tensor& keys,
                      const Tensor& index) {
  const int64_t R = probs.size(0), C = probs.size(1);
  race_keys_kernel<T>
      <<<grid_for(R * C, probs.device().index), kThreads, 0, stream(probs.device())>>>(
          data<T>(probs), probs.stride(0), probs.stride(1), R, C, state, data<double>(keys),
          data<int64_t>(index));
  MNEMO_CUDA_CHECK_LAUNCH("race_keys_kernel");
}

}  // namespace

void multinomial(const Tensor& probs, int64_t num_samples, bool replacement, PhiloxState state,
                 const Tensor& out) {
  MNEMO_ASSERT(probs.dim() == 2, "multinomial: expected probs (R, C), got {}",
               shape_str(probs.shape()));
  const int64_t R = probs.size(0), C = probs.size(1), n = num_samples;
  MNEMO_ASSERT(out.dtype() == DType::i64 && out.is_contiguous() && out.dim() == 2 &&
                   out.size(0) == R && out.size(1) == n,
               "multinomial: expected a contiguous i64 ({}, {}) output", R, n);
  if (R == 0) return;
  const Device device = probs.device();
  const int dev = device.index;

  // 1-2: per-row sums and checks, read back and thrown on the host (the CPU's messages).
  Tensor status = Tensor::empty({R, 3}, DType::f64, device);
  Tensor cdf = replacement ? Tensor::empty({R, C}, DType::f64, device) : Tensor();
  cuda::visit_floating(probs.dtype(), "multinomial", [&](auto tag) {
    launch_prep<typename decltype(tag)::type>(probs, n, replacement, cdf, status);
  });
  const std::vector<double> checks = core::to(status, Device::cpu()).to_vector<double>();
  for (int64_t r = 0; r < R; ++r) throw_row_error(&checks[size_t(3 * r)], r, n);
  if (n == 0) return;

  cudaStream_t s = stream(device);
  if (replacement) {
    sample_cdf_kernel<<<grid_for(R * n, dev), kThreads, 0, s>>>(
        data<double>(cdf), data<double>(status), R, C, n, state, data<int64_t>(out));
    MNEMO_CUDA_CHECK_LAUNCH("sample_cdf_kernel");
    return;
  }

  // 3b: race keys, a stable segmented sort per row, the first n indices.
  MNEMO_ASSERT(R * C <= int64_t(std::numeric_limits<int>::max()),
               "multinomial: {} x {} weights is too many for one sort without replacement", R, C);
  Tensor keys = Tensor::empty({R, C}, DType::f64, device);
  Tensor index = Tensor::empty({R, C}, DType::i64, device);
  cuda::visit_floating(probs.dtype(), "multinomial", [&](auto tag) {
    launch_race_keys<typename decltype(tag)::type>(probs, state, keys, index);
  });
  Tensor offsets = Tensor::empty({R + 1}, DType::i32, device);
  row_offsets_kernel<<<grid_for(R + 1, dev), kThreads, 0, s>>>(data<int>(offsets), R, C);
  MNEMO_CUDA_CHECK_LAUNCH("row_offsets_kernel");
  Tensor sorted_keys = Tensor::empty({R, C}, DType::f64, device);
  Tensor sorted_index = Tensor::empty({R, C}, DType::i64, device);
  const int* begin = data<int>(offsets);
  size_t temp_bytes = 0;
  MNEMO_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairs(
      nullptr, temp_bytes, data<double>(keys), data<double>(sorted_keys), data<int64_t>(index),
      data<int64_t>(sorted_index), int(R * C), int(R), begin, begin + 1, 0, 64, s));
  // At least one element: a null temp pointer would make CUB only report the size again.
  Tensor temp =
      Tensor::empty({std::max<int64_t>(1, int64_t((temp_bytes + 7) / 8))}, DType::i64, device);
  MNEMO_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairs(
      temp.data_ptr(), temp_bytes, data<double>(keys), data<double>(sorted_keys),
      data<int64_t>(index), data<int64_t>(sorted_index), int(R * C), int(R), begin, begin + 1, 0,
      64, s));
  take_first_kernel<<<grid_for(R * n, dev), kThreads, 0, s>>>(data<int64_t>(sorted_index), R, C, n,
                                                              data<int64_t>(out));
  MNEMO_CUDA_CHECK_LAUNCH("take_first_kernel");
}

}  // namespace mnemo::cuda

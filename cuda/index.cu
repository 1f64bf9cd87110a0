// Indexing on the GPU: gather / index_select (read through an index) and scatter_add /
// index_add (accumulate through an index). Reference: core/cpu/index.cpp; contracts:
// core/backend_ops.def. Deterministic: no atomics; every output element receives its contributions
// in increasing source position, exactly the CPU's order, so results match it bitwise.
//
// Index check (check_indices): one kernel over the index writes a flag when some value lies
// outside [0, size); the flag is read back (one stream sync) and, if set, the index is copied
// to the host to name the first bad value in the error, as the CPU does:
//   "gather: index 7 is out of range for dim 1 of size 5". No kernel ever reads out of range.
//
// gather_kernel: thread per output element (grid-stride). out[p] = x[p with its coordinate
//   along dim replaced by index[p]]; OffsetCalc<3> gives the offsets of p in out, index and x
//   (x's stride along dim set to 0; index[p] * x.stride(dim) is added). index_select is the
//   same with its (n,) index spread (stride 0) over out's shape.
//
// index_add (the embedding backward: out (V, C), index (N,), src (N, C)):
//   1. keys[i] = index[i], positions[i] = i; cub::DeviceRadixSort::SortPairs (stable) sorts
//      them by key, so each key's positions stay in increasing order.
//   2. index_add_segments_kernel: grid (sorted position j, column tiles). A block whose j
//      starts a run of equal keys (a segment: all contributions to one row of out) walks the
//      run; each thread owns one column (a position of the other dims) and adds the run's
//      src values to out in position order. Other blocks return at once. Work is parallel
//      over segments x columns, and a column of one segment is summed by one thread in order.
//
// scatter_add_kernel: thread per line along dim (a position of the other dims). Different
//   lines write disjoint elements of out, and each thread walks its line in order.
//
// Measured: not measured. These kernels have run on an H100 (the CUDA tests check their
// results against the CPU backend, not their speed).
#include <cub/device/device_radix_sort.cuh>

#include <cstdint>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/ops/view.h"
#include "cuda/check.h"
#include "cuda/kernel_common.cuh"
#include "cuda/ops.h"
#include "cuda/reduce_lines.cuh"

namespace mnemo::cuda {

namespace {

// ---- index check --------------------------------------------------------------------------

__global__ void check_indices_kernel(const int64_t* index, OffsetCalc<1> calc, int64_t n,
                                     int64_t size, int32_t* bad) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[1];
    calc.get(i, off);
    const int64_t v = index[off[0]];
    if (v < 0 || v >= size) *bad = 1;  // every writer stores the same value
  }
}

// Throws naming op and the first index (row-major) outside [0, size) of dim.
void check_indices(const Tensor& index, int64_t size, std::string_view op, int64_t dim) {
  const int64_t n = index.numel();
  if (n == 0) return;
  const Device device = index.device();
  const cudaStream_t s = stream(device);
  Tensor flag = Tensor::empty({1}, DType::i32, device);
  MNEMO_CUDA_CHECK(cudaMemsetAsync(flag.data_ptr(), 0, sizeof(int32_t), s));
  const OffsetCalc<1> calc = make_offset_calc<1>(index.shape(), {&index});
  check_indices_kernel<<<grid_for(n, device.index), kThreads, 0, s>>>(data<int64_t>(index), calc, n,
                                                                      size, data<int32_t>(flag));
  MNEMO_CUDA_CHECK_LAUNCH("check_indices_kernel");
  int32_t bad = 0;
  MNEMO_CUDA_CHECK(
      cudaMemcpyAsync(&bad, flag.data_ptr(), sizeof(int32_t), cudaMemcpyDeviceToHost, s));
  MNEMO_CUDA_CHECK(cudaStreamSynchronize(s));
  if (bad == 0) return;
  // The error path: find the first bad value on the host for the message.
  for (int64_t v : core::to(index, Device::cpu()).to_vector<int64_t>()) {
    MNEMO_CHECK(v >= 0 && v < size, "{}: index {} is out of range for dim {} of size {}", op, v,
                dim, size);
  }
  fail("{}: an index is out of range for dim {} of size {}", op, dim, size);
}

// A (n,) index viewed over `shape`: index[i] at coordinate i of dim, stride 0 elsewhere.
Tensor spread_index(const Tensor& index, const Shape& shape, int64_t dim) {
  Strides strides(shape.size(), 0);
  strides[size_t(dim)] = index.strides()[0];
  return Tensor::view_of(index.storage(), shape, strides, index.offset(), DType::i64);
}

// ---- gather -------------------------------------------------------------------------------

// offsets: [0] out, [1] index, [2] x (without the dim's contribution).
template <typename T>
__global__ void gather_kernel(const T* x, const int64_t* index, T* out, OffsetCalc<3> calc,
                              int64_t n, int64_t x_dim_stride) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[3];
    calc.get(i, off);
    out[off[0]] = x[off[2] + index[off[1]] * x_dim_stride];
  }
}

template <typename T>
void gather_typed(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) {
  const int64_t n = out.numel();
  if (n == 0) return;
  Strides x_strides = x.strides();
  const int64_t x_dim_stride = x_strides[size_t(dim)];
  x_strides[size_t(dim)] = 0;  // the dim's offset comes from the index
  const Tensor x_view = view_with(x, out.shape(), x_strides);
  const OffsetCalc<3> calc = make_offset_calc<3>(out.shape(), {&out, &index, &x_view});
  const Device device = out.device();
  gather_kernel<T><<<grid_for(n, device.index), kThreads, 0, stream(device)>>>(
      data<T>(x), data<int64_t>(index), data<T>(out), calc, n, x_dim_stride);
  MNEMO_CUDA_CHECK_LAUNCH("gather_kernel");
}

// index has out's shape (any strides), values already checked.
void gather_checked(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) {
  visit_dtype(x.dtype(), "gather",
              [&](auto tag) { gather_typed<typename decltype(tag)::type>(x, dim, index, out); });
}

// ---- index_add ----------------------------------------------------------------------------

// keys[i] = index[i * stride] (checked non-negative), positions[i] = i.
__global__ void index_keys_kernel(const int64_t* index, int64_t stride, int64_t n,
                                  unsigned long long* keys, int64_t* positions) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    keys[i] = static_cast<unsigned long long>(index[i * stride]);
    positions[i] = i;
  }
}

// Block x = sorted position j (only segment starts work); threads over columns (positions of
// the other dims), grid-stride over blockIdx.y. calc: column -> offsets [0] src, [1] out.
template <typename T>
__global__ void index_add_segments_kernel(const unsigned long long* keys, const int64_t* positions,
                                          int64_t n, const T* src, T* out, OffsetCalc<2> calc,
                                          int64_t columns, int64_t src_dim_stride,
                                          int64_t out_dim_stride) {
  using C = Compute<T>;
  const int64_t j = blockIdx.x;
  const unsigned long long key = keys[j];
  if (j > 0 && keys[j - 1] == key) return;  // not the first of its segment
  for (int64_t col = int64_t(blockIdx.y) * blockDim.x + threadIdx.x; col < columns;
       col += int64_t(gridDim.y) * blockDim.x) {
    int64_t off[2];
    calc.get(col, off);
    T* o = out + off[1] + int64_t(key) * out_dim_stride;
    const T* s = src + off[0];
    C acc = load(o);
    for (int64_t p = j; p < n && keys[p] == key; ++p) {
      // Rounded to T after every addition, as the CPU does.
      acc = convert<C>(convert<T>(acc + load(s + positions[p] * src_dim_stride)));
    }
    *o = convert<T>(acc);
  }
}

int bits_for(int64_t max_value) {
  int bits = 1;
  while (bits < 63 && (int64_t(1) << bits) <= max_value) ++bits;
  return bits;
}

template <typename T>
void index_add_typed(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  const int64_t n = index.numel();
  const Device device = out.device();
  const cudaStream_t s = stream(device);
  // 1. Sort (index value, position) pairs by value, stably.
  Tensor keys_in = Tensor::empty({n}, DType::i64, device);
  Tensor keys = Tensor::empty({n}, DType::i64, device);
  Tensor pos_in = Tensor::empty({n}, DType::i64, device);
  Tensor pos = Tensor::empty({n}, DType::i64, device);
  auto* keys_in_data = data<unsigned long long>(keys_in);
  auto* keys_data = data<unsigned long long>(keys);
  index_keys_kernel<<<grid_for(n, device.index), kThreads, 0, s>>>(
      data<int64_t>(index), index.strides()[0], n, keys_in_data, data<int64_t>(pos_in));
  MNEMO_CUDA_CHECK_LAUNCH("index_keys_kernel");
  const int end_bit = bits_for(out.shape()[size_t(dim)] - 1);
  size_t temp_bytes = 0;
  MNEMO_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys_in_data, keys_data,
                                                   data<int64_t>(pos_in), data<int64_t>(pos), n, 0,
                                                   end_bit, s));
  Tensor temp = scratch_bytes(int64_t(temp_bytes), device);
  MNEMO_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.data_ptr(), temp_bytes, keys_in_data,
                                                   keys_data, data<int64_t>(pos_in),
                                                   data<int64_t>(pos), n, 0, end_bit, s));
  // 2. Each segment adds its contributions, column by column.
  const Lines<2> cols =
      make_lines<2>(src.shape(), dim, {&src, &out}, {src.strides(), out.strides()});
  if (cols.count == 0) return;
  MNEMO_ASSERT(n < (int64_t(1) << 31),
               "index_add: {} indices exceed the cuda kernel's limit of 2^31", n);
  const int64_t tiles = (cols.count + kThreads - 1) / kThreads;
  const dim3 grid(unsigned(n), unsigned(std::min<int64_t>(tiles, 65535)));
  index_add_segments_kernel<T>
      <<<grid, kThreads, 0, s>>>(keys_data, data<int64_t>(pos), n, data<T>(src), data<T>(out),
                                 cols.calc, cols.count, cols.dim_stride[0], cols.dim_stride[1]);
  MNEMO_CUDA_CHECK_LAUNCH("index_add_segments_kernel");
}

// ---- scatter_add --------------------------------------------------------------------------

// Thread per line along dim. calc: line -> offsets [0] out, [1] index, [2] src.
template <typename T>
__global__ void scatter_add_kernel(T* out, const int64_t* index, const T* src, Lines<3> lines) {
  using C = Compute<T>;
  const int64_t od = lines.dim_stride[0], id = lines.dim_stride[1], sd = lines.dim_stride[2];
  for (int64_t l = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; l < lines.count;
       l += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[3];
    lines.calc.get(l, off);
    for (int64_t t = 0; t < lines.length; ++t) {
      T* o = out + off[0] + index[off[1] + t * id] * od;
      *o = convert<T>(load(o) + load(src + off[2] + t * sd));
    }
  }
}

template <typename T>
void scatter_add_typed(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  const Lines<3> lines = make_lines<3>(src.shape(), dim, {&out, &index, &src},
                                       {out.strides(), index.strides(), src.strides()});
  if (lines.count == 0 || lines.length == 0) return;
  const Device device = out.device();
  scatter_add_kernel<T><<<grid_for(lines.count, device.index), kThreads, 0, stream(device)>>>(
      data<T>(out), data<int64_t>(index), data<T>(src), lines);
  MNEMO_CUDA_CHECK_LAUNCH("scatter_add_kernel");
}

}  // namespace

void index_select(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) {
  if (out.numel() == 0) return;
  check_indices(index, x.shape()[size_t(dim)], "index_select", dim);
  gather_checked(x, dim, spread_index(index, out.shape(), dim), out);
}

void index_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  if (src.numel() == 0 || index.numel() == 0) return;
  check_indices(index, out.shape()[size_t(dim)], "index_add", dim);
  visit_dtype(out.dtype(), "index_add", [&](auto tag) {
    index_add_typed<typename decltype(tag)::type>(out, dim, index, src);
  });
}

void gather(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) {
  if (out.numel() == 0) return;
  check_indices(index, x.shape()[size_t(dim)], "gather", dim);
  gather_checked(x, dim, index, out);
}

void scatter_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  if (src.numel() == 0) return;
  check_indices(index, out.shape()[size_t(dim)], "scatter_add", dim);
  visit_dtype(out.dtype(), "scatter_add", [&](auto tag) {
    scatter_add_typed<typename decltype(tag)::type>(out, dim, index, src);
  });
}

}  // namespace mnemo::cuda

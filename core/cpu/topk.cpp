// topk on the CPU: the k largest (or smallest) elements along one dim, sorted, with their
// indices. Each line is copied into a buffer and its first k selected (a heap for small k,
// nth_element otherwise); ties go to the lower index, and NaN counts as larger than every
// number (as in PyTorch). Lines are spread over threads (core/cpu/lines.h).
#include <algorithm>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/lines.h"

namespace mnemo::cpu {

namespace {

template <typename C>
struct Entry {
  C value;
  int64_t index;
};

// The order topk sorts by: NaN first (largest) or last (smallest), then by value, then by
// index. A total order, so nth_element and sort give one well-defined answer.
template <bool kLargest, typename C>
bool comes_first(const Entry<C>& a, const Entry<C>& b) {
  const bool a_nan = is_nan(a.value), b_nan = is_nan(b.value);
  if (a_nan != b_nan) return kLargest ? a_nan : b_nan;
  if (!a_nan && a.value != b.value) return kLargest ? a.value > b.value : a.value < b.value;
  return a.index < b.index;
}

// The first k of the n entries at(0), .., at(n - 1) in `order`, sorted, into buffer[0 .. k).
// Small k: one pass keeping a heap of the k best so far, whose worst is replaced by any entry
// that beats it (most entries are rejected by one comparison, and only k are ever stored).
// Large k: all n entries into the buffer, nth_element, then sort the first k.
template <typename C, typename At, typename Order>
void select_first_k(std::vector<Entry<C>>& buffer, int64_t n, int64_t k, At at, Order order) {
  const bool heap = k > 0 && 8 * k < n;
  buffer.resize(size_t(heap ? k : n));
  for (int64_t t = 0; t < int64_t(buffer.size()); ++t) buffer[size_t(t)] = at(t);
  const auto first = buffer.begin(), kth = buffer.begin() + k;
  if (heap) {
    std::make_heap(first, kth, order);  // the top is the worst of the k kept
    for (int64_t t = k; t < n; ++t) {
      const Entry<C> e = at(t);
      if (!order(e, *first)) continue;
      std::pop_heap(first, kth, order);
      *(kth - 1) = e;
      std::push_heap(first, kth, order);
    }
    std::sort_heap(first, kth, order);
    return;
  }
  if (kth != buffer.end()) std::nth_element(first, kth, buffer.end(), order);
  std::sort(first, kth, order);
}

// The same answer as select_first_k for a row with no NaN, faster when k is not small against
// n: nth_element on the bare values (no index tie-break, no NaN test per comparison) finds
// the k-th best value v; the entries better than v, then the first of those equal to v in
// index order, are the top k, which are then sorted by (value, index). Returns false, having done
// nothing, if the row holds a NaN.
template <bool kLargest, typename C, typename At>
bool select_first_k_no_nan(std::vector<Entry<C>>& buffer, std::vector<C>& scratch, int64_t n,
                           int64_t k, At at) {
  scratch.resize(size_t(n));
  bool nan = false;
  for (int64_t t = 0; t < n; ++t) {
    scratch[size_t(t)] = at(t).value;
    nan |= is_nan(scratch[size_t(t)]);
  }
  if (nan) return false;
  auto better = [](C a, C b) { return kLargest ? a > b : a < b; };
  std::nth_element(scratch.begin(), scratch.begin() + (k - 1), scratch.end(), better);
  const C kth = scratch[size_t(k - 1)];
  int64_t strictly_better = 0;
  for (int64_t t = 0; t < k - 1; ++t) strictly_better += better(scratch[size_t(t)], kth);
  int64_t ties_left = k - strictly_better;  // entries equal to kth to take, lowest index first
  buffer.clear();
  for (int64_t t = 0; t < n && int64_t(buffer.size()) < k; ++t) {
    const Entry<C> e = at(t);
    if (better(e.value, kth)) {
      buffer.push_back(e);
    } else if (e.value == kth && ties_left > 0) {
      buffer.push_back(e);
      --ties_left;
    }
  }
  // No NaN: `order` without its NaN tests.
  std::sort(buffer.begin(), buffer.end(), [&](const Entry<C>& a, const Entry<C>& b) {
    return a.value != b.value ? better(a.value, b.value) : a.index < b.index;
  });
  return true;
}

template <bool kLargest, typename T>
void topk_typed(const Tensor& x, int64_t k, int64_t dim, const Tensor& values,
                const Tensor& indices) {
  using C = ComputeType<T>;
  const T* xs = static_cast<const T*>(x.data_ptr());
  T* vs = static_cast<T*>(values.data_ptr());
  int64_t* is = static_cast<int64_t*>(indices.data_ptr());
  // values and indices are both contiguous with the same shape, so they share offsets.
  const auto g = line_geometry<2>(x.shape(), dim, {&x.strides(), &values.strides()});
  const int64_t length = g.length, sx = g.dim_strides[0], sv = g.dim_strides[1];
  auto order = [](const Entry<C>& a, const Entry<C>& b) { return comes_first<kLargest>(a, b); };
  // The heap wins when few entries are kept; otherwise the value-only selection (rows with
  // a NaN fall back to the general one).
  const bool heap = k > 0 && 8 * k < length;
  parallel_for(g.lines, 4 * length, [&](int64_t begin, int64_t end) {
    std::vector<Entry<C>> buffer;
    std::vector<C> scratch;
    for (int64_t l = begin; l < end; ++l) {
      const auto off = g.offsets(l);
      const T* p = xs + off[0];
      auto at = [&](int64_t t) { return Entry<C>{C(p[t * sx]), t}; };
      if (heap || k == 0 || !select_first_k_no_nan<kLargest>(buffer, scratch, length, k, at)) {
        select_first_k(buffer, length, k, at, order);
      }
      for (int64_t j = 0; j < k; ++j) {
        vs[off[1] + j * sv] = convert<T>(buffer[size_t(j)].value);
        is[off[1] + j * sv] = buffer[size_t(j)].index;
      }
    }
  });
}

}  // namespace

void CpuBackend::topk(const Tensor& x, int64_t k, int64_t dim, bool largest, const Tensor& values,
                      const Tensor& indices) {
  visit_dtype(x.dtype(), "topk", [&](auto tag) {
    visit_bool(largest, [&](auto largest_tag) {
      topk_typed<decltype(largest_tag)::value, typename decltype(tag)::type>(x, k, dim, values,
                                                                             indices);
    });
  });
}

}  // namespace mnemo::cpu

// KnnMemory (knn_memory.h): the FIFO state, exact top-k search with tensor ops, and the
// approximate search through faiss.
#include "memory/knn_memory.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "mnemo_build_info.h"

#if MNEMO_HAVE_FAISS
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>
#endif

namespace mnemo::memory {

KnnSearch parse_knn_search(const std::string& name, const std::string& key) {
  if (name == "exact") return KnnSearch::exact;
  if (name == "faiss") return KnnSearch::faiss;
  fail("memorizing: {} must be \"exact\" or \"faiss\", got \"{}\"", key, name);
}

bool knn_faiss_available() {
  return MNEMO_HAVE_FAISS != 0;
}

KnnMemory::KnnMemory(int64_t N, int64_t H, int64_t D, KnnSearch search, FaissOptions f)
    : capacity(N), heads(H), head_dim(D), search_kind(search), faiss(std::move(f)) {
  MNEMO_CHECK(N > 0 && H > 0 && D > 0,
              "KnnMemory: capacity, heads and head_dim must be positive, got {}, {}, {}", N, H, D);
  MNEMO_CHECK(search != KnnSearch::faiss || knn_faiss_available(),
              "KnnMemory: search \"faiss\" asked for, but mnemo was built without faiss "
              "(apt-get install libfaiss-dev and reconfigure, or use search \"exact\")");
  MNEMO_CHECK(faiss.index == "ivf" || faiss.index == "hnsw",
              "KnnMemory: faiss index must be \"ivf\" or \"hnsw\", got \"{}\"", faiss.index);
  MNEMO_CHECK(faiss.nprobe > 0 && faiss.hnsw_m > 0 && faiss.ef_search > 0 && faiss.min_size >= 0,
              "KnnMemory: faiss options must be positive");
}

KnnMemoryState KnnMemory::initial(int64_t B, TensorOptions options) const {
  MNEMO_CHECK(B > 0, "KnnMemory: batch must be positive, got {}", B);
  options.requires_grad = false;
  KnnMemoryState m;
  m.keys = zeros({B, heads, capacity, head_dim}, options);
  m.values = zeros({B, heads, capacity, head_dim}, options);
  m.count = zeros({B}, TensorOptions{DType::i64, options.device});
  return m;
}

void KnnMemory::check(const KnnMemoryState& m, const char* op) const {
  MNEMO_CHECK(m.keys.defined() && m.values.defined() && m.count.defined(),
              "KnnMemory::{}: the memory is not initialised", op);
  const int64_t B = m.keys.size(0);
  const Shape want{B, heads, capacity, head_dim};
  MNEMO_CHECK(m.keys.shape() == want && m.values.shape() == want,
              "KnnMemory::{}: keys {} and values {} must be {}", op, shape_str(m.keys.shape()),
              shape_str(m.values.shape()), shape_str(want));
  MNEMO_CHECK(m.count.shape() == Shape{B} && m.count.dtype() == DType::i64,
              "KnnMemory::{}: count must be i64 ({}), got {} {}", op, B, m.count.dtype(),
              shape_str(m.count.shape()));
}

Tensor fifo_append(const Tensor& buffer, const Tensor& x) {
  const int64_t N = buffer.size(2), T = x.size(2);
  if (T >= N) return contiguous(narrow(x, 2, T - N, N));
  return concat({narrow(buffer, 2, T, N - T), x}, 2);
}

Tensor fifo_count(const Tensor& count, int64_t T, int64_t N) {
  return clamp(add(count, double(T)), 0.0, double(N));
}

Tensor fifo_valid_slots(const Tensor& count, int64_t N, Device device, int64_t first) {
  MNEMO_CHECK(first >= 0 && first <= N, "fifo_valid_slots: first slot {} outside 0 .. {}", first,
              N);
  const int64_t B = count.size(0), n = N - first;
  const Tensor slot = view(arange(n, {DType::i64, device}), {1, 1, 1, n});  // slot - first
  const Tensor oldest = view(sub(full({B}, double(n), {DType::i64, device}), count), {B, 1, 1, 1});
  return ge(slot, oldest);  // (B, 1, 1, n)
}

KnnMemoryState KnnMemory::append(const KnnMemoryState& m, const Tensor& k, const Tensor& v) const {
  check(m, "append");
  const int64_t B = m.keys.size(0);
  MNEMO_CHECK(k.dim() == 4 && k.size(0) == B && k.size(1) == heads && k.size(3) == head_dim &&
                  v.shape() == k.shape(),
              "KnnMemory::append: k {} and v {} must be (B={}, H={}, T, D={})",
              shape_str(k.shape()), shape_str(v.shape()), B, heads, head_dim);
  NoGradGuard no_grad;
  KnnMemoryState out;
  out.keys = fifo_append(m.keys, to(detach(k), m.keys.dtype()));
  out.values = fifo_append(m.values, to(detach(v), m.values.dtype()));
  out.count = fifo_count(m.count, k.size(2), capacity);
  return out;
}

KnnMemoryState KnnMemory::reset(const KnnMemoryState& m, const std::vector<int64_t>& rows) const {
  check(m, "reset");
  const int64_t B = m.keys.size(0);
  std::vector<double> keep(size_t(B), 1.0);
  for (int64_t r : rows) {
    MNEMO_CHECK(r >= 0 && r < B, "KnnMemory::reset: row {} out of range for {} streams", r, B);
    keep[size_t(r)] = 0.0;
  }
  NoGradGuard no_grad;
  const Tensor keep_rows = mnemo::to(gt(from_vector(keep, {B}), 0.0), m.keys.device());  // (B,)
  const Tensor keep4 = view(keep_rows, {B, 1, 1, 1});
  KnnMemoryState out;
  out.keys = where(keep4, m.keys, zeros_like(m.keys));
  out.values = where(keep4, m.values, zeros_like(m.values));
  out.count = where(keep_rows, m.count, zeros_like(m.count));
  return out;
}

namespace {

// x (..., D) / max(|x|, tiny)
Tensor l2_normalise(const Tensor& x) {
  return div(x, clamp(norm(x, 2, {-1}, true), 1e-30, std::numeric_limits<double>::infinity()));
}

// What a search found for the queries of one kv head, (B, H, G*T, K) each.
struct Found {
  Tensor indices;   // i64 slots in [0, N); 0 where not valid
  Tensor valid;     // bool
  Tensor relative;  // i64 indices - first, in [0, N - first) also where not valid
};

// The top-K by scores over slots first .. N - 1.
Found exact_topk(const KnnMemoryState& m, const Tensor& qg, int64_t K, int64_t first) {
  const int64_t N = m.keys.size(2), n = N - first;
  const Tensor kn = l2_normalise(narrow(m.keys, 2, first, n));             // (B, H, n, D)
  const Tensor scores = matmul(l2_normalise(qg), transpose(kn, 2, 3));     // (B, H, GT, n)
  const Tensor ok = fifo_valid_slots(m.count, N, scores.device(), first);  // (B, 1, 1, n)
  const Tensor minus_inf =
      scalar_tensor(-std::numeric_limits<double>::infinity(), options_of(scores));
  const TopKResult top = topk(where(ok, scores, minus_inf), K, -1);
  Found f;
  f.valid = gt(top.values, -std::numeric_limits<double>::infinity());
  f.indices = where(f.valid, add(top.indices, double(first)), zeros_like(top.indices));
  f.relative = top.indices;
  return f;
}

#if MNEMO_HAVE_FAISS
Found faiss_topk(const KnnMemoryState& m, const Tensor& qg, int64_t K, int64_t first,
                 const FaissOptions& f) {
  const int64_t B = m.keys.size(0), H = m.keys.size(1), N = m.keys.size(2), D = m.keys.size(3);
  const int64_t Q = qg.size(2);
  const Device cpu = Device::cpu();
  const std::vector<float> keys =
      to(to(l2_normalise(m.keys), DType::f32), cpu).to_vector<float>();  // (B, H, N, D)
  const std::vector<float> queries =
      to(to(l2_normalise(qg), DType::f32), cpu).to_vector<float>();  // (B, H, Q, D)
  const std::vector<int64_t> count = to(m.count, cpu).to_vector<int64_t>();
  std::vector<int64_t> indices(size_t(B * H * Q * K), 0);
  std::vector<int32_t> valid(size_t(B * H * Q * K), 0);
  std::vector<float> distances(size_t(Q * K));
  std::vector<faiss::Index::idx_t> labels(size_t(Q * K));
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = count[size_t(b)], first = N - n;
    if (n == 0) continue;
    for (int64_t h = 0; h < H; ++h) {
      const float* xb = keys.data() + ((b * H + h) * N + first) * D;
      const float* xq = queries.data() + (b * H + h) * Q * D;
      if (n < std::max<int64_t>(f.min_size, K)) {
        faiss::IndexFlatIP index{int(D)};
        index.add(n, xb);
        index.search(Q, xq, K, distances.data(), labels.data());
      } else if (f.index == "hnsw") {
        faiss::IndexHNSWFlat index(int(D), int(f.hnsw_m), faiss::METRIC_INNER_PRODUCT);
        index.hnsw.efSearch = int(std::max(f.ef_search, K));
        index.add(n, xb);
        index.search(Q, xq, K, distances.data(), labels.data());
      } else {
        // About sqrt(n) lists, each with at least 39 training points (faiss' minimum).
        const int64_t nlist =
            std::clamp<int64_t>(int64_t(std::sqrt(double(n))), 1, std::max<int64_t>(1, n / 39));
        faiss::IndexFlatIP quantizer{int(D)};
        faiss::IndexIVFFlat index(&quantizer, size_t(D), size_t(nlist),
                                  faiss::METRIC_INNER_PRODUCT);
        index.cp.verbose = false;
        index.train(n, xb);
        index.add(n, xb);
        index.nprobe = size_t(std::min(f.nprobe, nlist));
        index.search(Q, xq, K, distances.data(), labels.data());
      }
      int64_t* out = indices.data() + (b * H + h) * Q * K;
      int32_t* ok = valid.data() + (b * H + h) * Q * K;
      for (int64_t i = 0; i < Q * K; ++i) {
        if (labels[size_t(i)] < 0) continue;
        out[i] = first + labels[size_t(i)];
        ok[i] = 1;
      }
    }
  }
  const Device device = qg.device();
  Found found;
  found.indices = mnemo::to(from_vector(indices, {B, H, Q, K}), device);
  found.valid = mnemo::to(ne(from_vector(valid, {B, H, Q, K}), 0.0), device);
  found.relative =
      where(found.valid, add(found.indices, -double(first)), zeros_like(found.indices));
  return found;
}
#endif

}  // namespace

int64_t KnnMemory::first_searched(const KnnMemoryState& m, int64_t top_k) const {
  check(m, "search");
  const int64_t K = std::min(top_k, capacity);
  const int64_t held = m.count.numel() > 0 ? int64_t(max(m.count).item()) : 0;
  return capacity - std::clamp<int64_t>(std::max(held, K), 0, capacity);
}

KnnLookup KnnMemory::search(const KnnMemoryState& m, const Tensor& q, int64_t top_k,
                            KnnResult result) const {
  check(m, "search");
  const int64_t B = m.keys.size(0), H = heads, N = capacity, D = head_dim;
  MNEMO_CHECK(q.dim() == 4 && q.size(0) == B && q.size(1) % H == 0 && q.size(3) == D,
              "KnnMemory::search: queries {} must be (B={}, a multiple of H={}, T, D={})",
              shape_str(q.shape()), B, H, D);
  MNEMO_CHECK(top_k > 0, "KnnMemory::search: top_k must be positive, got {}", top_k);
  NoGradGuard no_grad;
  const int64_t Hq = q.size(1), G = Hq / H, T = q.size(2), K = std::min(top_k, N);
  // Query head h = kv * G + g reads kv head kv: (B, Hq, T, D) -> (B, H, G*T, D).
  const Tensor qg = reshape(to(detach(q), m.keys.dtype()), {B, H, G * T, D});
  const int64_t first = first_searched(m, K), n = N - first;
  Found found;
  if (search_kind == KnnSearch::exact) {
    found = exact_topk(m, qg, K, first);
  } else {
#if MNEMO_HAVE_FAISS
    found = faiss_topk(m, qg, K, first, faiss);
#else
    fail("KnnMemory::search: faiss is not available in this build");
#endif
  }
  KnnLookup out;
  out.indices = reshape(found.indices, {B, Hq, T, K});
  out.valid = reshape(found.valid, {B, Hq, T, K});
  out.first = first;
  if (result == KnnResult::mask) {
    // Scatter each valid pick into a (B, H, G*T, n) mask over the searched slots (invalid
    // picks add 0); the picks of one query are distinct slots.
    const Tensor picks = scatter_add(zeros({B, H, G * T, n}, {DType::f32, q.device()}), 3,
                                     found.relative, to(found.valid, DType::f32));
    out.selected = reshape(gt(picks, 0.0), {B, Hq, T, n});
    return out;
  }
  // gather along the slot dim with the index repeated over D: (B, H, G*T*K, D).
  const Tensor index =
      contiguous(expand(reshape(found.indices, {B, H, G * T * K, 1}), {B, H, G * T * K, D}));
  const Tensor valid5 = unsqueeze(out.valid, 4);
  out.keys = where(valid5, reshape(gather(m.keys, 2, index), {B, Hq, T, K, D}),
                   scalar_tensor(0.0, options_of(m.keys)));
  out.values = where(valid5, reshape(gather(m.values, 2, index), {B, Hq, T, K, D}),
                     scalar_tensor(0.0, options_of(m.values)));
  return out;
}

void KnnMemory::save(const KnnMemoryState& m, const std::string& prefix, MemoryState& state) const {
  check(m, "save");
  state.set(prefix + ".keys", m.keys);
  state.set(prefix + ".values", m.values);
  state.set(prefix + ".count", m.count);
}

KnnMemoryState KnnMemory::load(const MemoryState& state, const std::string& prefix) const {
  KnnMemoryState m{state.at(prefix + ".keys"), state.at(prefix + ".values"),
                   state.at(prefix + ".count")};
  const int64_t B = m.keys.dim() > 0 ? m.keys.size(0) : 0;
  const Shape want{B, heads, capacity, head_dim};
  MNEMO_CHECK(m.keys.shape() == want, "memory state '{}.keys' has shape {}, expected {}", prefix,
              shape_str(m.keys.shape()), shape_str(want));
  MNEMO_CHECK(m.values.shape() == want, "memory state '{}.values' has shape {}, expected {}",
              prefix, shape_str(m.values.shape()), shape_str(want));
  MNEMO_CHECK(m.count.shape() == Shape{B} && m.count.dtype() == DType::i64,
              "memory state '{}.count' must be i64 ({}), got {} {}", prefix, B, m.count.dtype(),
              shape_str(m.count.shape()));
  return m;
}

}  // namespace mnemo::memory

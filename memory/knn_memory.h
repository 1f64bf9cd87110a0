// KnnMemory: the non-differentiable (key, value) memory of the Memorizing Transformer
// (Wu et al., ICLR 2022), one FIFO per stream and per key/value head, and its top-k search.
//
// State (plain tensors, so a MemoryState can checkpoint it):
//   keys   (B, H, N, D)   the stored keys, as the layer computed them (detached)
//   values (B, H, N, D)
//   count  (B,) i64       how many slots of stream b hold data (0 <= count <= N)
// The slots are right-aligned: stream b's valid entries are slots N - count[b] .. N - 1, the
// oldest first. Appending a segment's T entries shifts every stream left by T (the oldest T
// fall out: FIFO) and writes them at the end; count becomes min(count + T, N). All streams
// advance together (one segment at a time), so one shift serves the batch; a stream whose
// document ended is reset to count 0 (its slots zeroed).
//
// Search. A query q (B, Hq, T, D) (Hq = G * H query heads, head h reading kv head h / G)
// retrieves, per query, the K slots of its stream and kv head with the largest
//   score(q, k) = <q / |q|, k / |k|>                (inner product of L2-normalised vectors)
// among the valid slots. Two ways:
//   exact: scores = qn @ kn^T (B, H, G*T, N) with invalid slots at -inf, then topk: tensor
//          ops only, so it runs wherever the tensors live (CPU, CUDA);
//   faiss: per (stream, kv head) an approximate index over the valid normalised keys
//          (IVF-Flat or HNSW, inner-product metric), rebuilt from the state tensors at each
//          search (the tensors are the state; the index is a cache). CPU, f32; for large N.
//          Only where mnemo was built with faiss (MNEMO_HAVE_FAISS); otherwise asking for it
//          throws mnemo::Error.
// A query retrieves fewer than K valid slots when its stream holds fewer: `valid` says which.
// Only the slots some stream holds are searched: first = N - max(max_b count[b], K) .. N - 1
// (a memory of capacity 4096 that holds 200 entries costs 200, not 4096).
//
// What a search hands back (KnnResult):
//   entries: the retrieved keys and values gathered per query, (B, Hq, T, K, D); reading them
//            is a (1 x K) product per query. Any search, any memory size.
//   mask:    `selected` (B, Hq, T, n = N - first), the top-k as a mask over the searched
//            slots; the caller scores and reads the n slots directly with two batched GEMMs
//            per kv head (KnnAttention with exact search: the search already costs O(T n), and
//            the (B, Hq, T, K, D) gathers cost more than the read itself).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/ops/factory.h"
#include "core/tensor.h"
#include "memory/segment_lm.h"

namespace mnemo::memory {

enum class KnnSearch { exact, faiss };

// "exact" | "faiss" (throws naming `key` otherwise).
KnnSearch parse_knn_search(const std::string& name, const std::string& key = "search");
// Whether this build can search with faiss.
bool knn_faiss_available();

struct FaissOptions {
  std::string index = "hnsw";  // "hnsw" (IndexHNSWFlat) or "ivf" (IndexIVFFlat)
  int64_t nprobe = 32;         // ivf: lists visited per query (of about sqrt(n))
  int64_t hnsw_m = 32;         // hnsw: links per node
  int64_t ef_search = 128;     // hnsw: candidate list length at search (at least K)
  int64_t min_size = 1024;     // streams holding fewer entries are searched exactly (flat)
};

struct KnnMemoryState {
  Tensor keys;    // (B, H, N, D)
  Tensor values;  // (B, H, N, D)
  Tensor count;   // (B,) i64
};

enum class KnnResult { entries, mask };

struct KnnLookup {
  Tensor indices;     // (B, Hq, T, K) i64 slots in [0, N); 0 where not valid
  Tensor valid;       // (B, Hq, T, K) bool
  Tensor keys;        // (B, Hq, T, K, D) the retrieved keys (zeros where not valid), detached
  Tensor values;      // (B, Hq, T, K, D)                                     (entries only)
  int64_t first = 0;  // the slots searched: first .. N - 1
  Tensor selected;    // (B, Hq, T, N - first) bool: slot first + j retrieved    (mask only)
};

class KnnMemory {
 public:
  // capacity N per stream and head, `heads` kv heads of size head_dim.
  KnnMemory(int64_t capacity, int64_t heads, int64_t head_dim, KnnSearch search = KnnSearch::exact,
            FaissOptions faiss = {});

  // Empty memory for `batch` streams; keys/values in options' dtype and device.
  KnnMemoryState initial(int64_t batch, TensorOptions options) const;
  // k, v (B, H, T, D): the segment's entries, appended (detached) in order; T may exceed N
  // (then only the last N remain).
  KnnMemoryState append(const KnnMemoryState& memory, const Tensor& k, const Tensor& v) const;
  // The streams in `rows` emptied (document boundaries).
  KnnMemoryState reset(const KnnMemoryState& memory, const std::vector<int64_t>& rows) const;
  // Top-k slots for q (B, Hq, T, D), Hq a multiple of H; K = min(top_k, N). Never records
  // autograd history (the retrieved keys and values are constants to the layer).
  KnnLookup search(const KnnMemoryState& memory, const Tensor& q, int64_t top_k,
                   KnnResult result = KnnResult::entries) const;
  // The first slot a search covers: N - max(most entries any stream holds, K), K = min(top_k,
  // N). Reads count (one small copy to the host on a GPU).
  int64_t first_searched(const KnnMemoryState& memory, int64_t top_k) const;

  // MemoryState entries "<prefix>.keys", "<prefix>.values", "<prefix>.count".
  void save(const KnnMemoryState& memory, const std::string& prefix, MemoryState& state) const;
  // Reads them back, checking shapes against this memory (errors name the key).
  KnnMemoryState load(const MemoryState& state, const std::string& prefix) const;

  int64_t capacity, heads, head_dim;
  KnnSearch search_kind;
  FaissOptions faiss;

 private:
  void check(const KnnMemoryState& memory, const char* op) const;
};

// The FIFO step on one buffer: buffer (B, H, N, D), x (B, H, T, D) -> the last N rows of
// concat(buffer, x) along dim 2 (one copy).
Tensor fifo_append(const Tensor& buffer, const Tensor& x);
// count (B,) i64 -> min(count + T, N)
Tensor fifo_count(const Tensor& count, int64_t T, int64_t N);
// (B, 1, 1, N - first) bool: slot first + j of stream b is valid iff first + j >= N - count[b].
Tensor fifo_valid_slots(const Tensor& count, int64_t N, Device device, int64_t first = 0);

}  // namespace mnemo::memory

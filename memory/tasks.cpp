// The memory benchmark's tasks (tasks.h): stream generators, batching and metrics.
#include "memory/tasks.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <unordered_map>

#include "autograd/ops.h"
#include "core/error.h"
#include "core/ops/factory.h"
#include "core/ops/view.h"
#include "core/splitmix64.h"

namespace mnemo::memory {

// ---------------------------------------------------------------- batches and tallies

namespace {

Tensor segment_tensor(const StreamBatch& b, const std::vector<int64_t>& data, int64_t s,
                      Device device) {
  MNEMO_CHECK(s >= 0 && s < b.segments, "StreamBatch: segment {} out of range ({} segments)", s,
              b.segments);
  const auto first = data.begin() + std::ptrdiff_t(b.index(s, 0, 0));
  std::vector<int64_t> slice(first, first + std::ptrdiff_t(b.batch * b.length));
  return core::to(from_vector(slice, {b.batch, b.length}), device);
}

}  // namespace

Tensor StreamBatch::ids_tensor(int64_t s, Device device) const {
  return segment_tensor(*this, ids, s, device);
}
Tensor StreamBatch::targets_tensor(int64_t s, Device device) const {
  return segment_tensor(*this, targets, s, device);
}
std::vector<Tensor> StreamBatch::ids_segments(Device device) const {
  std::vector<Tensor> out;
  for (int64_t s = 0; s < segments; ++s) out.push_back(ids_tensor(s, device));
  return out;
}
std::vector<Tensor> StreamBatch::targets_segments(Device device) const {
  std::vector<Tensor> out;
  for (int64_t s = 0; s < segments; ++s) out.push_back(targets_tensor(s, device));
  return out;
}

double ProbeTally::accuracy() const {
  MNEMO_CHECK(tokens > 0, "tally: no scored positions of this kind");
  return double(correct) / double(tokens);
}

double ProbeTally::bits_per_token() const {
  MNEMO_CHECK(tokens > 0, "tally: no scored positions of this kind");
  return nll_nats / std::log(2.0) / double(tokens);
}

void Tally::add_logits(const StreamBatch& batch, int64_t s, const Tensor& logits) {
  const int64_t V = logits.size(2);
  const Tensor flat = reshape(logits, {-1, V});  // (B T, V)
  const Tensor targets = reshape(batch.targets_tensor(s, logits.device()), {-1});
  const Tensor nll = cross_entropy(flat, targets, -100, 0.0, Reduction::none);  // (B T)
  add(batch, s, to(argmax(flat, 1), Device::cpu()).to_vector<int64_t>(),
      to(nll, Device::cpu()).to_vector<double>());
}

void Tally::add(const StreamBatch& batch, int64_t s, const std::vector<int64_t>& predicted,
                const std::vector<double>& nll) {
  const size_t n = size_t(batch.batch * batch.length);
  MNEMO_CHECK(predicted.size() == n && nll.size() == n,
              "tally: {} predictions and {} nlls for a segment of {} x {} positions",
              predicted.size(), nll.size(), batch.batch, batch.length);
  for (int64_t b = 0; b < batch.batch; ++b) {
    for (int64_t t = 0; t < batch.length; ++t) {
      const size_t at = batch.index(s, b, t);
      if (batch.targets[at] == -100 || batch.probes[at] == Probe::none) continue;
      ProbeTally& kind = batch.probes[at] == Probe::far ? far : local;
      const size_t row = size_t(b * batch.length + t);
      kind.tokens += 1;
      kind.correct += predicted[row] == batch.targets[at] ? 1 : 0;
      kind.nll_nats += nll[row];
    }
  }
}

ProbeTally Tally::all() const {
  return {local.tokens + far.tokens, local.correct + far.correct, local.nll_nats + far.nll_nats};
}

StreamBatch MemoryTask::batch(Split split, int64_t first, int64_t count) const {
  MNEMO_CHECK(first >= 0 && count > 0, "{}: bad stream range first {} count {}", name(), first,
              count);
  StreamBatch out;
  out.segments = num_segments();
  out.batch = count;
  out.length = segment_length();
  const size_t total = size_t(out.segments * out.batch * out.length);
  out.ids.assign(total, 0);
  out.targets.assign(total, -100);
  out.probes.assign(total, Probe::none);
  for (int64_t b = 0; b < count; ++b) {
    const Stream st = stream(split, first + b);
    for (int64_t s = 0; s < out.segments; ++s) {
      for (int64_t t = 0; t < out.length; ++t) {
        const size_t from = size_t(s * out.length + t), at = out.index(s, b, t);
        out.ids[at] = st.ids[from];
        out.targets[at] = st.targets[from];
        out.probes[at] = st.probes[from];
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------- shared helpers

namespace {

// The tasks' generator: SplitMix64 (core/splitmix64.h), a word reduced to [0, n) modulo n.
// Both are fixed: the streams are measured (docs/memory-results.md) and must not change.
struct Rng {
  SplitMix64 gen;
  explicit Rng(uint64_t seed) : gen(seed) {}
  uint64_t next() { return gen.next(); }
  int64_t below(int64_t n) { return int64_t(below_modulo(next(), uint64_t(n))); }  // [0, n)
};

// The seed of stream `index` of `split` for a task (salt: one per task).
uint64_t stream_seed(uint64_t seed, Split split, int64_t index, uint64_t salt) {
  Rng r(seed ^ (salt * 0xD1B54A32D192ED03ull));
  uint64_t h = r.next() ^ (split == Split::eval ? 0xA0761D6478BD642Full : 0);
  Rng r2(h + uint64_t(index) * kSplitMix64Gamma);
  r2.next();
  return r2.next();
}

// 64-bit FNV-1a, for the documents' held-out split.
uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// A uniformly random split of `total` filler tokens into `gaps` gaps (>= 0 each).
std::vector<int64_t> random_gaps(int64_t total, int64_t gaps, Rng& rng) {
  std::vector<int64_t> cuts(size_t(gaps - 1));
  for (auto& c : cuts) c = rng.below(total + 1);
  std::sort(cuts.begin(), cuts.end());
  std::vector<int64_t> out;
  int64_t prev = 0;
  for (int64_t c : cuts) {
    out.push_back(c - prev);
    prev = c;
  }
  out.push_back(total - prev);
  return out;
}

// ---------------------------------------------------------------- recall

class RecallTask : public MemoryTask {
 public:
  // Vocabulary: 0 = Q (query marker), fillers, keys, values.
  static constexpr int64_t kQuery = 0, kFillers = 8, kKeys = 32, kValues = 16;
  static constexpr int64_t kFirstFiller = 1, kFirstKey = kFirstFiller + kFillers,
                           kFirstValue = kFirstKey + kKeys;

  RecallTask(uint64_t seed, const TaskOptions& options) : seed_(seed) {
    OptionReader read("recall", options);
    pairs_ = read.integer("pairs", 8, 1, kKeys);
    segments_ = read.integer("segments", 5, 4, 1024);
    length_ = read.integer("segment-length", 40, 8, 1 << 16);
    local_ = read.integer("local-items", 4, 0, kKeys);
    read.finish();
    MNEMO_CHECK(pairs_ + local_ * segments_ <= kKeys,
                "recall: --pairs {} + --local-items {} x --segments {} needs more than the {} "
                "distinct keys",
                pairs_, local_, segments_, kKeys);
    const int64_t first = 2 * pairs_ + 5 * local_;
    const int64_t query = 3 * ((pairs_ + 1) / 2) + 5 * local_;
    MNEMO_CHECK(std::max(first, query) <= length_,
                "recall: --segment-length {} is too short for {} pairs and {} local items "
                "(needs {})",
                length_, pairs_, local_, std::max(first, query));
  }

  std::string name() const override { return "recall"; }
  std::string metric() const override { return "exact_match"; }
  int64_t vocab_size() const override { return kFirstValue + kValues; }
  int64_t segment_length() const override { return length_; }
  int64_t num_segments() const override { return segments_; }
  nlohmann::json config() const override {
    return {{"pairs", pairs_},       {"segments", segments_}, {"segment-length", length_},
            {"local-items", local_}, {"keys", kKeys},         {"values", kValues}};
  }

  Stream stream(Split split, int64_t index) const override {
    Rng rng(stream_seed(seed_, split, index, 1));
    // Distinct keys: far pairs first, then each segment's local items.
    std::vector<int64_t> keys(kKeys);
    std::iota(keys.begin(), keys.end(), kFirstKey);
    for (int64_t i = kKeys - 1; i > 0; --i)
      std::swap(keys[size_t(i)], keys[size_t(rng.below(i + 1))]);
    auto value = [&] { return kFirstValue + rng.below(kValues); };
    std::vector<int64_t> far_values(static_cast<size_t>(pairs_));
    for (auto& v : far_values) v = value();

    Stream st;
    const size_t total = size_t(segments_ * length_);
    st.ids.resize(total);
    st.targets.assign(total, -100);
    st.probes.assign(total, Probe::none);
    for (int64_t s = 0; s < segments_; ++s) {
      // chunks in order: [far pairs], local writes, then queries (shuffled)
      struct Chunk {
        std::vector<int64_t> tokens;
        Probe probe = Probe::none;  // queries: "Q k v", the k position predicts v
      };
      std::vector<Chunk> chunks, queries;
      if (s == 0) {
        Chunk pairs;
        for (int64_t j = 0; j < pairs_; ++j) {
          pairs.tokens.push_back(keys[size_t(j)]);
          pairs.tokens.push_back(far_values[size_t(j)]);
        }
        chunks.push_back(pairs);
      }
      for (int64_t i = 0; i < local_; ++i) {
        const int64_t k = keys[size_t(pairs_ + s * local_ + i)], v = value();
        chunks.push_back({{k, v}});
        queries.push_back({{kQuery, k, v}, Probe::local});
      }
      // far queries: the first half of the pairs in segment S - 2, the rest in S - 1
      const int64_t half = (pairs_ + 1) / 2;
      const int64_t from = s == segments_ - 2 ? 0 : s == segments_ - 1 ? half : pairs_;
      const int64_t to = s == segments_ - 2 ? half : pairs_;
      for (int64_t j = from; j < to; ++j) {
        queries.push_back({{kQuery, keys[size_t(j)], far_values[size_t(j)]}, Probe::far});
      }
      for (int64_t i = int64_t(queries.size()) - 1; i > 0; --i) {
        std::swap(queries[size_t(i)], queries[size_t(rng.below(i + 1))]);
      }
      chunks.insert(chunks.end(), queries.begin(), queries.end());

      int64_t content = 0;
      for (const auto& c : chunks) content += int64_t(c.tokens.size());
      std::vector<int64_t> gaps = random_gaps(length_ - content, int64_t(chunks.size()) + 1, rng);
      if (s == 0) {  // the pairs sit at offset 0 of the stream
        gaps.back() += gaps.front();
        gaps.front() = 0;
      }
      int64_t t = 0;
      const size_t base = size_t(s * length_);
      auto filler = [&](int64_t n) {
        for (int64_t i = 0; i < n; ++i)
          st.ids[base + size_t(t++)] = kFirstFiller + rng.below(kFillers);
      };
      for (size_t c = 0; c < chunks.size(); ++c) {
        filler(gaps[c]);
        const Chunk& chunk = chunks[c];
        if (chunk.probe != Probe::none) {  // Q k v: the k position predicts v
          st.targets[base + size_t(t + 1)] = chunk.tokens[2];
          st.probes[base + size_t(t + 1)] = chunk.probe;
        }
        for (int64_t tok : chunk.tokens) st.ids[base + size_t(t++)] = tok;
      }
      filler(gaps.back());
    }
    return st;
  }

  double score(const Tally& tally) const override { return tally.far.accuracy(); }
  nlohmann::json details(const Tally& tally) const override {
    nlohmann::json d = {{"chance", 1.0 / double(kValues)}, {"far_queries", tally.far.tokens}};
    if (tally.local.tokens > 0) d["local_exact_match"] = tally.local.accuracy();
    return d;
  }

 private:
  uint64_t seed_;
  int64_t pairs_, segments_, length_, local_;
};

// ---------------------------------------------------------------- copy-far

class CopyFarTask : public MemoryTask {
 public:
  // Vocabulary: 0 = COPY, fillers, symbols.
  static constexpr int64_t kCopy = 0, kFillers = 8, kFirstFiller = 1,
                           kFirstSymbol = kFirstFiller + kFillers;

  CopyFarTask(uint64_t seed, const TaskOptions& options) : seed_(seed) {
    OptionReader read("copy-far", options);
    gap_ = read.integer("gap", 2, 1, 1024);
    string_ = read.integer("length", 8, 1, 1 << 16);
    length_ = read.integer("segment-length", 32, 2, 1 << 16);
    symbols_ = read.integer("symbols", 16, 2, 1 << 16);
    read.finish();
    MNEMO_CHECK(string_ + 1 <= length_,
                "copy-far: --segment-length {} is too short for COPY and a string of --length {}",
                length_, string_);
  }

  std::string name() const override { return "copy-far"; }
  std::string metric() const override { return "token_accuracy"; }
  int64_t vocab_size() const override { return kFirstSymbol + symbols_; }
  int64_t segment_length() const override { return length_; }
  int64_t num_segments() const override { return gap_ + 1; }
  nlohmann::json config() const override {
    return {{"gap", gap_}, {"length", string_}, {"segment-length", length_}, {"symbols", symbols_}};
  }

  Stream stream(Split split, int64_t index) const override {
    Rng rng(stream_seed(seed_, split, index, 2));
    std::vector<int64_t> str(static_cast<size_t>(string_));
    for (auto& c : str) c = kFirstSymbol + rng.below(symbols_);
    Stream st;
    const size_t total = size_t(num_segments() * length_);
    st.ids.resize(total);
    for (auto& id : st.ids) id = kFirstFiller + rng.below(kFillers);
    st.targets.assign(total, -100);
    st.probes.assign(total, Probe::none);
    const size_t recall = size_t(gap_ * length_);
    st.ids[recall] = kCopy;
    for (int64_t i = 0; i < string_; ++i) {
      st.ids[size_t(i)] = str[size_t(i)];
      st.ids[recall + 1 + size_t(i)] = str[size_t(i)];
      st.targets[recall + size_t(i)] = str[size_t(i)];  // COPY -> s1, s_i -> s_{i+1}
      st.probes[recall + size_t(i)] = Probe::far;
    }
    return st;
  }

  double score(const Tally& tally) const override { return tally.far.accuracy(); }
  nlohmann::json details(const Tally&) const override {
    return {{"chance", 1.0 / double(symbols_)}};
  }

 private:
  uint64_t seed_;
  int64_t gap_, string_, length_, symbols_;
};

// ---------------------------------------------------------------- longdoc

class LongDocTask : public MemoryTask {
 public:
  LongDocTask(uint64_t seed, const TaskOptions& options) : seed_(seed) {
    OptionReader read("longdoc", options);
    corpus_ = read.text("corpus", "/usr/include");
    segments_ = read.integer("segments", 8, 2, 1 << 16);
    length_ = read.integer("segment-length", 64, 2, 1 << 16);
    ngram_ = read.integer("ngram", 4, 2, 8);
    read.finish();
    list_documents();
  }

  std::string name() const override { return "longdoc"; }
  std::string metric() const override { return "bits_per_byte"; }
  bool higher_is_better() const override { return false; }
  int64_t vocab_size() const override { return 256; }
  int64_t segment_length() const override { return length_; }
  int64_t num_segments() const override { return segments_; }
  nlohmann::json config() const override {
    return {{"corpus", corpus_},
            {"segments", segments_},
            {"segment-length", length_},
            {"ngram", ngram_},
            {"train_documents", docs_[0].size()},
            {"eval_documents", docs_[1].size()}};
  }

  Stream stream(Split split, int64_t index) const override {
    Rng rng(stream_seed(seed_, split, index, 3));
    const auto& docs = docs_[split == Split::eval ? 1 : 0];
    const Document& doc = docs[size_t(rng.below(int64_t(docs.size())))];
    const int64_t need = segments_ * length_ + 1;
    const int64_t offset = rng.below(doc.size - need + 1);
    std::string bytes(size_t(need), '\0');
    std::ifstream in(doc.path, std::ios::binary);
    in.seekg(offset);
    in.read(bytes.data(), need);
    MNEMO_CHECK(in.gcount() == need, "longdoc: could not read {} bytes at {} of {}", need, offset,
                doc.path);

    Stream st;
    const size_t total = size_t(segments_ * length_);
    st.ids.resize(total);
    st.targets.resize(total);
    st.probes.assign(total, Probe::local);
    for (size_t i = 0; i < total; ++i) {
      st.ids[i] = static_cast<unsigned char>(bytes[i]);
      st.targets[i] = static_cast<unsigned char>(bytes[i + 1]);
    }
    // Byte p (1 <= p <= S*T) is the target at position p - 1, in segment s = (p - 1) / T.
    std::unordered_map<uint64_t, int64_t> last_end;  // n-gram -> end of its latest occurrence
    for (int64_t p = ngram_ - 1; p < need; ++p) {
      uint64_t gram = 0;
      for (int64_t i = p - ngram_ + 1; i <= p; ++i) gram = (gram << 8) | uint8_t(bytes[size_t(i)]);
      const auto it = last_end.find(gram);
      if (p >= 1 && it != last_end.end()) {
        const int64_t s = (p - 1) / length_;
        const int64_t start = it->second - ngram_ + 1;
        if (start < (s - 1) * length_) st.probes[size_t(p - 1)] = Probe::far;
      }
      last_end[gram] = p;
    }
    return st;
  }

  double score(const Tally& tally) const override { return tally.all().bits_per_token(); }
  nlohmann::json details(const Tally& tally) const override {
    nlohmann::json d = {{"far_bytes", tally.far.tokens}, {"bytes", tally.all().tokens}};
    if (tally.far.tokens > 0) d["far_bits_per_byte"] = tally.far.bits_per_token();
    return d;
  }

 private:
  struct Document {
    std::string path;
    int64_t size;
  };

  // Every C/C++ header under the corpus long enough for one stream, sorted by path; a path
  // whose FNV-1a hash is 0 mod 10 goes to eval.
  void list_documents() {
    namespace fs = std::filesystem;
    std::error_code ec;
    MNEMO_CHECK(fs::is_directory(corpus_, ec), "longdoc: --corpus '{}' is not a directory",
                corpus_);
    const std::set<std::string> extensions = {".h", ".hh", ".hpp", ".hxx", ".inl", ".tcc"};
    const int64_t need = segments_ * length_ + 1;
    std::vector<Document> all;
    for (auto it = fs::recursive_directory_iterator(
             corpus_, fs::directory_options::skip_permission_denied, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (!it->is_regular_file(ec) || it->is_symlink(ec)) continue;
      if (!extensions.count(it->path().extension().string())) continue;
      const auto size = int64_t(it->file_size(ec));
      if (!ec && size >= need) all.push_back({it->path().string(), size});
    }
    std::sort(all.begin(), all.end(),
              [](const Document& a, const Document& b) { return a.path < b.path; });
    for (auto& d : all) {
      const std::string rel = fs::relative(d.path, corpus_, ec).string();
      docs_[fnv1a(rel) % 10 == 0 ? 1 : 0].push_back(std::move(d));
    }
    MNEMO_CHECK(!docs_[0].empty() && !docs_[1].empty(),
                "longdoc: --corpus '{}' has {} train and {} eval headers of at least {} bytes "
                "(need one of each)",
                corpus_, docs_[0].size(), docs_[1].size(), need);
  }

  uint64_t seed_;
  std::string corpus_;
  int64_t segments_, length_, ngram_;
  std::vector<Document> docs_[2];  // train, eval
};

}  // namespace

std::vector<std::string> task_names() {
  return {"recall", "copy-far", "longdoc"};
}

std::unique_ptr<MemoryTask> make_task(const std::string& name, uint64_t seed,
                                      const TaskOptions& options) {
  if (name == "recall") return std::make_unique<RecallTask>(seed, options);
  if (name == "copy-far") return std::make_unique<CopyFarTask>(seed, options);
  if (name == "longdoc") return std::make_unique<LongDocTask>(seed, options);
  fail("memory-bench: unknown task '{}' (recall, copy-far or longdoc)", name);
}

}  // namespace mnemo::memory

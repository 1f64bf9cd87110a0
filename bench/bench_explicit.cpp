// bench_explicit: the cost of ExplicitLM's router and training step (memory/explicit.h), one
// JSON object per line on stdout.
//
//   route       ms per token to find the top-K entries of a bank of N = n * n entries:
//               product keys (two n-row sub-key tables, the top-K of each half, the top-K of
//               the K * K sums: O(n dk) per token) against brute force (every entry's full key,
//               q . k over all N: O(N dk)), same queries, same K; the two agree on the top-K
//               (checked before timing). Default n = 1024 (N = 1024^2, the reference's bank),
//               dk = 128, K = 4.
//   train_step  ms per training step (forward_backward, no optimizer) of an ExplicitLM with
//               learned keys and with content keys, next to the no-memory baseline of the same
//               size (2 layers, width 128, 4 heads; 16 rows of 40 tokens; N = 4096 entries of
//               4 tokens: the facts task of `mnemo memory-bench facts`), alternated.
//
// Usage: bench_explicit [threads [section [n]]]   section: route, train_step (default both)
//
// Method: median of timed repetitions after a warm-up, std::chrono::steady_clock; the
// compared commands alternate so that both see the same load. Ratios are what to read: the
// absolute times drift on a shared machine.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/cpu/parallel.h"
#include "core/ops/random.h"
#include "json_line.h"
#include "memory/baseline.h"
#include "memory/explicit.h"

using namespace mnemo;
using bench::JsonLine;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_of(const std::function<void()>& fn) {
  const auto t0 = Clock::now();
  fn();
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Median seconds of `reps` runs of a and b, alternated, after one warm-up each.
std::pair<double, double> alternate(const std::function<void()>& a, const std::function<void()>& b,
                                    int reps) {
  a();
  b();
  std::vector<double> ta, tb;
  for (int r = 0; r < reps; ++r) {
    ta.push_back(seconds_of(a));
    tb.push_back(seconds_of(b));
  }
  std::sort(ta.begin(), ta.end());
  std::sort(tb.begin(), tb.end());
  return {ta[ta.size() / 2], tb[tb.size() / 2]};
}

void bench_route(int64_t n, int threads) {
  const int64_t dk = 128, K = 4, M = 64, C = 128;
  memory::ExplicitConfig cfg;
  cfg.bank_entries = n * n;
  cfg.key_dim = dk;
  cfg.candidates = K;
  Generator gen(1);
  memory::ExplicitMemory memory(C, cfg, C, &gen, 0.02);
  const Tensor q = randn({M, dk}, {}, &gen);
  memory::BankView view;
  view.side = n;
  NoGradGuard no_grad;
  // Brute force needs every entry's full key [row_i; col_j] (N, dk): built once, not timed.
  const Tensor full_keys = reshape(concat({expand(unsqueeze(memory.row_keys, 1), {n, n, dk / 2}),
                                           expand(unsqueeze(memory.col_keys, 0), {n, n, dk / 2})},
                                          2),
                                   {n * n, dk});
  Tensor pk_scores, pk_entries;
  TopKResult brute;
  const auto product = [&] { memory.route(q, view, pk_scores, pk_entries, nullptr); };
  const auto brute_force = [&] { brute = topk(matmul(q, transpose(full_keys, 0, 1)), K, 1); };
  product();
  brute_force();
  const Tensor a = contiguous(pk_entries), b = contiguous(brute.indices);
  int64_t agree = 0;
  for (int64_t i = 0; i < M * K; ++i) agree += a.data<int64_t>()[i] == b.data<int64_t>()[i];
  const auto [t_pk, t_bf] = alternate(product, brute_force, 5);
  JsonLine("route")
      .set("entries", n * n)
      .set("key_dim", dk)
      .set("candidates", K)
      .set("tokens", M)
      .set("threads", threads)
      .set("top_k_agree", double(agree) / double(M * K))
      .significant("product_keys_ms_per_token", 1e3 * t_pk / double(M))
      .significant("brute_force_ms_per_token", 1e3 * t_bf / double(M))
      .significant("speedup", t_bf / t_pk)
      .print();
}

void bench_train_step(int threads) {
  nn::LlamaConfig m;
  m.vocab_size = 138;
  m.hidden_size = 128;
  m.intermediate_size = 352;
  m.num_hidden_layers = 2;
  m.num_attention_heads = 4;
  m.num_key_value_heads = 4;
  m.max_position_embeddings = 80;
  m.tie_word_embeddings = false;
  const int64_t B = 16, T = 40;
  Generator gen(2);
  std::vector<int64_t> raw(size_t(B * T));
  for (size_t i = 0; i < raw.size(); ++i) raw[i] = int64_t((i * 7919 + 13) % 138);
  const std::vector<Tensor> ids = {from_vector(raw, {B, T})};
  const std::vector<Tensor> targets = ids;
  memory::BaselineLM baseline(m, T, &gen);
  baseline.train();
  const auto base_step = [&] {
    baseline.zero_grad();
    baseline.forward_backward(ids, targets, {});
  };
  for (const char* keys : {"learned", "content"}) {
    memory::ExplicitConfig cfg;
    cfg.bank_entries = 4096;
    cfg.entry_length = 4;
    cfg.keys = keys;
    cfg.segment_length = T;
    memory::ExplicitLM lm(m, cfg, &gen);
    memory::MemoryBank bank(64, 4);
    for (int64_t e = 0; e < bank.entries(); ++e) {
      bank.set(e,
               {int32_t(e % 64), int32_t(e / 64 % 64), int32_t(64 + e % 8), int32_t(72 + e % 64)});
    }
    lm.set_bank(bank);
    lm.train();
    const auto step = [&] {
      lm.zero_grad();
      lm.forward_backward(ids, targets, {});
    };
    const auto [t_mem, t_base] = alternate(step, base_step, 7);
    JsonLine("train_step")
        .set("keys", keys)
        .set("batch", B)
        .set("tokens", T)
        .set("entries", cfg.bank_entries)
        .set("threads", threads)
        .significant("explicit_ms", 1e3 * t_mem)
        .significant("baseline_ms", 1e3 * t_base)
        .significant("ratio", t_mem / t_base)
        .print();
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const int threads = argc > 1 ? std::atoi(argv[1]) : 0;
    if (threads > 0) set_num_threads(threads);
    const std::string section = argc > 2 ? argv[2] : "";
    const int64_t n = argc > 3 ? std::atoll(argv[3]) : 1024;
    const int used = num_threads();
    if (section.empty() || section == "route") bench_route(n, used);
    if (section.empty() || section == "train_step") bench_train_step(used);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_explicit: %s\n", e.what());
    return 2;
  }
}

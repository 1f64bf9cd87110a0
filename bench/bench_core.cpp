// bench_core: CPU throughput of mnemo's core ops, one JSON object per line on stdout.
//
//   gemm      f32 GFLOP/s of core::matmul on the products of a small LM training step
//             (batch * seq = 2048 rows, hidden 128, intermediate 384, vocab 512), including
//             the transposed operands backward reads (dX = dY @ W, dW = dY^T @ X), next to
//             OpenBLAS's cblas_sgemm on the same shapes with the same thread count.
//   llama_gemms  every projection product of one training step of configs/demo.json (Llama,
//             4 layers, hidden 128, q/k/v fused to 384, gate/up fused to 768, down 384 -> 128,
//             tied lm_head 128 -> 512 vocab; 16 x 128 = 2048 tokens): forward x @ W^T, backward
//             dX = dY @ W and dW = dY^T @ X, one line each, then a "llama_gemms_step" line
//             with the per-step total (each per-layer product counted 4 times) for both.
//   exact_grads  the weight-gradient products of the demo step, dW = dY^T @ X over 2048 rows,
//             as one GEMM (plain) and as autograd::row_product_sum under ExactGradGuard(128)
//             (per-sequence GEMMs summed in f64: what the trainer runs on the CPU by default,
//             autograd/exact_grad.h), alternated; then the per-step total of both.
//   softmax   GB/s of softmax / log_softmax / their backward / fused cross_entropy
//   rms_norm  GB/s (skipped with the error message if the op is not available)
//   mlp       ms per SGD step of a 784 -> 512 -> 10 MLP on a batch of 256
//   topk      GB/s of core::topk(k = 32) along the last dim of (2560, n) scores, n from 40 to
//             4096: the kNN search of the Memorizing Transformer's recall task (16 streams x
//             4 heads x 40 queries), k against n from "all but a few" to "a few"
//
// Usage: bench_core [threads [section]]
//   threads: default mnemo::num_threads() (OMP_NUM_THREADS, or all cores); 0 keeps the default
//   section: gemm, llama_gemms, exact_grads, softmax, rms_norm, mlp or topk (default: all but
//            llama_gemms and exact_grads)
//
// Method: inputs are uniform random (never zeros: some kernels are faster on zeros), each
// result is validated against an independent computation before it is timed, every
// measurement is warmed up, and the reported time is the median of many runs timed with
// std::chrono::steady_clock (the best run is reported too). mnemo and OpenBLAS calls
// alternate, so that both see the same load from other processes; the 1-minute load average
// is printed at the start and the end, since on a shared machine it decides how far apart
// median and best are. OpenBLAS is loaded at run time (dlopen("libopenblas.so.0")), so it is
// never a build dependency (the OpenMP build is preferred, see OpenBlas::load); without it
// the gemm lines say so and carry no ratio.
#include <dlfcn.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "autograd/engine.h"
#include "autograd/exact_grad.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/cpu/parallel.h"
#include "core/ops/linalg.h"
#include "json_line.h"

using namespace mnemo;

namespace {

using bench::JsonLine;

// ---- timing ---------------------------------------------------------------------------------

struct Timing {
  double median = 0;  // seconds
  double best = 0;
};

Timing summarize(std::vector<double> times) {
  std::sort(times.begin(), times.end());
  return {times[times.size() / 2], times.front()};
}

double seconds_of(const std::function<void()>& fn) {
  auto start = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Times each of fns (3 warm-up calls each), calling them in turn so that all see the same
// machine load, until every one has at least 20 runs and 0.5 s (at most 500 runs).
std::vector<Timing> time_interleaved(const std::vector<std::function<void()>>& fns) {
  for (const auto& fn : fns) {
    for (int i = 0; i < 3; ++i) fn();
  }
  std::vector<std::vector<double>> times(fns.size());
  double total = 0;
  while ((times[0].size() < 20 || total < 0.5 * double(fns.size())) && times[0].size() < 500) {
    for (size_t f = 0; f < fns.size(); ++f) {
      times[f].push_back(seconds_of(fns[f]));
      total += times[f].back();
    }
  }
  std::vector<Timing> out;
  for (auto& t : times) out.push_back(summarize(std::move(t)));
  return out;
}

Timing time_one(const std::function<void()>& fn) {
  return time_interleaved({fn})[0];
}

// The 1-minute load average (null where /proc/loadavg cannot be read): other processes on the
// machine distort the timings.
nlohmann::ordered_json load_average() {
  std::FILE* f = std::fopen("/proc/loadavg", "r");
  if (!f) return nullptr;
  char buffer[64] = {};
  const bool ok = std::fgets(buffer, sizeof(buffer), f) != nullptr;
  std::fclose(f);
  if (!ok) return nullptr;
  return std::strtod(buffer, nullptr);
}

Tensor random_tensor(const Shape& shape, uint64_t seed, double lo = -1, double hi = 1) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist{float(lo), float(hi)};
  std::vector<float> values(size_t(numel(shape)));
  for (float& v : values) v = dist(rng);
  return from_vector(values, shape);
}

// ---- the OpenBLAS peer ----------------------------------------------------------------------

struct OpenBlas {
  // cblas_sgemm(order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
  using Sgemm = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int,
                         float, float*, int);
  static constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;
  Sgemm sgemm = nullptr;
  std::string library;  // the file the dynamic loader resolved
  std::string error;

  // The OpenMP build of OpenBLAS is preferred when installed (Debian's libopenblas0-openmp):
  // it shares mnemo's OpenMP runtime, whereas the pthreads build keeps its threads spinning
  // after each call, stealing cores from the mnemo call that follows when the two alternate.
  // MNEMO_BENCH_OPENBLAS overrides the choice with a file name for dlopen.
  static OpenBlas load(int threads) {
    OpenBlas blas;
    std::vector<std::string> candidates = {
        "/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0", "libopenblas.so.0"};
    if (const char* path = std::getenv("MNEMO_BENCH_OPENBLAS")) candidates = {path};
    void* handle = nullptr;
    for (const std::string& name : candidates) {
      if ((handle = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL))) break;
      blas.error = dlerror();
    }
    if (!handle) return blas;
    blas.sgemm = reinterpret_cast<Sgemm>(dlsym(handle, "cblas_sgemm"));
    if (!blas.sgemm) {
      blas.error = "libopenblas.so.0 has no cblas_sgemm";
      return blas;
    }
    if (auto set = reinterpret_cast<void (*)(int)>(dlsym(handle, "openblas_set_num_threads"))) {
      set(threads);
    }
    Dl_info info;
    if (dladdr(reinterpret_cast<void*>(blas.sgemm), &info) && info.dli_fname) {
      blas.library = info.dli_fname;
    }
    return blas;
  }
};

// ---- gemm -----------------------------------------------------------------------------------

struct GemmShape {
  const char* what;  // which product of the training step it is
  int64_t m, n, k;
  bool trans_a, trans_b;
};

// The products of one step of a small LM: 2048 rows (batch * seq), hidden 128, MLP 384,
// vocab 512. Forward uses x @ W^T (trans_b); backward dX = dY @ W and dW = dY^T @ X (trans_a).
const std::vector<GemmShape> kGemmShapes = {
    {"mlp_up forward x@W^T", 2048, 384, 128, false, true},
    {"mlp_down forward h@W^T", 2048, 128, 384, false, true},
    {"lm_head forward x@W^T", 2048, 512, 128, false, true},
    {"mlp_up backward dX=dY@W", 2048, 128, 384, false, false},
    {"mlp_down backward dX=dY@W", 2048, 384, 128, false, false},
    {"lm_head backward dX=dY@W", 2048, 128, 512, false, false},
    {"mlp_up backward dW=dY^T@X", 384, 128, 2048, true, false},
    {"mlp_down backward dW=dY^T@X", 128, 384, 2048, true, false},
    {"lm_head backward dW=dY^T@X", 512, 128, 2048, true, false},
    {"square", 1024, 1024, 1024, false, false},
};

// One JSON line for the product s; returns the median seconds of mnemo and OpenBLAS (0 when
// OpenBLAS is missing).
std::pair<double, double> bench_gemm(const GemmShape& s, const OpenBlas& blas, int threads,
                                     const char* bench = "gemm") {
  // Stored operands; the transposed ones are views, as autograd hands them to matmul.
  Tensor a_store = random_tensor(s.trans_a ? Shape{s.k, s.m} : Shape{s.m, s.k}, 1);
  Tensor b_store = random_tensor(s.trans_b ? Shape{s.n, s.k} : Shape{s.k, s.n}, 2);
  Tensor a = s.trans_a ? transpose(a_store, 0, 1) : a_store;
  Tensor b = s.trans_b ? transpose(b_store, 0, 1) : b_store;
  const double gflop = 2.0 * double(s.m) * double(s.n) * double(s.k) * 1e-9;
  std::function<void()> ours = [&] { core::matmul(a, b); };
  JsonLine line(bench);
  line.set("what", s.what).set("m", s.m).set("n", s.n).set("k", s.k);
  line.set("trans_a", s.trans_a).set("trans_b", s.trans_b).set("threads", threads);
  if (!blas.sgemm) {
    const Timing t = time_one(ours);
    line.fixed("mnemo_ms", t.median * 1e3, 4).fixed("mnemo_gflops", gflop / t.median, 2);
    line.set("openblas", "skipped: " + blas.error).print();
    return {t.median, 0.0};
  }
  std::vector<float> c(size_t(s.m * s.n));
  std::function<void()> theirs = [&] {
    blas.sgemm(OpenBlas::kRowMajor, s.trans_a ? OpenBlas::kTrans : OpenBlas::kNoTrans,
               s.trans_b ? OpenBlas::kTrans : OpenBlas::kNoTrans, int(s.m), int(s.n), int(s.k),
               1.0f, a_store.data<float>(), int(a_store.size(1)), b_store.data<float>(),
               int(b_store.size(1)), 0.0f, c.data(), int(s.n));
  };
  // Validate before timing: both libraries compute the same product.
  theirs();
  const std::vector<float> result = core::matmul(a, b).to_vector<float>();
  double max_diff = 0, max_ref = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    max_diff = std::max(max_diff, double(std::abs(result[i] - c[i])));
    max_ref = std::max(max_ref, double(std::abs(c[i])));
  }
  const std::vector<Timing> t = time_interleaved({ours, theirs});
  line.fixed("mnemo_ms", t[0].median * 1e3, 4).fixed("mnemo_gflops", gflop / t[0].median, 2);
  line.fixed("openblas_ms", t[1].median * 1e3, 4);
  line.fixed("openblas_gflops", gflop / t[1].median, 2);
  line.fixed("ratio", t[1].median / t[0].median, 3);
  line.fixed("mnemo_best_gflops", gflop / t[0].best, 2);
  line.fixed("openblas_best_gflops", gflop / t[1].best, 2);
  line.fixed("ratio_best", t[1].best / t[0].best, 3);
  line.significant("max_rel_diff", max_diff / max_ref, 3).print();
  return {t[0].median, t[1].median};
}

// The projection products of one demo training step; `count` = how often each runs per step.
struct StepGemm {
  GemmShape shape;
  int count;
};
std::vector<StepGemm> llama_step_gemms() {
  const int64_t rows = 16 * 128, hidden = 128, layers = 4, vocab = 512;
  struct Projection {
    const char* name;
    int64_t in, out, count;
  };
  const std::vector<Projection> projections = {{"qkv", hidden, 3 * hidden, layers},
                                               {"o", hidden, hidden, layers},
                                               {"gate_up", hidden, 2 * 384, layers},
                                               {"down", 384, hidden, layers},
                                               {"lm_head", hidden, vocab, 1}};
  static std::vector<std::string> names;  // GemmShape holds const char*
  names.clear();
  names.reserve(projections.size() * 3);
  std::vector<StepGemm> out;
  for (const Projection& p : projections) {
    names.push_back(fmt::format("{} forward Y=X@W^T", p.name));
    out.push_back({{names.back().c_str(), rows, p.out, p.in, false, true}, int(p.count)});
    names.push_back(fmt::format("{} backward dX=dY@W", p.name));
    out.push_back({{names.back().c_str(), rows, p.in, p.out, false, false}, int(p.count)});
    names.push_back(fmt::format("{} backward dW=dY^T@X", p.name));
    out.push_back({{names.back().c_str(), p.out, p.in, rows, true, false}, int(p.count)});
  }
  return out;
}

void bench_llama_gemms(const OpenBlas& blas, int threads) {
  double ours = 0, theirs = 0, flop = 0;
  for (const StepGemm& g : llama_step_gemms()) {
    const auto [m, o] = bench_gemm(g.shape, blas, threads, "llama_gemm");
    ours += g.count * m;
    theirs += g.count * o;
    flop += g.count * 2.0 * double(g.shape.m * g.shape.n * g.shape.k);
  }
  JsonLine("llama_gemms_step")
      .set("threads", threads)
      .fixed("gflop_per_step", flop * 1e-9, 3)
      .fixed("mnemo_ms", ours * 1e3, 3)
      .fixed("openblas_ms", theirs * 1e3, 3)
      .fixed("ratio", theirs > 0 ? theirs / ours : 0.0, 3)
      .print();
}

// The cost of exact (split-invariant) weight gradients against the plain single GEMM.
void bench_exact_grads(int threads) {
  double plain_total = 0, exact_total = 0;
  for (const StepGemm& g : llama_step_gemms()) {
    if (!g.shape.trans_a) continue;  // the dW = dY^T @ X products only
    const int64_t rows = g.shape.k, out = g.shape.m, in = g.shape.n;
    const Tensor dY = random_tensor({rows, out}, 1), X = random_tensor({rows, in}, 2);
    const Tensor dYt = transpose(dY, 0, 1);
    const std::vector<Timing> t = time_interleaved({
        [&] { matmul(dYt, X); },
        [&] {
          NoGradGuard no_grad;
          autograd::ExactGradGuard exact(128);
          autograd::row_product_sum(dY, X);
        },
    });
    plain_total += g.count * t[0].median;
    exact_total += g.count * t[1].median;
    JsonLine("exact_grads")
        .set("product", g.shape.what)
        .set("threads", threads)
        .fixed("plain_ms", t[0].median * 1e3, 3)
        .fixed("exact_ms", t[1].median * 1e3, 3)
        .fixed("ratio", t[1].median / t[0].median, 3)
        .print();
  }
  JsonLine("exact_grads_step")
      .set("threads", threads)
      .fixed("plain_ms", plain_total * 1e3, 3)
      .fixed("exact_ms", exact_total * 1e3, 3)
      .fixed("extra_ms", (exact_total - plain_total) * 1e3, 3)
      .print();
}

// ---- memory-bound ops -----------------------------------------------------------------------

// One line for an op that streams `bytes` through memory per call.
template <typename Fn>
void bench_bandwidth(const std::string& name, const Shape& shape, double bytes, int threads,
                     Fn&& fn) {
  try {
    const Timing t = time_one(fn);
    JsonLine(name)
        .set("shape", shape_str(shape))
        .set("threads", threads)
        .fixed("ms", t.median * 1e3, 4)
        .fixed("gb_per_s", bytes / t.median * 1e-9, 2)
        .fixed("best_gb_per_s", bytes / t.best * 1e-9, 2)
        .print();
  } catch (const Error& e) {
    JsonLine(name).set("shape", shape_str(shape)).set("skipped", e.what()).print();
  }
}

void bench_topk(const Shape& shape, int64_t k, int threads) {
  Tensor x = random_tensor(shape, 5, -1, 1);
  const double bytes = double(numel(shape)) * sizeof(float);
  bench_bandwidth(fmt::format("topk_{}", k), shape, bytes, threads,
                  [&] { core::topk(x, k, -1, true); });
}

void bench_softmax(const Shape& shape, int threads) {
  Tensor x = random_tensor(shape, 3, -4, 4);
  Tensor dy = random_tensor(shape, 4);
  const double bytes = double(numel(shape)) * sizeof(float);
  Tensor y = core::softmax(x, -1), ly = core::log_softmax(x, -1);
  bench_bandwidth("softmax", shape, 2 * bytes, threads, [&] { core::softmax(x, -1); });
  bench_bandwidth("log_softmax", shape, 2 * bytes, threads, [&] { core::log_softmax(x, -1); });
  bench_bandwidth("softmax_dim0", shape, 2 * bytes, threads, [&] { core::softmax(x, 0); });
  bench_bandwidth("softmax_backward", shape, 3 * bytes, threads,
                  [&] { core::softmax_backward(y, dy, -1); });
  bench_bandwidth("log_softmax_backward", shape, 3 * bytes, threads,
                  [&] { core::log_softmax_backward(ly, dy, -1); });

  // Fused cross-entropy over the rows (class ids uniform in [0, C)).
  const int64_t N = shape[0], C = shape[1];
  std::mt19937_64 rng(5);
  std::vector<int64_t> ids(static_cast<size_t>(N));
  for (int64_t& id : ids) id = int64_t(rng() % uint64_t(C));
  Tensor target = from_vector(ids, {N});
  core::CrossEntropyOutput ce = core::cross_entropy(x, target);
  Tensor dloss = full({N}, 1.0 / double(N));
  bench_bandwidth("cross_entropy", shape, bytes, threads, [&] { core::cross_entropy(x, target); });
  bench_bandwidth("cross_entropy_backward", shape, 2 * bytes, threads,
                  [&] { core::cross_entropy_backward(x, target, ce.lse, dloss); });
}

void bench_rms_norm(const Shape& shape, int threads) {
  Tensor x = random_tensor(shape, 6);
  Tensor weight = random_tensor({shape.back()}, 7, 0.5, 1.5);
  const double bytes = double(numel(shape)) * sizeof(float);
  bench_bandwidth("rms_norm", shape, 2 * bytes, threads, [&] { rms_norm(x, weight); });
}

// ---- an MLP training step -------------------------------------------------------------------

void bench_mlp(int threads) {
  const int64_t batch = 256, in = 784, hidden = 512, classes = 10;
  const double lr = 0.05;
  Tensor x = random_tensor({batch, in}, 8, 0, 1);
  std::mt19937_64 rng(9);
  std::vector<int64_t> labels(static_cast<size_t>(batch));
  for (int64_t& l : labels) l = int64_t(rng() % uint64_t(classes));
  Tensor y = from_vector(labels, {batch});
  // Uniform init in +-1/sqrt(fan_in), like PyTorch's nn.Linear.
  TensorList params = {
      random_tensor({hidden, in}, 10, -1 / std::sqrt(in), 1 / std::sqrt(in)),
      random_tensor({hidden}, 11, -1 / std::sqrt(in), 1 / std::sqrt(in)),
      random_tensor({classes, hidden}, 12, -1 / std::sqrt(hidden), 1 / std::sqrt(hidden)),
      random_tensor({classes}, 13, -1 / std::sqrt(hidden), 1 / std::sqrt(hidden))};
  for (Tensor& p : params) p.set_requires_grad(true);

  double loss_value = 0;
  auto step = [&] {
    Tensor h = relu(linear(x, params[0], params[1]));
    Tensor loss = cross_entropy(linear(h, params[2], params[3]), y);
    backward(loss);
    NoGradGuard no_grad;
    for (const Tensor& p : params) {
      sub_(p, mul(p.grad(), lr));
      p.set_grad(Tensor());
    }
    loss_value = loss.item();
  };
  // Validate: the loss on this fixed batch goes down.
  step();
  const double first = loss_value;
  for (int i = 0; i < 20; ++i) step();
  const double last = loss_value;
  const double s = time_one(step).median;
  JsonLine("mlp_sgd_step")
      .set("batch", batch)
      .set("layers", fmt::format("{}-{}-{}", in, hidden, classes))
      .set("threads", threads)
      .fixed("ms_per_step", s * 1e3, 3)
      .fixed("samples_per_s", double(batch) / s, 0)
      .fixed("loss_first", first, 4)
      .fixed("loss_after_21_steps", last, 4)
      .print();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::atoi(argv[1]) > 0) set_num_threads(std::atoi(argv[1]));
  const std::string only = argc > 2 ? argv[2] : "";  // run one section: gemm, softmax, ...
  auto wanted = [&](const char* section) { return only.empty() || only == section; };
  const bool llama_gemms = only == "llama_gemms";
  const int threads = num_threads();
  const OpenBlas blas = OpenBlas::load(threads);
  JsonLine("setup")
      .set("threads", threads)
      .set("openblas", blas.sgemm ? blas.library : "not found: " + blas.error)
      .set("load_average_1min", load_average())
      .print();
  if (wanted("gemm")) {
    for (const GemmShape& s : kGemmShapes) bench_gemm(s, blas, threads);
  }
  if (llama_gemms) bench_llama_gemms(blas, threads);
  if (only == "exact_grads") bench_exact_grads(threads);
  if (wanted("softmax")) {
    bench_softmax({2048, 512}, threads);
    bench_softmax({8192, 4096}, threads);
  }
  if (wanted("rms_norm")) {
    bench_rms_norm({2048, 128}, threads);
    bench_rms_norm({8192, 4096}, threads);
  }
  if (wanted("mlp")) bench_mlp(threads);
  if (wanted("topk")) {
    for (int64_t n : {40, 160, 1024, 4096}) bench_topk({2560, n}, 32, threads);
  }
  JsonLine("done").set("load_average_1min", load_average()).print();
  return 0;
}

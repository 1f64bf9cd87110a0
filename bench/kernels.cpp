// kernels: the benchmarks of the fast CUDA kernels on one GPU (flash attention forward and
// backward, RMSNorm, fused cross-entropy, scan, AdamW), one JSON object per line on stdout.
// bench/peer/kernels_torch.py times PyTorch on the same cases with the same method, and
// scripts/gpu-check.sh merges the two into results.json's `kernels` object.
//
//   build/bench/kernels [--max-seconds S] [--only NAME] [--no-reference]
//
//   --max-seconds S  stop starting new cases after S seconds (default 120); the cases left
//                    out print {"skipped": "time budget"}
//   --only NAME      run only the cases whose name starts with NAME (e.g. attention_fwd)
//   --no-reference   leave out the reference ("kernel1") kernels
//
// Every line has "bench": "kernels" and "name":
//   peak           copy_gbps: a 1 GiB device-to-device copy, bytes read + written;
//                  gemm_bf16_tflops: core::matmul 8192^3 in bf16 (cuBLASLt, f32 accumulation).
//                  Measured first, in the same run: the ceilings every kernel is held to.
//   attention_fwd, attention_bwd   "case": "bf16 B4 H16 T4096 d128 causal" (or "full"):
//                  B*T = 16384 tokens, H*d = 2048, T in {512, 1k, 2k, 4k, 8k}, d in {64, 128},
//                  causal and not. FLOPs: forward 4 B H T^2 d (halved when causal), backward
//                  2.5x the forward; "tflops" and "pct_gemm" (percent of gemm_bf16_tflops).
//                  "impl": "fast" (KernelChoice::fast: flash attention where it applies) and
//                  "reference" (the kernel1, only at T = 512: it runs below 1 TFLOP/s).
//   rms_norm_fwd/_bwd (16384 x 4096), cross_entropy_fwd/_bwd (16384 x 50257, i64 targets),
//   scan_fwd/_bwd (B 8, T 4096, C 2048, no h0), adamw (100M parameters, f32 moments):
//                  f32 and bf16, "gbps" = bytes / time and "pct_copy" (percent of copy_gbps).
//                  "bytes" is the least traffic the op needs: each input read once, each output
//                  written once (formulas in bytes_* below; the PyTorch peer uses the same).
//                  "impl": "fast"; bf16 also "reference".
//   summary        the figures gpu-check reports, as fractions of copy_gbps (0.8 = 80%):
//                  rmsnorm_pct_bw, xent_pct_bw, scan_pct_bw = (forward + backward bytes) /
//                  (forward + backward time) at bf16; adamw_pct_bw at f32; attn_fwd_tflops and
//                  attn_bwd_tflops at bf16, d 128, causal, T 4096.
//   A case that throws prints {"error": message} and the run goes on.
//
// Method: CUDA events recorded on the device's compute stream (cuda::stream(0), where every
// op of the backend runs) around each call, so the times are GPU times, not host dispatch.
// Each case builds 3 sets of inputs (2 for cross-entropy and AdamW, which are GBs) and the
// calls rotate through them, so a call never finds its inputs in the 50 MB L2 left by the
// previous one. Warm-up: one call per input set. Then as many timed calls as fit in about
// 0.25 s (at least 5, at most 30; 3 when one call takes over 0.5 s), and the median.
// Inputs: uniform random (q, k, v, x in [-1, 1); scan's a in [0.999, 1)), never zeros.
#include <cuda_runtime_api.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/ops/linalg.h"
#include "core/ops/nn.h"
#include "core/ops/optim.h"
#include "core/ops/random.h"
#include "core/ops/view.h"
#include "cuda/context.h"
#include "cuda/runtime.h"
#include "json_line.h"

namespace mnemo {
namespace {

const Device kGpu = Device::cuda(0);
using Clock = std::chrono::steady_clock;

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    fail("bench kernels: {} failed: {}", what, cudaGetErrorString(status));
  }
}

// ---- JSON lines: {"bench": "kernels", "name": ..., ...} (bench/json_line.h) ----

using bench::JsonLine;

JsonLine kernel_line(const std::string& name) {
  return JsonLine("kernels").set("name", name);
}

// ---- timing ----

struct Timing {
  double ms = 0;  // median GPU milliseconds per call
  int reps = 0;
};

// Times fn(i) (i selects the input set, 0 <= i < sets) with CUDA events on the compute stream.
Timing time_gpu(int sets, const std::function<void(int)>& fn) {
  cudaStream_t stream = cuda::stream(kGpu);
  // Warm-up, one call per input set (lazy module loading, allocator, cuBLASLt heuristics).
  // A call slower than 0.5 s needs no more warming and gets only 3 timed calls.
  bool slow = false;
  for (int i = 0; i < sets && !slow; ++i) {
    const auto start = Clock::now();
    fn(i);
    synchronize(kGpu);
    slow = std::chrono::duration<double>(Clock::now() - start).count() > 0.5;
  }
  cudaEvent_t a, b;
  check(cudaEventCreate(&a), "cudaEventCreate");
  check(cudaEventCreate(&b), "cudaEventCreate");
  float estimate_ms = 0;
  if (!slow) {
    check(cudaEventRecord(a, stream), "cudaEventRecord");
    fn(0);
    check(cudaEventRecord(b, stream), "cudaEventRecord");
    check(cudaEventSynchronize(b), "cudaEventSynchronize");
    check(cudaEventElapsedTime(&estimate_ms, a, b), "cudaEventElapsedTime");
  }
  check(cudaEventDestroy(a), "cudaEventDestroy");
  check(cudaEventDestroy(b), "cudaEventDestroy");
  const int reps =
      slow ? 3 : std::clamp(static_cast<int>(250.0 / std::max(estimate_ms, 1e-3f)), 5, 30);

  std::vector<cudaEvent_t> events(2 * reps);
  for (cudaEvent_t& e : events) check(cudaEventCreate(&e), "cudaEventCreate");
  for (int r = 0; r < reps; ++r) {
    check(cudaEventRecord(events[2 * r], stream), "cudaEventRecord");
    fn(r % sets);
    check(cudaEventRecord(events[2 * r + 1], stream), "cudaEventRecord");
  }
  check(cudaEventSynchronize(events.back()), "cudaEventSynchronize");
  std::vector<double> ms(reps);
  for (int r = 0; r < reps; ++r) {
    float t = 0;
    check(cudaEventElapsedTime(&t, events[2 * r], events[2 * r + 1]), "cudaEventElapsedTime");
    ms[r] = t;
  }
  for (cudaEvent_t e : events) check(cudaEventDestroy(e), "cudaEventDestroy");
  std::sort(ms.begin(), ms.end());
  return {ms[reps / 2], reps};  // the upper median for even counts, as the peer does
}

// ---- the run ----

struct Options {
  double max_seconds = 120;
  std::string only;
  bool reference = true;
};

struct Peaks {
  double copy_gbps = 0;
  double gemm_tflops = 0;
};

// Uniform in [lo, hi), drawn in f32 and rounded to dtype.
Tensor random_gpu(const Shape& shape, DType dtype, double lo = -1, double hi = 1) {
  return core::to(uniform(shape, lo, hi, {DType::f32, kGpu}), dtype);
}

double dtype_bytes(DType dtype) {
  return static_cast<double>(dtype_size(dtype));
}

class Runner {
 public:
  explicit Runner(Options options) : options_(std::move(options)), start_(Clock::now()) {}

  // Runs one case (name, case, impl): skipped when filtered or past the time budget; a throw
  // becomes an "error" line. measure() returns the timing; report() adds the rate fields.
  std::optional<Timing> run(const std::string& name, const std::string& what,
                            const std::string& impl, const std::function<Timing()>& measure,
                            const std::function<void(JsonLine&, const Timing&)>& report) {
    if (!wanted(name)) return std::nullopt;
    JsonLine line = kernel_line(name);
    line.set("impl", impl).set("case", what);
    if (out_of_time()) {
      line.set("skipped", "time budget").print();
      return std::nullopt;
    }
    try {
      const Timing t = measure();
      line.significant("ms", t.ms);
      report(line, t);
      line.set("reps", t.reps).print();
      return t;
    } catch (const std::exception& e) {
      line.set("error", e.what()).print();
      return std::nullopt;
    }
  }

  // --only NAME: a case runs if its name starts with NAME; a group (bench_* below) builds its
  // inputs if its prefix ("rms_norm") starts with NAME or NAME starts with it.
  bool wanted(const std::string& name) const {
    return options_.only.empty() || name.rfind(options_.only, 0) == 0;
  }
  bool wanted_group(const std::string& prefix) const {
    return wanted(prefix) || options_.only.rfind(prefix, 0) == 0;
  }
  bool out_of_time() const {
    return std::chrono::duration<double>(Clock::now() - start_).count() > options_.max_seconds;
  }
  const Options& options() const { return options_; }

 private:
  Options options_;
  Clock::time_point start_;
};

Peaks measure_peaks() {
  Peaks peaks;
  {
    const int64_t n = int64_t(1) << 28;  // 1 GiB of f32
    Tensor src = random_gpu({n}, DType::f32), dst = Tensor::empty({n}, DType::f32, kGpu);
    const Timing t = time_gpu(1, [&](int) { copy_(dst, src); });
    peaks.copy_gbps = 2.0 * 4 * double(n) / (t.ms * 1e-3) / 1e9;
  }
  {
    const int64_t m = 8192;
    std::vector<Tensor> a, b;
    for (int i = 0; i < 2; ++i) {
      a.push_back(random_gpu({m, m}, DType::bf16));
      b.push_back(random_gpu({m, m}, DType::bf16));
    }
    const Timing t = time_gpu(2, [&](int i) { core::matmul(a[i], b[i]); });
    peaks.gemm_tflops = 2.0 * double(m) * m * m / (t.ms * 1e-3) / 1e12;
  }
  kernel_line("peak")
      .significant("copy_gbps", peaks.copy_gbps)
      .significant("gemm_bf16_tflops", peaks.gemm_tflops)
      .set("device", cuda::describe_devices())
      .print();
  return peaks;
}

// The summary's inputs, filled as the cases run (-1: not measured).
struct Summary {
  double attn_fwd_tflops = -1, attn_bwd_tflops = -1;
  double rms_bytes = 0, rms_ms = 0, xent_bytes = 0, xent_ms = 0, scan_bytes = 0, scan_ms = 0;
  int rms_parts = 0, xent_parts = 0, scan_parts = 0;
  double adamw_frac = -1;
};

// ---- attention ----

void bench_attention(Runner& runner, const Peaks& peaks, Summary& summary) {
  const int64_t tokens = 16384, width = 2048;
  const int sets = 3;
  for (int64_t T : {512, 1024, 2048, 4096, 8192}) {
    for (int64_t d : {64, 128}) {
      for (bool causal : {false, true}) {
        if (!runner.wanted_group("attention")) return;
        const int64_t B = tokens / T, H = width / d;
        const std::string what =
            fmt::format("bf16 B{} H{} T{} d{} {}", B, H, T, d, causal ? "causal" : "full");
        AttentionOptions options;
        options.causal = causal;
        const double fwd_flops = 4.0 * B * H * T * T * d / (causal ? 2 : 1);
        const double bwd_flops = 2.5 * fwd_flops;
        const bool target_case = T == 4096 && d == 128 && causal;
        std::vector<Tensor> q, k, v, dout;
        try {
          for (int i = 0; i < sets; ++i) {
            q.push_back(random_gpu({B, H, T, d}, DType::bf16));
            k.push_back(random_gpu({B, H, T, d}, DType::bf16));
            v.push_back(random_gpu({B, H, T, d}, DType::bf16));
            dout.push_back(random_gpu({B, H, T, d}, DType::bf16));
          }
        } catch (const std::exception& e) {
          kernel_line("attention_fwd").set("case", what).set("error", e.what()).print();
          continue;
        }
        std::vector<std::pair<std::string, cuda::KernelChoice>> impls{
            {"fast", cuda::KernelChoice::fast}};
        if (runner.options().reference && T == 512) {
          impls.emplace_back("reference", cuda::KernelChoice::reference);
        }
        for (const auto& [impl, choice] : impls) {
          cuda::KernelChoiceGuard guard(choice);
          auto rate = [&](double flops) {
            return [&peaks, flops](JsonLine& line, const Timing& t) {
              const double tflops = flops / (t.ms * 1e-3) / 1e12;
              line.significant("tflops", tflops)
                  .significant("pct_gemm", 100 * tflops / peaks.gemm_tflops);
            };
          };
          auto fwd = runner.run(
              "attention_fwd", what, impl,
              [&] {
                return time_gpu(sets, [&](int i) { core::attention(q[i], k[i], v[i], options); });
              },
              rate(fwd_flops));
          // The backward's saved forward (out, lse) from the same kernel choice.
          std::vector<core::AttentionOutput> saved;
          auto bwd = runner.run(
              "attention_bwd", what, impl,
              [&] {
                for (int i = 0; i < sets; ++i) {
                  saved.push_back(core::attention(q[i], k[i], v[i], options));
                }
                return time_gpu(sets, [&](int i) {
                  core::attention_backward(q[i], k[i], v[i], options, saved[i].out, saved[i].lse,
                                           dout[i]);
                });
              },
              rate(bwd_flops));
          if (target_case && impl == "fast") {
            if (fwd) summary.attn_fwd_tflops = fwd_flops / (fwd->ms * 1e-3) / 1e12;
            if (bwd) summary.attn_bwd_tflops = bwd_flops / (bwd->ms * 1e-3) / 1e12;
          }
        }
      }
    }
  }
}

// ---- bandwidth-bound kernels ----
// bytes_*: the least traffic of each op (s = element size of the data dtype; stats are f32).

double bytes_rms_fwd(double N, double C, double s) {
  return 2 * N * C * s + C * s + 4 * N;
}
double bytes_rms_bwd(double N, double C, double s) {
  return 3 * N * C * s + 2 * C * s + 4 * N;
}
double bytes_xent_fwd(double N, double C, double s) {
  return N * C * s + N * (8 + s + 4);
}
double bytes_xent_bwd(double N, double C, double s) {
  return 2 * N * C * s + N * (8 + s + 4);
}
double bytes_scan_fwd(double n, double s) {
  return 3 * n * s;
}
double bytes_scan_bwd(double n, double s) {
  return 5 * n * s;
}
// AdamW: the parameter read and written, the gradient read, both f32 moments read and written.
double bytes_adamw(double n, double s) {
  return n * (3 * s + 16);
}

// Runs one bandwidth case for each impl of `dtype` (fast; bf16 also reference) and adds the
// fast one to the summary's byte and time totals.
void bandwidth_case(Runner& runner, const Peaks& peaks, const std::string& name,
                    const std::string& what, DType dtype, double bytes,
                    const std::function<void(int)>& fn, int sets, double* sum_bytes, double* sum_ms,
                    int* parts) {
  std::vector<std::pair<std::string, cuda::KernelChoice>> impls{{"fast", cuda::KernelChoice::fast}};
  if (runner.options().reference && dtype == DType::bf16) {
    impls.emplace_back("reference", cuda::KernelChoice::reference);
  }
  for (const auto& [impl, choice] : impls) {
    cuda::KernelChoiceGuard guard(choice);
    auto t = runner.run(
        name, what, impl, [&] { return time_gpu(sets, fn); },
        [&](JsonLine& line, const Timing& t) {
          const double gbps = bytes / (t.ms * 1e-3) / 1e9;
          line.significant("gbps", gbps)
              .significant("pct_copy", 100 * gbps / peaks.copy_gbps)
              .significant("bytes", bytes);
        });
    if (t && impl == "fast" && sum_bytes != nullptr) {
      *sum_bytes += bytes;
      *sum_ms += t->ms;
      ++*parts;
    }
  }
}

void bench_rms_norm(Runner& runner, const Peaks& peaks, Summary& summary) {
  const int64_t N = 16384, C = 4096;
  const int sets = 3;
  for (DType dtype : {DType::f32, DType::bf16}) {
    if (!runner.wanted_group("rms_norm")) return;
    const std::string what = fmt::format("{} {}x{}", dtype_name(dtype), N, C);
    const double s = dtype_bytes(dtype);
    const bool sum = dtype == DType::bf16;
    std::vector<Tensor> x, w, dy, rstd;
    for (int i = 0; i < sets; ++i) {
      x.push_back(random_gpu({N, C}, dtype));
      w.push_back(random_gpu({C}, dtype));
      dy.push_back(random_gpu({N, C}, dtype));
      rstd.push_back(core::rms_norm(x[i], w[i], 1e-5).rstd);
    }
    bandwidth_case(
        runner, peaks, "rms_norm_fwd", what, dtype, bytes_rms_fwd(N, C, s),
        [&](int i) { core::rms_norm(x[i], w[i], 1e-5); }, sets, sum ? &summary.rms_bytes : nullptr,
        &summary.rms_ms, &summary.rms_parts);
    bandwidth_case(
        runner, peaks, "rms_norm_bwd", what, dtype, bytes_rms_bwd(N, C, s),
        [&](int i) { core::rms_norm_backward(x[i], w[i], rstd[i], dy[i]); }, sets,
        sum ? &summary.rms_bytes : nullptr, &summary.rms_ms, &summary.rms_parts);
  }
}

void bench_cross_entropy(Runner& runner, const Peaks& peaks, Summary& summary) {
  const int64_t N = 16384, C = 50257;
  const int sets = 2;  // 3.3 GB of f32 logits a set
  for (DType dtype : {DType::f32, DType::bf16}) {
    if (!runner.wanted_group("cross_entropy")) return;
    const std::string what = fmt::format("{} {}x{}", dtype_name(dtype), N, C);
    const double s = dtype_bytes(dtype);
    const bool sum = dtype == DType::bf16;
    std::vector<Tensor> logits, target, lse, dloss;
    for (int i = 0; i < sets; ++i) {
      logits.push_back(random_gpu({N, C}, dtype, -4, 4));
      target.push_back(randint(0, C, {N}, {DType::i64, kGpu}));
      lse.push_back(core::cross_entropy(logits[i], target[i]).lse);
      dloss.push_back(random_gpu({N}, dtype, 0, 1));
    }
    bandwidth_case(
        runner, peaks, "cross_entropy_fwd", what, dtype, bytes_xent_fwd(N, C, s),
        [&](int i) { core::cross_entropy(logits[i], target[i]); }, sets,
        sum ? &summary.xent_bytes : nullptr, &summary.xent_ms, &summary.xent_parts);
    bandwidth_case(
        runner, peaks, "cross_entropy_bwd", what, dtype, bytes_xent_bwd(N, C, s),
        [&](int i) { core::cross_entropy_backward(logits[i], target[i], lse[i], dloss[i]); }, sets,
        sum ? &summary.xent_bytes : nullptr, &summary.xent_ms, &summary.xent_parts);
  }
}

void bench_scan(Runner& runner, const Peaks& peaks, Summary& summary) {
  const int64_t B = 8, T = 4096, C = 2048;
  const int sets = 3;
  for (DType dtype : {DType::f32, DType::bf16}) {
    if (!runner.wanted_group("scan")) return;
    const std::string what = fmt::format("{} B{} T{} C{}", dtype_name(dtype), B, T, C);
    const double s = dtype_bytes(dtype), n = double(B) * T * C;
    const bool sum = dtype == DType::bf16;
    std::vector<Tensor> a, x, h, dh;
    for (int i = 0; i < sets; ++i) {
      a.push_back(random_gpu({B, T, C}, dtype, 0.999, 1.0));
      x.push_back(random_gpu({B, T, C}, dtype));
      h.push_back(core::scan(a[i], x[i], 1));
      dh.push_back(random_gpu({B, T, C}, dtype));
    }
    bandwidth_case(
        runner, peaks, "scan_fwd", what, dtype, bytes_scan_fwd(n, s),
        [&](int i) { core::scan(a[i], x[i], 1); }, sets, sum ? &summary.scan_bytes : nullptr,
        &summary.scan_ms, &summary.scan_parts);
    bandwidth_case(
        runner, peaks, "scan_bwd", what, dtype, bytes_scan_bwd(n, s),
        [&](int i) { core::scan_backward(a[i], h[i], 1, Tensor(), dh[i]); }, sets,
        sum ? &summary.scan_bytes : nullptr, &summary.scan_ms, &summary.scan_parts);
  }
}

void bench_adamw(Runner& runner, const Peaks& peaks, Summary& summary) {
  const int64_t n = 100'000'000;
  const int sets = 2;  // 1.6 GB a set in f32
  for (DType dtype : {DType::f32, DType::bf16}) {
    if (!runner.wanted_group("adamw")) return;
    const std::string what = fmt::format("{} n{}", dtype_name(dtype), n);
    std::vector<Tensor> param, grad, m, v;
    for (int i = 0; i < sets; ++i) {
      param.push_back(random_gpu({n}, dtype));
      grad.push_back(random_gpu({n}, dtype));
      m.push_back(random_gpu({n}, DType::f32, -1e-3, 1e-3));
      v.push_back(random_gpu({n}, DType::f32, 0, 1e-6));
    }
    AdamWParams params;
    params.weight_decay = 0.1;
    double bytes = 0, ms = 0;
    int parts = 0;
    bandwidth_case(
        runner, peaks, "adamw", what, dtype, bytes_adamw(double(n), dtype_bytes(dtype)),
        [&](int i) { adamw_(param[i], grad[i], m[i], v[i], params); }, sets, &bytes, &ms, &parts);
    if (dtype == DType::f32 && parts == 1) {
      summary.adamw_frac = bytes / (ms * 1e-3) / 1e9 / peaks.copy_gbps;
    }
  }
}

void print_summary(const Peaks& peaks, const Summary& s) {
  JsonLine line = kernel_line("summary");
  auto frac = [&](double bytes, double ms, int parts) {  // both directions measured, or null
    return parts == 2 ? bytes / (ms * 1e-3) / 1e9 / peaks.copy_gbps : NAN;
  };
  auto or_null = [](double x) { return x < 0 ? NAN : x; };
  line.significant("copy_gbps", peaks.copy_gbps)
      .significant("gemm_bf16_tflops", peaks.gemm_tflops)
      .significant("attn_fwd_tflops", or_null(s.attn_fwd_tflops))
      .significant("attn_bwd_tflops", or_null(s.attn_bwd_tflops))
      .significant("rmsnorm_pct_bw", frac(s.rms_bytes, s.rms_ms, s.rms_parts))
      .significant("xent_pct_bw", frac(s.xent_bytes, s.xent_ms, s.xent_parts))
      .significant("scan_pct_bw", frac(s.scan_bytes, s.scan_ms, s.scan_parts))
      .significant("adamw_pct_bw", or_null(s.adamw_frac))
      .print();
}

}  // namespace
}  // namespace mnemo

int main(int argc, char** argv) {
  using namespace mnemo;
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--max-seconds" && i + 1 < argc) {
      options.max_seconds = std::atof(argv[++i]);
    } else if (arg == "--only" && i + 1 < argc) {
      options.only = argv[++i];
    } else if (arg == "--no-reference") {
      options.reference = false;
    } else {
      std::fprintf(stderr, "usage: kernels [--max-seconds S] [--only NAME] [--no-reference]\n");
      return 2;
    }
  }
  if (cuda::device_count() == 0) {
    kernel_line("skipped").set("reason", cuda::no_device_reason()).print();
    return 0;
  }
  Peaks peaks;
  try {
    peaks = measure_peaks();
  } catch (const std::exception& e) {
    kernel_line("peak").set("error", e.what()).print();
    return 1;
  }
  Runner runner(options);
  Summary summary;
  // Each group on its own: an error while building one group's inputs (out of memory, a
  // kernel that throws) prints an error line and the next group runs.
  const std::vector<std::pair<const char*, void (*)(Runner&, const Peaks&, Summary&)>> groups{
      {"attention", bench_attention},
      {"rms_norm", bench_rms_norm},
      {"cross_entropy", bench_cross_entropy},
      {"scan", bench_scan},
      {"adamw", bench_adamw}};
  for (const auto& [name, bench] : groups) {
    try {
      bench(runner, peaks, summary);
    } catch (const std::exception& e) {
      kernel_line(name).set("error", e.what()).print();
    }
  }
  print_summary(peaks, summary);
  std::fprintf(stderr, "%s\n", cuda::describe_memory(0).c_str());
  return 0;
}

// bench_cuda: GPU throughput of mnemo's core ops, one JSON object on stdout.
//
//   copy_gbps            device-to-device copy of 1 GiB, counting bytes read + written: the
//                        practical memory bandwidth every bandwidth-bound kernel is held to
//   gemm_bf16_tflops     core::matmul 8192 x 8192 x 8192, bf16 in, f32 accumulation (cuBLASLt)
//   gemm_f32_tflops      4096^3 in f32 (TF32 off unless MNEMO_ALLOW_TF32=1)
//   softmax_gbps, rms_norm_gbps, cross_entropy_gbps (forward): bytes that must move / time,
//                        with *_pct_of_copy = that as a percent of copy_gbps
//   attention_fwd_ms, attention_bwd_ms: B 16, H 8, T 512, D 64, causal, f32 (and the TFLOP/s
//                        of the 4 B H T^2 D / 2 useful causal flops of the forward)
//
// Method: inputs are uniform random (never zeros), every measurement is warmed up, a sample
// times `reps` back-to-back calls between two synchronize() and the reported figure is the
// median of 9 samples. Without a GPU it prints {"bench": "cuda", "skipped": reason}.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "core/ops/linalg.h"
#include "core/ops/nn.h"
#include "core/ops/random.h"
#include "core/ops/view.h"
#include "cuda/runtime.h"
#include "json_line.h"

namespace mnemo {
namespace {

const Device kGpu = Device::cuda(0);

// Seconds per call of fn: median of 9 samples of `reps` calls each, after 2 warm-up calls.
double seconds_per_call(int reps, const std::function<void()>& fn) {
  for (int i = 0; i < 2; ++i) fn();
  synchronize(kGpu);
  std::vector<double> samples;
  for (int s = 0; s < 9; ++s) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) fn();
    synchronize(kGpu);
    samples.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / reps);
  }
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

Tensor random_gpu(const Shape& shape, DType dtype) {
  return to(to(uniform(shape, -1, 1, {DType::f32, kGpu}), dtype), kGpu);
}

}  // namespace
}  // namespace mnemo

int main() {
  using namespace mnemo;
  if (cuda::device_count() == 0) {
    bench::JsonLine("cuda").set("skipped", cuda::no_device_reason()).print();
    return 0;
  }
  bench::JsonLine line("cuda");  // every figure in one line, printed at the end
  auto add = [&](const std::string& key, double value) {
    line.fixed(key, value, 3);
    std::fprintf(stderr, "%s = %.3f\n", key.c_str(), value);
  };
  const double gb = 1e9;

  // Memory bandwidth.
  const int64_t n = int64_t(1) << 28;  // 1 GiB of f32
  Tensor src = random_gpu({n}, DType::f32), dst = Tensor::empty({n}, DType::f32, kGpu);
  const double copy_s = seconds_per_call(10, [&] { copy_(dst, src); });
  const double copy_gbps = 2.0 * 4 * double(n) / copy_s / gb;
  add("copy_gbps", copy_gbps);
  src = Tensor();
  dst = Tensor();

  // Matrix products.
  {
    const int64_t m = 8192;
    Tensor a = random_gpu({m, m}, DType::bf16), b = random_gpu({m, m}, DType::bf16);
    const double s = seconds_per_call(10, [&] { core::matmul(a, b); });
    add("gemm_bf16_tflops", 2.0 * double(m) * m * m / s / 1e12);
  }
  {
    const int64_t m = 4096;
    Tensor a = random_gpu({m, m}, DType::f32), b = random_gpu({m, m}, DType::f32);
    const double s = seconds_per_call(10, [&] { core::matmul(a, b); });
    add("gemm_f32_tflops", 2.0 * double(m) * m * m / s / 1e12);
  }

  // Row ops: bytes that must move (read x once, write y once) over time.
  auto bandwidth = [&](const std::string& name, double bytes, const std::function<void()>& fn) {
    const double gbps = bytes / seconds_per_call(20, fn) / gb;
    add(name + "_gbps", gbps);
    add(name + "_pct_of_copy", 100 * gbps / copy_gbps);
  };
  {
    Tensor x = random_gpu({16 * 8 * 512, 512}, DType::f32);  // attention-sized score rows
    bandwidth("softmax", 2.0 * 4 * double(x.numel()), [&] { core::softmax(x, -1); });
  }
  {
    Tensor x = random_gpu({16 * 512, 4096}, DType::f32), w = random_gpu({4096}, DType::f32);
    bandwidth("rms_norm", 2.0 * 4 * double(x.numel()), [&] { core::rms_norm(x, w, 1e-5); });
  }
  {
    Tensor logits = random_gpu({8192, 32000}, DType::f32);
    Tensor target = randint(0, 32000, {8192}, {DType::i64, kGpu});
    bandwidth("cross_entropy", 4.0 * double(logits.numel()),
              [&] { core::cross_entropy(logits, target); });
  }
  {
    const int64_t B = 16, H = 8, T = 512, D = 64;
    Tensor q = random_gpu({B, H, T, D}, DType::f32), k = random_gpu({B, H, T, D}, DType::f32),
           v = random_gpu({B, H, T, D}, DType::f32);
    AttentionOptions options;
    options.causal = true;
    core::AttentionOutput fwd = core::attention(q, k, v, options);
    const double fwd_s = seconds_per_call(5, [&] { core::attention(q, k, v, options); });
    add("attention_fwd_ms", fwd_s * 1e3);
    add("attention_fwd_tflops", 4.0 * B * H * T * T * D / 2 / fwd_s / 1e12);
    Tensor dout = random_gpu({B, H, T, D}, DType::f32);
    const double bwd_s = seconds_per_call(
        3, [&] { core::attention_backward(q, k, v, options, fwd.out, fwd.lse, dout); });
    add("attention_bwd_ms", bwd_s * 1e3);
  }
  line.set("memory", cuda::describe_memory(0)).print();
  return 0;
}

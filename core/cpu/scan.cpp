// The linear scan h_t = a_t * h_{t-1} + x_t on the CPU, forward and backward.
//
// x, h are contiguous (B, T, C) and a is (B, T, C) or (B, T, 1), one coefficient for all the
// channels of a step (the op layer arranges that). Channels are independent
// recurrences, so the work is cut into (b, channel chunk) tasks spread over threads; each task
// walks t = 0 .. T-1 carrying its chunk of the state in the compute type (f32 for bf16/f16,
// so the carried state is not rounded at every step), and the inner loop over the chunk's
// channels is contiguous in memory and vectorises. Every element is computed by exactly one
// task in a fixed order, so the result does not depend on the thread count.
//
// Backward (backend.h): with g_t = dL/dh_t in total (through the output and later steps),
//   g_t = dh_t + a_{t+1} g_{t+1},   dx_t = g_t,   da_t = g_t h_{t-1},   dh0 = a_0 g_0,
// walking t = T-1 .. 0 and carrying g; h_{-1} is h0 (zeros if undefined). With a (B, T, 1),
// da_t = sum over channels of g_t h_{t-1}: each task writes its chunk's partial sums, added
// in chunk order afterwards (so again independent of the thread count).
#include <algorithm>
#include <array>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/parallel.h"

namespace mnemo::cpu {

namespace {

constexpr int64_t kChunk = 64;  // channels per task: a few cache lines, one vector loop

// Channel chunks of C channels.
int64_t chunks_of(int64_t C) {
  return (C + kChunk - 1) / kChunk;
}

// fn(b, c0, n) over all (batch row, channel chunk) pairs, in parallel.
template <typename Fn>
void for_each_chunk(int64_t B, int64_t T, int64_t C, Fn&& fn) {
  const int64_t chunks = chunks_of(C);
  parallel_for(B * chunks, 3 * T * std::min(C, kChunk), [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / chunks, c0 = (task % chunks) * kChunk;
      fn(b, c0, std::min(kChunk, C - c0));
    }
  });
}

}  // namespace

void CpuBackend::scan(const Tensor& a, const Tensor& x, const Tensor& h0, const Tensor& h) {
  const int64_t B = h.size(0), T = h.size(1), C = h.size(2);
  const bool per_step = a.size(2) == 1 && C > 1;  // one coefficient for every channel
  visit_floating(h.dtype(), "scan", [&](auto tag) {
    using Scalar = typename decltype(tag)::type;
    using Acc = ComputeType<Scalar>;
    const Scalar* as = static_cast<const Scalar*>(a.data_ptr());
    const Scalar* xs = static_cast<const Scalar*>(x.data_ptr());
    const Scalar* h0s = h0.defined() ? static_cast<const Scalar*>(h0.data_ptr()) : nullptr;
    Scalar* hs = static_cast<Scalar*>(h.data_ptr());
    for_each_chunk(B, T, C, [&](int64_t b, int64_t c0, int64_t n) {
      std::array<Acc, kChunk> carry{};  // h_{t-1} for this chunk
      if (h0s) {
        for (int64_t c = 0; c < n; ++c) carry[c] = Acc(h0s[b * C + c0 + c]);
      }
      for (int64_t t = 0; t < T; ++t) {
        const int64_t off = (b * T + t) * C + c0;
        const Scalar* xt = xs + off;
        Scalar* ht = hs + off;
        if (per_step) {
          const Acc at = Acc(as[b * T + t]);
          for (int64_t c = 0; c < n; ++c) {
            carry[c] = at * carry[c] + Acc(xt[c]);
            ht[c] = Scalar(carry[c]);
          }
        } else {
          const Scalar* at = as + off;
          for (int64_t c = 0; c < n; ++c) {
            carry[c] = Acc(at[c]) * carry[c] + Acc(xt[c]);
            ht[c] = Scalar(carry[c]);
          }
        }
      }
    });
  });
}

void CpuBackend::scan_backward(const Tensor& a, const Tensor& h, const Tensor& h0, const Tensor& dh,
                               const Tensor& da, const Tensor& dx, const Tensor& dh0) {
  const int64_t B = h.size(0), T = h.size(1), C = h.size(2);
  const bool per_step = a.size(2) == 1 && C > 1;  // one coefficient for every channel
  const int64_t chunks = chunks_of(C);
  visit_floating(h.dtype(), "scan_backward", [&](auto tag) {
    using Scalar = typename decltype(tag)::type;
    using Acc = ComputeType<Scalar>;
    // per_step: chunk k's part of da[b, t] at partial[(b T + t) chunks + k]
    std::vector<Acc> partial(per_step ? size_t(B * T * chunks) : 0);
    const Scalar* as = static_cast<const Scalar*>(a.data_ptr());
    const Scalar* hs = static_cast<const Scalar*>(h.data_ptr());
    const Scalar* h0s = h0.defined() ? static_cast<const Scalar*>(h0.data_ptr()) : nullptr;
    const Scalar* dhs = static_cast<const Scalar*>(dh.data_ptr());
    Scalar* das = static_cast<Scalar*>(da.data_ptr());
    Scalar* dxs = static_cast<Scalar*>(dx.data_ptr());
    Scalar* dh0s = dh0.defined() ? static_cast<Scalar*>(dh0.data_ptr()) : nullptr;
    for_each_chunk(B, T, C, [&](int64_t b, int64_t c0, int64_t n) {
      std::array<Acc, kChunk> g{};       // g_t for this chunk
      std::array<Acc, kChunk> a_next{};  // a_{t+1} (0 past the end)
      const std::array<Scalar, kChunk> zeros{};
      for (int64_t t = T - 1; t >= 0; --t) {
        const int64_t off = (b * T + t) * C + c0;
        // h_{t-1}: the previous row of h, or h0 (zeros if undefined) at t = 0.
        const Scalar* h_prev = t > 0 ? hs + off - C : (h0s ? h0s + b * C + c0 : zeros.data());
        if (per_step) {
          Acc da_t = 0;
          for (int64_t c = 0; c < n; ++c) {
            g[c] = Acc(dhs[off + c]) + a_next[c] * g[c];
            dxs[off + c] = Scalar(g[c]);
            da_t += g[c] * Acc(h_prev[c]);
          }
          partial[size_t((b * T + t) * chunks + c0 / kChunk)] = da_t;
          std::fill(a_next.begin(), a_next.begin() + n, Acc(as[b * T + t]));
        } else {
          for (int64_t c = 0; c < n; ++c) {
            g[c] = Acc(dhs[off + c]) + a_next[c] * g[c];
            dxs[off + c] = Scalar(g[c]);
            das[off + c] = Scalar(g[c] * Acc(h_prev[c]));
            a_next[c] = Acc(as[off + c]);
          }
        }
      }
      if (dh0s) {  // a_next holds a_0 and g holds g_0 now
        for (int64_t c = 0; c < n; ++c) dh0s[b * C + c0 + c] = Scalar(a_next[c] * g[c]);
      }
    });
    for (int64_t row = 0; per_step && row < B * T; ++row) {
      Acc sum = 0;
      for (int64_t k = 0; k < chunks; ++k) sum += partial[size_t(row * chunks + k)];
      das[row] = Scalar(sum);
    }
  });
}

}  // namespace mnemo::cpu

// Scaled dot-product attention on the CPU, forward and backward.
//
// Shapes (backend.h): q (B, H, Tq, D), k (B, Hkv, Tk, D), v (B, Hkv, Tk, Dv), all contiguous;
// query head h reads kv head h / (H / Hkv). mask is undefined or a (B, H, Tq, Tk) view with
// any strides (stride 0 on broadcast dims), indexed through its strides. Causal: query i sees
// key j iff j <= i + (Tk - Tq).
//
// Forward, per head and per block of kQueryBlock query rows [i0, i0 + n):
//   S = (scale Q) K^T + mask          (n, kend)    one product
//   E = exp(S - rowmax(S)),  lse = rowmax + log(rowsum(E))
//   O = (E V) / rowsum(E)             (n, Dv)      one product, rows scaled after it
// Only the keys [0, kend) that some row of the block can see are touched, so in causal mode
// the upper triangle is skipped a block at a time; inside the block the product kernel skips
// each 6-row tile's dead part too (Skip), and a row's softmax reads only its own keys (the
// rest of its row of E is 0). A row that sees no key gets out = 0 and lse = -inf, never NaN.
// Tasks are (b, h, query block), spread over threads; each writes its own rows of out and lse.
//
// Backward recomputes P from the saved lse instead of storing it (B*H*Tq*Tk floats):
//   P  = exp(S - lse)                 (0 where S = -inf or lse = -inf, and past a row's keys)
//   dP = dO V^T,   dS = scale * P * (dP - rowsum(dO * O))
//   dQ = dS K,   dK += dS^T Q,   dV += P^T dO
// With grouped-query attention several query heads add into one kv head's dK, dV. To keep
// that free of races and independent of the thread count, a backward task is one (b, kv head):
// it walks the query heads of its group and their blocks in a fixed order, accumulating dK, dV
// (in the output rows themselves for f32), and writes dQ for those heads.
//
// Products: f32 ones run on a 6 x 16 AVX2 kernel that reads its operands in place
// (core/cpu/gemm_f32_small.h; bit-identical to core/cpu/gemm_f32.h, whose per-call packing
// cost more than the products here), f64 ones (and f32 without AVX2, or with MNEMO_CPU_GEMM=eigen)
// on Eigen's single-threaded GEMM kernel called directly as in matmul.cpp (through the expression
// API Eigen may start its own threads and then block the K-sum differently, so a result would
// depend on the thread count). The kernel wants b row-major, so K and V are transposed once
// per kv head (Kt, Vt: packet transposes); every a operand (Q, P, dO, dS, and dS^T, P^T read
// down columns) is read where it lies.
//
// FLOPs: forward 2 B H Tq Tk (D + Dv), backward 2.5x that (five products), nearly halved by
// causal masking when Tq = Tk. bf16/f16 rows are converted to f32 before the products and
// rounded on store. exp: Eigen's Cephes polynomial with a cheaper 2^m (exp_packet).
//
// Measured (one thread of the shared 2-core AMD EPYC dev box, process CPU time, f32, the CPU
// LM's shape B=16 H=4 T=128 D=32): causal forward 1.4 ms, backward 2.4 ms (Eigen products
// and plain pexp before: 2.6 and 4.7 ms); non-causal about 2.0 and 4.1 ms (3.5, 6.9).
// kQueryBlock = 32 beat 48 and 64. About 55% of the time is the product kernel (near the
// FMA peak), 15% exp, the rest K/V transposes, row reductions and fills.

// GCC 12 reports a false "may be used uninitialized" inside Eigen's AVX-512 packet code
// (_mm256_undefined_pd is uninitialised by design); the pragma must precede the intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// Eigen packet types carry vector attributes that a template argument drops (harmless here).
#pragma GCC diagnostic ignored "-Wignored-attributes"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/cpu/attention_rows.h"
#include "core/cpu/cpu_backend.h"
#include "core/cpu/gemm_f32.h"
#include "core/cpu/gemm_f32_small.h"
#include "core/cpu/parallel.h"

namespace mnemo::cpu {

namespace {

constexpr int RowMajor = Eigen::RowMajor, ColMajor = Eigen::ColMajor;

// c (M, N), row-major with row length ldc,  =  a (M, K) @ b (K, N)  (or += with accumulate),
// on this thread. An operand is row-major (AOrder/BOrder = RowMajor, ld = its row length) or
// the transpose of a row-major matrix with row length ld (ColMajor): read in place, no copy.
// f32 goes to the in-place kernel (small_gemm) when b is row-major (every product here), else to
// gemm_f32 (both overwrite c, so no zero fill); anything else to Eigen's
// single-threaded kernel (which only adds, so c is zeroed first unless accumulating). skip
// lets the in-place f32 kernel leave out the causally dead part (the others compute it all).
template <int AOrder, int BOrder, typename F>
void gemm(int64_t M, int64_t N, int64_t K, const F* a, int64_t lda, const F* b, int64_t ldb, F* c,
          int64_t ldc, bool accumulate, Skip skip = {}) {
  if (M == 0 || N == 0) return;
  if constexpr (std::is_same_v<F, float>) {
    if (use_own_f32_gemm()) {
      // Element (i, k) of a row-major a is at a[i*lda + k]; of a transposed one at a[k*lda + i].
      const bool ar = AOrder == RowMajor, br = BOrder == RowMajor;
      if (kSmallGemmAvailable && br) {
        small_gemm({M, N, K, a, ar ? lda : 1, ar ? 1 : lda, b, ldb, c, ldc, accumulate, skip});
        return;
      }
      gemm_f32(M, N, K, a, ar ? lda : 1, ar ? 1 : lda, b, br ? ldb : 1, br ? 1 : ldb, c, ldc,
               accumulate);
      return;
    }
  }
  if (!accumulate) {
    for (int64_t i = 0; i < M; ++i) std::fill(c + i * ldc, c + i * ldc + N, F(0));
  }
  if (K == 0) return;
  using Gemm = Eigen::internal::general_matrix_matrix_product<Eigen::Index, F, AOrder, false, F,
                                                              BOrder, false, RowMajor, 1>;
  Eigen::internal::gemm_blocking_space<RowMajor, F, F, Eigen::Dynamic, Eigen::Dynamic,
                                       Eigen::Dynamic>
      blocking(M, N, K, 1, true);  // one thread: the blocking depends on the sizes alone
  Gemm::run(M, N, K, a, lda, b, ldb, c, 1, ldc, F(1), blocking, nullptr);
}

constexpr int64_t kQueryBlock = 32;

struct Geometry {
  int64_t B, H, Hkv, Tq, Tk, D, Dv;
  bool causal;
  double scale;

  Geometry(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale)
      : B(q.size(0)),
        H(q.size(1)),
        Hkv(k.size(1)),
        Tq(q.size(2)),
        Tk(k.size(2)),
        D(q.size(3)),
        Dv(v.size(3)),
        causal(causal),
        scale(scale) {}
  int64_t group() const { return H / Hkv; }
  int64_t blocks() const { return (Tq + kQueryBlock - 1) / kQueryBlock; }
  // Query i sees keys [0, visible(i)); it grows with i, so a block's last row bounds it.
  int64_t visible(int64_t i) const {
    return causal ? std::clamp<int64_t>(i + 1 + Tk - Tq, 0, Tk) : Tk;
  }
  // The causally needed part of a product of the query block starting at i0 (see Skip).
  Skip skip(Skip::Kind kind, int64_t i0) const {
    return causal ? Skip{kind, i0 + Tk - Tq} : Skip{};
  }
  // Offsets (in rows) of the first row of a head in q/out and in k/v.
  int64_t q_row(int64_t b, int64_t h, int64_t i) const { return (b * H + h) * Tq + i; }
  int64_t kv_row(int64_t b, int64_t hk) const { return (b * Hkv + hk) * Tk; }
};

// The (B, H, Tq, Tk) mask view as a pointer and strides; data is null without a mask.
template <typename T>
struct MaskView {
  const T* data = nullptr;
  int64_t sb = 0, sh = 0, si = 0, sj = 0;

  explicit MaskView(const Tensor& mask) {
    if (!mask.defined()) return;
    data = static_cast<const T*>(mask.data_ptr());
    sb = mask.stride(0), sh = mask.stride(1), si = mask.stride(2), sj = mask.stride(3);
  }
  const T* row(int64_t b, int64_t h, int64_t i) const { return data + b * sb + h * sh + i * si; }
};

// count values of src in the compute type F: src itself when T is F, else converted into buffer.
template <typename T, typename F>
const F* as_compute(const T* src, int64_t count, std::vector<F>& buffer) {
  if constexpr (std::is_same_v<T, F>) {
    return src;
  } else {
    buffer.resize(size_t(count));
    for (int64_t i = 0; i < count; ++i) buffer[i] = F(src[i]);
    return buffer.data();
  }
}

namespace ei = Eigen::internal;
using rows::kWidth;
using rows::Packet;
using rows::probabilities_row;
using rows::row_max;
using rows::softmax_row;

// dst (cols, rows) = src (rows, cols)^T, both row-major: W x W tiles through packet
// transposes (8 x 8 floats in AVX registers), the ragged edges element by element.
template <typename F>
void transpose(const F* src, int64_t rows, int64_t cols, F* dst) {
  constexpr int64_t W = kWidth<F>;
  int64_t r0 = 0, c0 = 0;
  if constexpr (W > 1) {
    for (; r0 + W <= rows; r0 += W) {
      for (c0 = 0; c0 + W <= cols; c0 += W) {
        ei::PacketBlock<Packet<F>, int(W)> tile;
        for (int64_t i = 0; i < W; ++i)
          tile.packet[i] = ei::ploadu<Packet<F>>(src + (r0 + i) * cols + c0);
        ei::ptranspose(tile);
        for (int64_t i = 0; i < W; ++i) ei::pstoreu(dst + (c0 + i) * rows + r0, tile.packet[i]);
      }
      for (int64_t r = r0; r < r0 + W; ++r) {  // the columns past the last full tile
        for (int64_t c = c0; c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
      }
    }
  }
  for (int64_t r = r0; r < rows; ++r) {  // the rows past the last full tile
    for (int64_t c = 0; c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
  }
}

// (cols, rows) = src (rows, cols)^T in F: a kv head's keys or values turned column-major once
// per task run, so that the products reading K^T or V^T find rows of 16 contiguous floats
// (the cheap packing path of gemm_f32) instead of strided columns.
template <typename T, typename F>
const F* transposed(const T* src, int64_t rows, int64_t cols, std::vector<F>& dst,
                    std::vector<F>& buffer) {
  dst.resize(size_t(rows * cols));
  transpose(as_compute(src, rows * cols, buffer), rows, cols, dst.data());
  return dst.data();
}

// sum over e < n of x[e] * y[e], in W lane partials from x[0] (so independent of where x and
// y lie in memory; a sequential sum would be a chain of n dependent scalar adds).
template <typename F>
F row_dot(const F* x, const F* y, int64_t n) {
  constexpr int64_t W = kWidth<F>;
  Packet<F> acc = ei::pset1<Packet<F>>(F(0));
  int64_t e = 0;
  for (; e + W <= n; e += W) {
    acc = ei::pmadd(ei::ploadu<Packet<F>>(x + e), ei::ploadu<Packet<F>>(y + e), acc);
  }
  F total = ei::predux(acc);
  for (; e < n; ++e) total += x[e] * y[e];
  return total;
}

// Where to compute count values bound for dst: dst itself when T is F, else buffer, which
// finish_output then rounds into dst.
template <typename T, typename F>
F* output_buffer(T* dst, int64_t count, std::vector<F>& buffer) {
  if constexpr (std::is_same_v<T, F>) {
    return dst;
  } else {
    buffer.resize(size_t(count));
    return buffer.data();
  }
}
template <typename T, typename F>
void finish_output(const F* src, int64_t count, T* dst) {
  if constexpr (!std::is_same_v<T, F>) {
    for (int64_t i = 0; i < count; ++i) dst[i] = T(src[i]);
  }
}

// Qs (n, D) = scale * Q: the scale goes into the n x D queries rather than the n x kend scores.
// The forward and the backward's recomputation both use this, so they get the same S.
template <typename F>
const F* scaled_queries(const Geometry& g, const F* Q, int64_t n, std::vector<F>& buffer) {
  const F scale = F(g.scale);
  buffer.resize(size_t(n * g.D));
  for (int64_t i = 0; i < n * g.D; ++i) buffer[size_t(i)] = scale * Q[i];
  return buffer.data();
}

// S (n, kend) = Qs K[0, kend)^T + mask for the query rows i0 .. i0 + n of head (b, h). Only
// the keys a row sees, [0, g.visible(i0 + r)), are meaningful (the row functions below read
// no further). Qs (n, D) the scaled queries, Kt (D, Tk) = K^T.
template <typename T, typename F>
void scores(const Geometry& g, const MaskView<T>& mask, int64_t b, int64_t h, int64_t i0, int64_t n,
            int64_t kend, const F* Qs, const F* Kt, F* S) {
  gemm<RowMajor, RowMajor>(n, kend, g.D, Qs, g.D, Kt, g.Tk, S, kend, false,
                           g.skip(Skip::kColumns, i0));
  if (!mask.data) return;
  for (int64_t r = 0; r < n; ++r) {
    F* s = S + r * kend;
    const T* m = mask.row(b, h, i0 + r);
    const int64_t visible = g.visible(i0 + r), sj = mask.sj;
    for (int64_t j = 0; j < visible; ++j) s[j] += F(m[j * sj]);
  }
}

// Per-thread scratch for converted rows and score blocks.
template <typename F>
struct Scratch {
  std::vector<F> q, qs, k, v, o, dout, scores, dscores, result;
};

// One forward task: query block blk of head (b, h). Kt (D, Tk) = K^T and V (Tk, Dv): its kv
// head in F.
template <typename T, typename F>
void forward_block(const Geometry& g, const T* q, const MaskView<T>& mask, const F* Kt, const F* V,
                   int64_t b, int64_t h, int64_t blk, T* out, F* lse, Scratch<F>& s) {
  const int64_t i0 = blk * kQueryBlock, n = std::min(kQueryBlock, g.Tq - i0);
  const int64_t kend = g.visible(i0 + n - 1);
  const int64_t row = g.q_row(b, h, i0);
  T* out_rows = out + row * g.Dv;
  if (kend == 0) {  // no row of the block sees a key
    std::fill(out_rows, out_rows + n * g.Dv, T(0.0f));
    std::fill(lse + row, lse + row + n, -std::numeric_limits<F>::infinity());
    return;
  }
  const F* Q = as_compute(q + row * g.D, n * g.D, s.q);  // (n, D)
  const F* Qs = scaled_queries(g, Q, n, s.qs);           // (n, D)
  s.scores.resize(size_t(n * kend));
  F* P = s.scores.data();  // (n, kend)
  scores(g, mask, b, h, i0, n, kend, Qs, Kt, P);
  F inv_sum[kQueryBlock];
  for (int64_t r = 0; r < n; ++r) {
    inv_sum[r] = softmax_row(P + r * kend, g.visible(i0 + r), kend, lse[row + r]);
  }
  F* O = output_buffer(out_rows, n * g.Dv, s.o);  // (n, Dv)
  gemm<RowMajor, RowMajor>(n, g.Dv, kend, P, kend, V, g.Dv, O, g.Dv, false,
                           g.skip(Skip::kDepthEnd, i0));
  for (int64_t r = 0; r < n; ++r) {  // normalise: O = softmax(S) V = (exp(S - max) V) / sum
    for (int64_t e = 0; e < g.Dv; ++e) O[r * g.Dv + e] *= inv_sum[r];
  }
  finish_output(O, n * g.Dv, out_rows);
}

// The operands of a backward task's kv head, in F: K (Tk, D), Kt (D, Tk) = K^T,
// Vt (Dv, Tk) = V^T; and its gradient accumulators dK (Tk, D), dV (Tk, Dv).
template <typename F>
struct KvHead {
  const F *K, *Kt, *Vt;
  F *dK, *dV;
};

// One query block of a backward task: block blk of head h; adds its share into dK, dV and
// writes its rows of dq.
template <typename T, typename F>
void backward_block(const Geometry& g, const T* q, const T* out, const T* dout, const F* lse,
                    const MaskView<T>& mask, const KvHead<F>& kv, int64_t b, int64_t h, int64_t blk,
                    T* dq, Scratch<F>& s) {
  const int64_t i0 = blk * kQueryBlock, n = std::min(kQueryBlock, g.Tq - i0);
  const int64_t kend = g.visible(i0 + n - 1);
  const int64_t row = g.q_row(b, h, i0);
  T* dq_rows = dq + row * g.D;
  if (kend == 0) {
    std::fill(dq_rows, dq_rows + n * g.D, T(0.0f));
    return;
  }
  const F* Q = as_compute(q + row * g.D, n * g.D, s.q);           // (n, D)
  const F* Qs = scaled_queries(g, Q, n, s.qs);                    // (n, D)
  const F* O = as_compute(out + row * g.Dv, n * g.Dv, s.o);       // (n, Dv)
  const F* dO = as_compute(dout + row * g.Dv, n * g.Dv, s.dout);  // (n, Dv)
  s.scores.resize(size_t(n * kend));
  s.dscores.resize(size_t(n * kend));
  F* P = s.scores.data();    // (n, kend)
  F* dS = s.dscores.data();  // (n, kend): dP first, then dS in place
  scores(g, mask, b, h, i0, n, kend, Qs, kv.Kt, P);
  gemm<RowMajor, RowMajor>(n, kend, g.Dv, dO, g.Dv, kv.Vt, g.Tk, dS, kend, false,
                           g.skip(Skip::kColumns, i0));  // dP = dO V^T
  const F scale = F(g.scale);
  for (int64_t r = 0; r < n; ++r) {
    F* p = P + r * kend;
    F* ds = dS + r * kend;
    const int64_t visible = g.visible(i0 + r);
    probabilities_row(p, visible, kend, lse[row + r]);
    const F delta = row_dot(dO + r * g.Dv, O + r * g.Dv, g.Dv);  // rowsum(dO * O) = sum_j P dP
    // dS with the scale folded in: both dQ and dK take scale * dS. Past visible, dP may be
    // unwritten (Skip::kColumns) and dS is 0.
    for (int64_t j = 0; j < visible; ++j) ds[j] = scale * (p[j] * (ds[j] - delta));
    std::fill(ds + visible, ds + kend, F(0));
  }
  F* dQ = output_buffer(dq_rows, n * g.D, s.result);  // (n, D)
  gemm<RowMajor, RowMajor>(n, g.D, kend, dS, kend, kv.K, g.D, dQ, g.D, false,
                           g.skip(Skip::kDepthEnd, i0));  // dQ = dS K
  finish_output(dQ, n * g.D, dq_rows);
  gemm<ColMajor, RowMajor>(kend, g.D, n, dS, kend, Q, g.D, kv.dK, g.D, true,
                           g.skip(Skip::kDepthBegin, i0));  // dK += dS^T Q
  gemm<ColMajor, RowMajor>(kend, g.Dv, n, P, kend, dO, g.Dv, kv.dV, g.Dv, true,
                           g.skip(Skip::kDepthBegin, i0));  // dV += P^T dO
}

}  // namespace

void CpuBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                           bool causal, double scale, const Tensor& out, const Tensor& lse) {
  const Geometry g(q, k, v, causal, scale);
  visit_floating(q.dtype(), "attention", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using F = ComputeType<T>;
    const T* qs = static_cast<const T*>(q.data_ptr());
    const T* ks = static_cast<const T*>(k.data_ptr());
    const T* vs = static_cast<const T*>(v.data_ptr());
    const MaskView<T> mask_view(mask);
    T* outs = static_cast<T*>(out.data_ptr());
    F* lses = static_cast<F*>(lse.data_ptr());
    const int64_t blocks = g.blocks();
    const int64_t cost = kQueryBlock * g.Tk * (g.D + g.Dv + 8);
    parallel_for(g.B * g.H * blocks, cost, [&](int64_t begin, int64_t end) {
      Scratch<F> s;
      std::vector<F> kbuf, vbuf, convert;
      const F *kp = nullptr, *vp = nullptr;
      int64_t loaded = -1;  // the (b, kv head) kp, vp hold
      for (int64_t task = begin; task < end; ++task) {
        const int64_t bh = task / blocks, blk = task % blocks;
        const int64_t b = bh / g.H, h = bh % g.H, hk = h / g.group();
        if (b * g.Hkv + hk != loaded) {
          loaded = b * g.Hkv + hk;
          kp = transposed(ks + g.kv_row(b, hk) * g.D, g.Tk, g.D, kbuf, convert);
          vp = as_compute(vs + g.kv_row(b, hk) * g.Dv, g.Tk * g.Dv, vbuf);
        }
        forward_block(g, qs, mask_view, kp, vp, b, h, blk, outs, lses, s);
      }
    });
  });
}

void CpuBackend::attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& mask, bool causal, double scale,
                                    const Tensor& out, const Tensor& lse, const Tensor& dout,
                                    const Tensor& dq, const Tensor& dk, const Tensor& dv) {
  const Geometry g(q, k, v, causal, scale);
  visit_floating(q.dtype(), "attention_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using F = ComputeType<T>;
    const T* qs = static_cast<const T*>(q.data_ptr());
    const T* ks = static_cast<const T*>(k.data_ptr());
    const T* vs = static_cast<const T*>(v.data_ptr());
    const T* outs = static_cast<const T*>(out.data_ptr());
    const T* douts = static_cast<const T*>(dout.data_ptr());
    const F* lses = static_cast<const F*>(lse.data_ptr());
    const MaskView<T> mask_view(mask);
    T* dqs = static_cast<T*>(dq.data_ptr());
    T* dks = static_cast<T*>(dk.data_ptr());
    T* dvs = static_cast<T*>(dv.data_ptr());
    const int64_t cost = g.group() * g.Tq * g.Tk * 2 * (g.D + g.Dv + 4);
    parallel_for(g.B * g.Hkv, cost, [&](int64_t begin, int64_t end) {
      Scratch<F> s;
      std::vector<F> kbuf, ktbuf, vtbuf, convert, dkbuf, dvbuf;
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / g.Hkv, hk = task % g.Hkv;
        const int64_t row = g.kv_row(b, hk);
        T* dk_rows = dks + row * g.D;   // (Tk, D)
        T* dv_rows = dvs + row * g.Dv;  // (Tk, Dv)
        // The accumulators: the output rows themselves when T is F, else F buffers.
        const KvHead<F> kv{as_compute(ks + row * g.D, g.Tk * g.D, kbuf),
                           transposed(ks + row * g.D, g.Tk, g.D, ktbuf, convert),
                           transposed(vs + row * g.Dv, g.Tk, g.Dv, vtbuf, convert),
                           output_buffer(dk_rows, g.Tk * g.D, dkbuf),
                           output_buffer(dv_rows, g.Tk * g.Dv, dvbuf)};
        std::fill(kv.dK, kv.dK + g.Tk * g.D, F(0));
        std::fill(kv.dV, kv.dV + g.Tk * g.Dv, F(0));
        for (int64_t h = hk * g.group(); h < (hk + 1) * g.group(); ++h) {
          for (int64_t blk = 0; blk < g.blocks(); ++blk) {
            backward_block(g, qs, outs, douts, lses, mask_view, kv, b, h, blk, dqs, s);
          }
        }
        finish_output(kv.dK, g.Tk * g.D, dk_rows);
        finish_output(kv.dV, g.Tk * g.Dv, dv_rows);
      }
    });
  });
}

}  // namespace mnemo::cpu

// NeuralMemory: the long-term memory of Titans (Behrouz, Zhong, Mirrokni, "Titans: Learning to
// Memorize at Test Time", 2024) — a small network M_W (titans_models.h) that keeps training
// online, while it reads a stream, so that M_W(k) ~ v for what it has seen.
//
// Shapes: B streams, T rows of this call, C model width, H memory heads of dim D, G = B H
// groups (one memory per stream and head), c = chunk_size, b = update_batch, P the memory's
// weights per group.
//
// For the rows x (B, T, C) it stores, per head:
//   k = l2norm(conv_k(W_k xs)), v = conv_v(W_v xs)   xs = store_norm(x) (RMSNorm), (G, T, D)
//   q = l2norm(conv_q(W_q xr))                       xr = retrieve_norm(x)
// conv: the paper's short causal depthwise convolution over time after each projection,
//   conv(z)_t = sum_{j < K} w_j z_{t-j}   (w (K, H D), w_0 = 1 and the rest 0 at init)
// (conv_kernel K; 1 = none). It lets a key hold the token before it: in "k v" pairs the
// token whose read-out must be v is the one before v, and without the convolution only an
// attention layer below the memory can bring it there (docs/memory-results.md).
//   theta_t = max_lr sigmoid(w_theta xs_t + b)  the step size of row t (step_size "token",
//                                               the paper's), or per chunk n
//             max_lr exp(-15 sigmoid(w_theta mean_n(xs) + b))   (step_size "exp", the seed's;
//                                               max_lr 1 is the seed's exactly)
//   eta_n   = sigmoid(w_eta mean_n(xs) + b)     momentum of chunk n
//   alpha_n = max_forget sigmoid(w_alpha mean_n(xs) + b)   forgetting of chunk n (max_forget
//                                               1 is the paper's gate; below 1 it caps how
//                                               fast the memory can forget:
//                                               docs/memory-results.md)
// Rows are grouped in chunks of c (one surprise per chunk) and chunks in update batches of b
// rows (b a multiple of c). The surprise of chunk n is the gradient of its inner loss
//   g_n = grad_W sum_{t in n} theta_t (1/D) |M_W(k_t) - v_t|^2   at W = W'
// where W' are the weights the chunk's update batch started from: every chunk of a batch is
// differentiated at the same weights, so the whole batch is one set of batched matmuls
// (titans_models.h: the closed form). Then across the chunks, as two scans (autograd/ops.h:
// scan, on all P weights of all G groups at once: the weights flattened into the channel dim):
//   S_n = eta_n S_{n-1} - g_n               momentum (the paper's surprise)
//   W_n = (1 - alpha_n) W_{n-1} + S_n       forgetting
// Forgetting decays the whole memory, as in the paper (W_0 included), not only the updates
// made within the current segment as the seed does: a memory that outlives many segments
// must be able to forget what it stored long ago, and a decay reset at every segment boundary
// would make the result depend on where a stream is cut.
//
// Retrieve before store: the rows of chunk n read y_t = M_{W_{n-1}}(q_t), the weights before
// chunk n's own update (chunk 0 reads the weights the call started from). In the batched form
// the scan returns W_1..W_N; the reads use [W_0, W_1, ..., W_{N-1}] — the scan's output shifted
// by one chunk, never W_n for chunk n — and the new state is W_N itself (not W_0 + W_N: the
// scan already started from W_0, which is how the weights are not added twice).
// With read_batch (TitansConfig read_from "batch") every chunk reads W' instead, the weights its
// update batch started from: with the default update batch of one segment, a segment's rows
// read only what earlier segments stored, and the memory cannot answer anything inside the
// segment (which MAG's attention can: docs/memory-results.md). Update batches follow the
// stream, so a stream cut anywhere still reads the same.
// y is then joined over heads (B, T, H D), combined by a linear layer (H D -> C) and
// RMS-normed (post_norm).
//
// Streams cut anywhere: chunks and update batches are counted along the stream, not per call.
// State (batch first; <p> the caller's prefix):
//   <p>.weights        (B, H, P)  W after the last complete chunk
//   <p>.momentum       (B, H, P)  S after the last complete chunk
//   <p>.batch_weights  (B, H, P)  W' of the update batch the stream is in
//   <p>.pending        (B, c, C)  the rows of the unfinished chunk (the first r = position mod c
//                                 of them), as given (before the norms): the next call puts
//                                 them in front of its rows, so its chunk boundaries are the
//                                 stream's; their read-out was returned by the call that
//                                 received them, with the weights before their chunk, which is
//                                 what the next call's rows of that chunk read too
//   <p>.position       (B,) i64   rows stored in the current update batch (mod b); the same
//                                 for every stream of a batch
//   <p>.history        (B, K-1, C) the K - 1 rows before the first pending one (zeros at the
//                                 stream's start), the convolution's left context; only when
//                                 K > 1
// So a stream cut into calls of any lengths, the state carried, gives the same read-out and
// the same final state as one call over the whole stream (up to rounding;
// tests/memory/test_titans_memory.cpp). The state tensors carry the autograd graph: training
// back-propagates through the inner updates (SegmentLM's default, full BPTT).
#pragma once

#include <memory>
#include <string>

#include "memory/segment_lm.h"
#include "memory/titans_models.h"
#include "nn/linear.h"
#include "nn/norm.h"

namespace mnemo::memory {

// The inner loop on projected rows — the part of NeuralMemory that is pure math, exposed so
// tests can drive it with chosen gates.
struct InnerChunks {
  Tensor k, v;        // (G, N, c, D) keys (unit) and values of the N complete chunks
  Tensor theta;       // (G, N, c) step size per row
  Tensor eta, alpha;  // (G, N) momentum and forgetting per chunk
};
struct InnerState {
  Tensor weights, momentum, batch_weights;  // (G, P) each
};
struct InnerUpdate {
  InnerState state;
  Tensor weights_before;  // (G, N + 1, P): W_{n-1} read by chunk n; index N = the last W_N
};

// S_n = eta_n S_{n-1} + u_n,  W_n = (1 - alpha_n) W_{n-1} + S_n  along the chunks:
// eta, alpha (G, N), u (G, N, P), S0, W0 (G, P) -> momentum S and weights W (G, N, P).
struct MomentumScan {
  Tensor momentum, weights;
};
MomentumScan momentum_and_forgetting(const Tensor& eta, const Tensor& alpha, const Tensor& u,
                                     const Tensor& S0, const Tensor& W0);

// Stores the chunks: for each update batch, the surprises of its chunks at the batch's W'
// (one batched gradient), then the two scans. first_chunk: the index of chunk 0 within its
// update batch (0 <= first_chunk < chunks_per_batch).
InnerUpdate inner_update(const MemoryModel& model, const InnerChunks& chunks,
                         const InnerState& state, int64_t first_chunk, int64_t chunks_per_batch);

// The weights M chunks read with read_batch: chunk j the W' of its update batch. weights_before
// (G, >= M, P) holds W_j before chunk j (or (G, 1, P) when M = 1); chunk j opens a batch when
// (first_chunk + j) % chunks_per_batch == 0, its W' then W_j, else its predecessor's (chunk 0's:
// batch_weights (G, P), the state's). -> (G, 1, P) when all M share one batch, else (G, M, P).
Tensor batch_start_weights(const Tensor& weights_before, const Tensor& batch_weights,
                           int64_t first_chunk, int64_t chunks_per_batch, int64_t M);

// Reads rows q (G, L, D) whose row i belongs to chunk i / c, with weights_before (G, M, P),
// M >= ceil(L / c), chunk j reading weights_before[:, j] -> (G, L, D).
Tensor read_chunks(const MemoryModel& model, const Tensor& weights_before, const Tensor& q,
                   int64_t c);

struct NeuralMemoryOptions {
  int64_t heads = 2;          // H; the head dim D is C / H
  int64_t chunk_size = 4;     // c
  int64_t update_batch = 64;  // b, a multiple of c
  MemoryModelKind model = MemoryModelKind::linear;
  double max_lr = 0.1;
  double max_forget = 1.0;  // alpha's ceiling
  bool exp_step = false;    // step_size "exp" (the seed's) instead of "token"
  bool read_batch = false;  // read_from "batch": every chunk reads its update batch's W'
  int64_t conv_kernel = 1;  // K: the causal convolution's width (1 = none)
  // Initial gate biases: eta = sigmoid(2) = 0.88 and alpha = sigmoid(-6) = 0.0025 are near
  // where the recall prototype's gates settled (eta 0.87, alpha -> 1e-4); theta starts at
  // max_lr / 2.
  double theta_bias = 0, eta_bias = 2, alpha_bias = -6;
};

class NeuralMemory : public nn::Module {
 public:
  // C: the model width; init_std: the projections' init std (0 = 1/sqrt(C)).
  NeuralMemory(int64_t C, const NeuralMemoryOptions& options, double rms_norm_eps = 1e-6,
               Generator* gen = nullptr);

  // Sets <prefix>.* of `state` to the initial state of `batch` streams: W_0 (a parameter,
  // broadcast: the graph reaches it), zero momentum, no pending rows.
  void initial_state(int64_t batch, const std::string& prefix, MemoryState& state) const;

  // Stores the rows x (B, T, C) after the state under `prefix` of `in`, writes the new state
  // into `out`, and returns each row's read-out (B, T, C) with the weights before its chunk
  // (retrieve before store) — or an undefined tensor when !retrieve.
  Tensor forward(const Tensor& x, const MemoryState& in, const std::string& prefix,
                 MemoryState& out, bool retrieve = true) const;

  // Reads queries from x (B, T, C) with the weights of the state (nothing stored): (B, T, C).
  // Chunks of x (for the attention model's causal attention) and the convolution (zeros
  // before row 0) start at x's row 0.
  Tensor read(const Tensor& x, const MemoryState& state, const std::string& prefix) const;

  // The pieces, for tests. Each takes K - 1 rows of left context and L rows, (B, K-1+L, C),
  // and returns the L rows' (G, L, D): keys and values of normed rows xs, queries of raw x.
  Tensor keys(const Tensor& xs) const;
  Tensor values(const Tensor& xs) const;
  Tensor queries(const Tensor& x) const;
  // Step sizes (G, N, c), momentum and forgetting (G, N) of the N complete chunks of rows x.
  struct Gates {
    Tensor theta, eta, alpha;
  };
  Gates gates(const Tensor& x, int64_t N) const;
  // y (G, T, D) of B streams -> (B, T, C): heads joined, combined, RMS-normed.
  Tensor combine(const Tensor& y, int64_t B) const;

  // Diagnostics: with `record` set, forward keeps the gates of its last call (detached).
  bool record = false;
  mutable Gates last_gates;

  int64_t C, H, D;
  NeuralMemoryOptions options;
  MemoryModel model;
  Tensor initial_weights;  // W_0 (H, P)
  std::shared_ptr<nn::RMSNorm> store_norm, retrieve_norm, post_norm;
  std::shared_ptr<nn::Linear> key_proj, value_proj, query_proj;       // C -> H D
  std::shared_ptr<nn::Linear> step_gate, momentum_gate, forget_gate;  // C -> H, with bias
  std::shared_ptr<nn::Linear> combine_proj;                           // H D -> C
  Tensor key_conv, value_conv, query_conv;  // (K, H D); undefined when K = 1

 private:
  Tensor to_groups(const Tensor& x) const;  // (B, L, H D) -> (G, L, D)
  // conv(z) of the last L rows of z (B, K-1+L, H D) -> (B, L, H D)
  Tensor convolve(const Tensor& z, const Tensor& w) const;
  // The state's weights (B, H, P), checked against B streams.
  const Tensor& state_weights(const MemoryState& state, const std::string& prefix, int64_t B) const;
};

}  // namespace mnemo::memory

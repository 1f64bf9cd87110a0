// NeuralMemory (titans_memory.h): projections and gates, the batched inner update with its two
// scans, chunk-wise reads, and the state that lets a stream be cut anywhere.
#include "memory/titans_memory.h"

#include <algorithm>
#include <cmath>

#include "autograd/ops.h"
#include "core/error.h"

namespace mnemo::memory {

MomentumScan momentum_and_forgetting(const Tensor& eta, const Tensor& alpha, const Tensor& u,
                                     const Tensor& S0, const Tensor& W0) {
  MNEMO_CHECK(eta.dim() == 2 && alpha.shape() == eta.shape() && u.dim() == 3 &&
                  u.size(0) == eta.size(0) && u.size(1) == eta.size(1),
              "momentum_and_forgetting: eta {}, alpha {}, surprise {} (want (G, N) twice and "
              "(G, N, P))",
              shape_str(eta.shape()), shape_str(alpha.shape()), shape_str(u.shape()));
  MomentumScan out;
  // S_n = eta_n S_{n-1} + u_n
  out.momentum = scan(unsqueeze(eta, -1), u, 1, S0);
  // W_n = (1 - alpha_n) W_{n-1} + S_n
  out.weights = scan(unsqueeze(1.0 - alpha, -1), out.momentum, 1, W0);
  return out;
}

InnerUpdate inner_update(const MemoryModel& model, const InnerChunks& chunks,
                         const InnerState& state, int64_t first_chunk, int64_t chunks_per_batch) {
  const int64_t N = chunks.k.size(1);
  MNEMO_ASSERT(chunks_per_batch >= 1 && first_chunk >= 0 && first_chunk < chunks_per_batch,
               "inner_update: chunk {} of an update batch of {} chunks", first_chunk,
               chunks_per_batch);
  InnerState s = state;
  std::vector<Tensor> weights = {unsqueeze(state.weights, 1)};  // W_0, then W_1 .. W_N
  for (int64_t n = 0; n < N;) {
    // Chunks n .. n + m - 1 belong to one update batch, at `offset` chunks into it.
    const int64_t offset = (first_chunk + n) % chunks_per_batch;
    const int64_t m = std::min(N - n, chunks_per_batch - offset);
    const Tensor start = offset == 0 ? s.weights : s.batch_weights;  // W' (G, P)
    auto part = [&](const Tensor& t) { return narrow(t, 1, n, m); };
    // Every chunk's surprise at W', one batched computation: -g (G, m, P). The surprise is
    // linear in theta, so -g is the gradient taken with -theta: a negation of (G, m, c)
    // numbers instead of (G, m, P).
    const Tensor minus_g = model.inner_gradient(unsqueeze(start, 1), part(chunks.k), part(chunks.v),
                                                neg(part(chunks.theta)));
    const MomentumScan scanned = momentum_and_forgetting(part(chunks.eta), part(chunks.alpha),
                                                         minus_g, s.momentum, s.weights);
    s.momentum = select(scanned.momentum, 1, m - 1);
    s.weights = select(scanned.weights, 1, m - 1);
    s.batch_weights = start;
    weights.push_back(scanned.weights);
    n += m;
  }
  return {s, weights.size() == 1 ? weights[0] : concat(weights, 1)};
}

Tensor batch_start_weights(const Tensor& weights_before, const Tensor& batch_weights,
                           int64_t first_chunk, int64_t chunks_per_batch, int64_t M) {
  const int64_t G = batch_weights.size(0), P = batch_weights.size(1);
  std::vector<Tensor> runs;  // (G, run length, P) each: one per update batch the chunks touch
  Tensor start = unsqueeze(batch_weights, 1);  // W' of the batch chunk 0 continues
  int64_t run = 0;
  for (int64_t j = 0; j < M; ++j) {
    if ((first_chunk + j) % chunks_per_batch == 0) {  // chunk j opens a batch: W' = W_j
      if (run > 0) runs.push_back(expand(start, {G, run, P}));
      start = narrow(weights_before, 1, j, 1);
      run = 0;
    }
    ++run;
  }
  if (runs.empty()) return start;  // one batch: (G, 1, P), read by every chunk
  runs.push_back(expand(start, {G, run, P}));
  return concat(runs, 1);
}

Tensor read_chunks(const MemoryModel& model, const Tensor& weights_before, const Tensor& q,
                   int64_t c) {
  const int64_t G = q.size(0), L = q.size(1), D = q.size(2);
  const int64_t M = (L + c - 1) / c;  // chunks the rows touch
  const Tensor W = weights_before.size(1) == 1 ? weights_before : narrow(weights_before, 1, 0, M);
  MNEMO_ASSERT(weights_before.size(1) == 1 || weights_before.size(1) >= M,
               "read_chunks: {} rows in chunks of {} but weights for {} chunks", L, c,
               weights_before.size(1));
  const Tensor rows = reshape(pad(q, {0, 0, 0, M * c - L}), {G, M, c, D});
  return narrow(reshape(model.forward(W, rows), {G, M * c, D}), 1, 0, L);
}

NeuralMemory::NeuralMemory(int64_t c, const NeuralMemoryOptions& o, double eps, Generator* gen)
    : C(c),
      H(o.heads),
      D(o.heads >= 1 ? c / o.heads : 0),
      options(o),
      model(o.model, std::max<int64_t>(1, D)) {
  MNEMO_CHECK(H >= 1 && C % H == 0, "titans config: 'heads' {} must divide hidden_size {}", H, C);
  MNEMO_CHECK(o.chunk_size >= 1, "titans config: 'chunk_size' must be positive, got {}",
              o.chunk_size);
  MNEMO_CHECK(o.update_batch >= o.chunk_size && o.update_batch % o.chunk_size == 0,
              "titans config: 'update_batch' {} must be a positive multiple of 'chunk_size' {}",
              o.update_batch, o.chunk_size);
  MNEMO_CHECK(o.max_lr >= 0 && std::isfinite(o.max_lr),
              "titans config: 'max_lr' must be a finite number >= 0, got {}", o.max_lr);
  MNEMO_CHECK(o.max_forget >= 0 && o.max_forget <= 1,
              "titans config: 'max_forget' must lie in [0, 1], got {}", o.max_forget);
  const double std = 1.0 / std::sqrt(double(C));  // PyTorch's Linear scale
  initial_weights = register_parameter("initial_weights", model.initial_weights(H, {}, gen));
  store_norm = register_module("store_norm", std::make_shared<nn::RMSNorm>(C, eps));
  retrieve_norm = register_module("retrieve_norm", std::make_shared<nn::RMSNorm>(C, eps));
  key_proj = register_module("key_proj", std::make_shared<nn::Linear>(C, H * D, false, gen, std));
  value_proj =
      register_module("value_proj", std::make_shared<nn::Linear>(C, H * D, false, gen, std));
  query_proj =
      register_module("query_proj", std::make_shared<nn::Linear>(C, H * D, false, gen, std));
  // The gates start near their biases (weights at 0.02), which set the initial values.
  auto gate = [&](const char* name, double bias) {
    auto g = register_module(name, std::make_shared<nn::Linear>(C, H, true, gen, 0.02));
    fill_(g->bias, bias);
    return g;
  };
  step_gate = gate("step_gate", o.theta_bias);
  momentum_gate = gate("momentum_gate", o.eta_bias);
  forget_gate = gate("forget_gate", o.alpha_bias);
  MNEMO_CHECK(o.conv_kernel >= 1, "titans config: 'conv_kernel' must be positive, got {}",
              o.conv_kernel);
  if (o.conv_kernel > 1) {
    // The identity at init: w_0 = 1, the taps on earlier rows 0.
    auto conv = [&](const char* name) {
      const Tensor w = zeros({o.conv_kernel, H * D});
      fill_(narrow(w, 0, 0, 1), 1.0);
      return register_parameter(name, w);
    };
    key_conv = conv("key_conv");
    value_conv = conv("value_conv");
    query_conv = conv("query_conv");
  }
  combine_proj = register_module(
      "combine_proj",
      std::make_shared<nn::Linear>(H * D, C, false, gen, 1.0 / std::sqrt(double(H * D))));
  post_norm = register_module("post_norm", std::make_shared<nn::RMSNorm>(C, eps));
}

void NeuralMemory::initial_state(int64_t batch, const std::string& prefix,
                                 MemoryState& state) const {
  MNEMO_CHECK(batch >= 1, "NeuralMemory: batch must be positive, got {}", batch);
  const int64_t P = model.num_weights();
  const TensorOptions to = options_of(initial_weights);
  const Tensor w0 = expand(unsqueeze(initial_weights, 0), {batch, H, P});
  state.set(prefix + ".weights", w0);
  state.set(prefix + ".momentum", zeros({batch, H, P}, to));
  state.set(prefix + ".batch_weights", w0);
  state.set(prefix + ".pending", zeros({batch, options.chunk_size, C}, to));
  state.set(prefix + ".position", zeros({batch}, {DType::i64, to.device}));
  if (options.conv_kernel > 1) {
    state.set(prefix + ".history", zeros({batch, options.conv_kernel - 1, C}, to));
  }
}

const Tensor& NeuralMemory::state_weights(const MemoryState& state, const std::string& prefix,
                                          int64_t B) const {
  const Tensor& weights = state.at(prefix + ".weights");
  const int64_t P = model.num_weights();
  MNEMO_CHECK(weights.shape() == (Shape{B, H, P}),
              "NeuralMemory: state '{}.weights' has shape {}, want ({}, {}, {})", prefix,
              shape_str(weights.shape()), B, H, P);
  return weights;
}

Tensor NeuralMemory::to_groups(const Tensor& x) const {
  const int64_t B = x.size(0), L = x.size(1);
  return reshape(permute(view(x, {B, L, H, D}), {0, 2, 1, 3}), {B * H, L, D});
}

Tensor NeuralMemory::convolve(const Tensor& z, const Tensor& w) const {
  const int64_t K = options.conv_kernel, L = z.size(1) - (K - 1);
  if (K == 1) return z;
  // conv(z)_t = sum_j w_j z_{t-j}: row t of the output is row t + K - 1 of z.
  Tensor out;
  for (int64_t j = 0; j < K; ++j) {
    const Tensor term = narrow(z, 1, K - 1 - j, L) * select(w, 0, j);
    out = out.defined() ? out + term : term;
  }
  return out;
}

Tensor NeuralMemory::keys(const Tensor& xs) const {
  // l2norm(k) = rms_norm(k) / sqrt(D)
  const Tensor k = to_groups(convolve(key_proj->forward(xs), key_conv));
  return rms_norm(k, {}, 1e-12) * (1.0 / std::sqrt(double(D)));
}

Tensor NeuralMemory::values(const Tensor& xs) const {
  return to_groups(convolve(value_proj->forward(xs), value_conv));
}

Tensor NeuralMemory::queries(const Tensor& x) const {
  const Tensor q = to_groups(convolve(query_proj->forward(retrieve_norm->forward(x)), query_conv));
  return rms_norm(q, {}, 1e-12) * (1.0 / std::sqrt(double(D)));
}

NeuralMemory::Gates NeuralMemory::gates(const Tensor& xs, int64_t N) const {
  const int64_t B = xs.size(0), c = options.chunk_size;
  // (B, N, H) -> (G, N)
  auto per_group = [&](const Tensor& t) {
    return reshape(permute(t, {0, 2, 1}), {B * H, t.size(1)});
  };
  const Tensor rows = narrow(xs, 1, 0, N * c);
  const Tensor chunk_mean = mean(view(contiguous(rows), {B, N, c, C}), {2});  // (B, N, C)
  Gates g;
  if (options.exp_step) {
    // theta_n = max_lr exp(-15 sigmoid(w mean_n(xs) + b)), the same for every row of chunk n
    const Tensor theta = exp(sigmoid(step_gate->forward(chunk_mean)) * -15.0) * options.max_lr;
    g.theta = expand(unsqueeze(per_group(theta), -1), {B * H, N, c});
  } else {
    // theta_t = max_lr sigmoid(w xs_t + b)
    const Tensor theta = sigmoid(step_gate->forward(rows)) * options.max_lr;  // (B, N c, H)
    g.theta = reshape(per_group(theta), {B * H, N, c});
  }
  g.eta = per_group(sigmoid(momentum_gate->forward(chunk_mean)));
  g.alpha = per_group(sigmoid(forget_gate->forward(chunk_mean)));
  if (options.max_forget != 1.0) g.alpha = g.alpha * options.max_forget;
  return g;
}

Tensor NeuralMemory::combine(const Tensor& y, int64_t B) const {
  const int64_t T = y.size(1);
  const Tensor joined = reshape(permute(view(y, {B, H, T, D}), {0, 2, 1, 3}), {B, T, H * D});
  return post_norm->forward(combine_proj->forward(joined));
}

Tensor NeuralMemory::forward(const Tensor& x, const MemoryState& in, const std::string& prefix,
                             MemoryState& out, bool retrieve) const {
  MNEMO_CHECK(x.dim() == 3 && x.size(2) == C && x.size(1) >= 1,
              "NeuralMemory: rows must be (B, T >= 1, {}), got {}", C, shape_str(x.shape()));
  const int64_t B = x.size(0), T = x.size(1), G = B * H, P = model.num_weights();
  const int64_t c = options.chunk_size, b = options.update_batch;
  const Tensor& weights = state_weights(in, prefix, B);
  const Tensor& pending = in.at(prefix + ".pending");
  const std::vector<int64_t> positions = in.at(prefix + ".position").to_vector<int64_t>();
  const int64_t position = positions.empty() ? 0 : positions[0];
  MNEMO_CHECK(int64_t(positions.size()) == B &&
                  std::all_of(positions.begin(), positions.end(),
                              [&](int64_t p) { return p == position; }) &&
                  position >= 0 && position < b,
              "NeuralMemory: state '{}.position' must hold one position in [0, {}) for all {} "
              "streams",
              prefix, b, B);

  // The rows of the unfinished chunk go first, so that chunks follow the stream; the
  // convolution's K - 1 rows of left context before them.
  const int64_t K = options.conv_kernel;
  const int64_t r = position % c, L = r + T, N = L / c;
  const Tensor rows = r > 0 ? concat({narrow(pending, 1, 0, r), x}, 1) : x;  // (B, L, C)
  const Tensor context = K > 1 ? concat({in.at(prefix + ".history"), rows}, 1) : rows;
  InnerState s{reshape(weights, {G, P}), reshape(in.at(prefix + ".momentum"), {G, P}),
               reshape(in.at(prefix + ".batch_weights"), {G, P})};
  const Tensor batch_weights_in = s.batch_weights;
  const int64_t first_chunk = ((position - r) % b) / c;  // chunk 0's place in its update batch
  Tensor weights_before = unsqueeze(s.weights, 1);       // (G, 1, P) when no chunk completes
  if (N > 0) {
    // The complete chunks' rows and their left context, normed: (B, K - 1 + N c, C).
    const Tensor xs = store_norm->forward(narrow(context, 1, 0, K - 1 + N * c));
    const Gates g = gates(narrow(xs, 1, K - 1, N * c), N);
    if (record) last_gates = {detach(g.theta), detach(g.eta), detach(g.alpha)};
    InnerChunks chunks{reshape(keys(xs), {G, N, c, D}), reshape(values(xs), {G, N, c, D}), g.theta,
                       g.eta, g.alpha};
    const InnerUpdate update = inner_update(model, chunks, s, first_chunk, b / c);
    s = update.state;
    weights_before = update.weights_before;
  }
  out.set(prefix + ".weights", reshape(s.weights, {B, H, P}));
  out.set(prefix + ".momentum", reshape(s.momentum, {B, H, P}));
  out.set(prefix + ".batch_weights", reshape(s.batch_weights, {B, H, P}));
  const int64_t tail = L - N * c;
  out.set(prefix + ".pending", tail > 0 ? pad(narrow(rows, 1, N * c, tail), {0, 0, 0, c - tail})
                                        : zeros({B, c, C}, options_of(x)));
  out.set(prefix + ".position", full({B}, double((position + T) % b), {DType::i64, x.device()}));
  // The K - 1 rows before the new pending ones: context rows N c .. N c + K - 2.
  if (K > 1) out.set(prefix + ".history", narrow(context, 1, N * c, K - 1));
  if (!retrieve) return {};
  // Row i of `rows` reads weights_before[:, i / c]: the weights before its chunk; or, with
  // read_batch, the weights its chunk's update batch started from.
  const Tensor read_weights = options.read_batch
                                  ? batch_start_weights(weights_before, batch_weights_in,
                                                        first_chunk, b / c, (L + c - 1) / c)
                                  : weights_before;
  const Tensor y = read_chunks(model, read_weights, queries(context), c);  // (G, L, D)
  return combine(narrow(y, 1, r, T), B);
}

Tensor NeuralMemory::read(const Tensor& x, const MemoryState& state,
                          const std::string& prefix) const {
  MNEMO_CHECK(x.dim() == 3 && x.size(2) == C,
              "NeuralMemory::read: queries must be (B, T, {}), got {}", C, shape_str(x.shape()));
  const int64_t B = x.size(0), P = model.num_weights();
  const Tensor W = reshape(state_weights(state, prefix, B), {B * H, 1, P});
  const int64_t K = options.conv_kernel;
  const Tensor context = K > 1 ? pad(x, {0, 0, K - 1, 0}) : x;  // zeros before row 0
  return combine(read_chunks(model, W, queries(context), options.chunk_size), B);
}

}  // namespace mnemo::memory

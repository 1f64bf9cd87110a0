// Titans' neural memory (memory/titans_models.h, memory/titans_memory.h), in f64: the
// closed-form inner gradient against autograd's, the two scans against a plain loop, the
// batched update against a loop over chunks (and the paper's token-by-token recurrence), a
// stream cut anywhere against one call, a gradcheck of the outer loss through the inner
// updates, and what forgetting and a zero step do.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "core/ops/random.h"
#include "memory/memory_test_util.h"
#include "memory/titans_memory.h"

namespace mnemo::memory {
namespace {

using test::max_abs_diff;

constexpr MemoryModelKind kModels[] = {MemoryModelKind::linear, MemoryModelKind::mlp,
                                       MemoryModelKind::attention};

Tensor rand64(const Shape& shape, Generator& gen, double std = 1.0) {
  return normal(shape, 0.0, std, {DType::f64}, &gen);
}

// Unit rows along the last dim, as the memory's keys are.
Tensor unit(const Tensor& x) {
  return x / sqrt(sum(x * x, {-1}, true));
}

// Random weights (G, N, P) for a model (all pieces random, so every path matters).
Tensor random_weights(const MemoryModel& m, int64_t G, int64_t N, Generator& gen) {
  return rand64({G, N, m.num_weights()}, gen, 0.7);
}

// A NeuralMemory in f64 with a width of 8 (2 heads of 4) and a large step, so that the inner
// updates change the read-out a lot.
std::shared_ptr<NeuralMemory> make_memory(MemoryModelKind kind, int64_t chunk, int64_t update_batch,
                                          Generator& gen, int64_t conv_kernel = 1,
                                          double max_lr = 0.5) {
  NeuralMemoryOptions o;
  o.heads = 2;
  o.chunk_size = chunk;
  o.update_batch = update_batch;
  o.model = kind;
  o.max_lr = max_lr;
  o.conv_kernel = conv_kernel;
  auto m = std::make_shared<NeuralMemory>(8, o, 1e-6, &gen);
  m->to(DType::f64);
  // Random W_0 (the default starts the last matrix at 0) and gates that vary per row.
  NoGradGuard no_grad;
  copy_(m->initial_weights, rand64(m->initial_weights.shape(), gen, 0.7));
  for (const auto& gate : {m->step_gate, m->momentum_gate, m->forget_gate}) {
    copy_(gate->weight, rand64(gate->weight.shape(), gen, 0.5));
  }
  for (const Tensor& w : {m->key_conv, m->value_conv, m->query_conv}) {
    if (w.defined()) copy_(w, rand64(w.shape(), gen, 0.7));
  }
  return m;
}

}  // namespace

TEST_CASE("titans memory models: the closed-form inner gradient equals autograd's") {
  for (MemoryModelKind kind : kModels) {
    CAPTURE(memory_model_name(kind));
    Generator gen(3);
    const MemoryModel m(kind, 4);
    const int64_t G = 2, N = 3, c = 3;
    const Tensor k = unit(rand64({G, N, c, 4}, gen)), v = rand64({G, N, c, 4}, gen);
    const Tensor theta = uniform({G, N, c}, 0.1, 1.0, {DType::f64}, &gen);
    for (int64_t weight_chunks : {N, int64_t(1)}) {  // weights per chunk, or shared
      CAPTURE(weight_chunks);
      const Tensor W = random_weights(m, G, weight_chunks, gen).set_requires_grad();
      // autograd: d(sum over chunks of l_n)/dW; with shared weights the chunks' gradients add
      backward(sum(m.inner_loss(W, k, v, theta)));
      const Tensor closed = m.inner_gradient(W, k, v, theta);  // (G, N, P)
      const Tensor want = W.grad();
      const Tensor got = weight_chunks == N ? closed : sum(closed, {1}, true);
      CHECK(max_abs_diff(got, want) < 1e-12);
      CHECK(max_abs_diff(want, zeros_like(want)) > 1e-3);  // the check is not vacuous
    }
  }
}

TEST_CASE("titans memory: momentum and forgetting by scan equal a plain loop") {
  Generator gen(5);
  const int64_t G = 3, N = 5, P = 7;
  const Tensor eta = uniform({G, N}, 0.0, 1.0, {DType::f64}, &gen);
  const Tensor alpha = uniform({G, N}, 0.0, 1.0, {DType::f64}, &gen);
  const Tensor u = rand64({G, N, P}, gen), S0 = rand64({G, P}, gen), W0 = rand64({G, P}, gen);
  const MomentumScan got = momentum_and_forgetting(eta, alpha, u, S0, W0);
  Tensor S = S0, W = W0;
  for (int64_t n = 0; n < N; ++n) {
    const Tensor e = unsqueeze(select(eta, 1, n), -1), a = unsqueeze(select(alpha, 1, n), -1);
    S = e * S + select(u, 1, n);  // S_n = eta_n S_{n-1} - g_n  (u = -g)
    W = (1.0 - a) * W + S;        // W_n = (1 - alpha_n) W_{n-1} + S_n
    CHECK(max_abs_diff(select(got.momentum, 1, n), S) < 1e-13);
    CHECK(max_abs_diff(select(got.weights, 1, n), W) < 1e-13);
  }
}

TEST_CASE("titans memory: the batched update equals a loop over chunks at each batch's W'") {
  for (MemoryModelKind kind : kModels) {
    const MemoryModel m(kind, 4);
    for (int64_t per_batch : {1, 2, 3, 6}) {
      for (int64_t first : {int64_t(0), per_batch - 1}) {
        CAPTURE(memory_model_name(kind));
        CAPTURE(per_batch);
        CAPTURE(first);
        Generator gen(7);
        const int64_t G = 2, N = 6, c = 2, P = m.num_weights();
        InnerChunks ch;
        ch.k = unit(rand64({G, N, c, 4}, gen));
        ch.v = rand64({G, N, c, 4}, gen);
        ch.theta = uniform({G, N, c}, 0.0, 0.5, {DType::f64}, &gen);
        ch.eta = uniform({G, N}, 0.0, 1.0, {DType::f64}, &gen);
        ch.alpha = uniform({G, N}, 0.0, 0.3, {DType::f64}, &gen);
        const InnerState s0{rand64({G, P}, gen, 0.5), rand64({G, P}, gen, 0.1),
                            rand64({G, P}, gen, 0.5)};
        const InnerUpdate got = inner_update(m, ch, s0, first, per_batch);
        // The loop: chunk n's gradient at W' = the weights when its batch started (the
        // carried batch_weights while the first batch is unfinished).
        Tensor W = s0.weights, S = s0.momentum, start = s0.batch_weights;
        for (int64_t n = 0; n < N; ++n) {
          CAPTURE(n);
          CHECK(max_abs_diff(select(got.weights_before, 1, n), W) <
                1e-12);  // chunk n reads W_{n-1}
          if ((first + n) % per_batch == 0) start = W;
          auto one = [&](const Tensor& t) { return narrow(t, 1, n, 1); };
          const Tensor g = select(
              m.inner_gradient(unsqueeze(start, 1), one(ch.k), one(ch.v), one(ch.theta)), 1, 0);
          S = unsqueeze(select(ch.eta, 1, n), -1) * S - g;
          W = (1.0 - unsqueeze(select(ch.alpha, 1, n), -1)) * W + S;
        }
        CHECK(max_abs_diff(select(got.weights_before, 1, N), W) < 1e-12);
        CHECK(max_abs_diff(got.state.weights, W) < 1e-12);
        CHECK(max_abs_diff(got.state.momentum, S) < 1e-12);
        CHECK(max_abs_diff(got.state.batch_weights, start) < 1e-12);
      }
    }
  }
}

TEST_CASE("titans memory: chunk = update batch = 1 is the paper's token-by-token recurrence") {
  // M_t = (1 - alpha_t) M_{t-1} + S_t,  S_t = eta_t S_{t-1} - theta_t grad l(M_{t-1}; k_t, v_t),
  // y_t = M_{t-1}(q_t), with l's gradient from autograd (not the closed form).
  for (MemoryModelKind kind : {MemoryModelKind::linear, MemoryModelKind::mlp}) {
    CAPTURE(memory_model_name(kind));
    Generator gen(9);
    const auto mem = make_memory(kind, 1, 1, gen);
    const int64_t B = 2, T = 6, H = mem->H, G = B * H, D = mem->D, P = mem->model.num_weights();
    const Tensor x = rand64({B, T, 8}, gen);
    MemoryState in, out;
    mem->initial_state(B, "m", in);
    const Tensor got = mem->forward(x, in, "m", out);

    NoGradGuard no_grad;
    const Tensor xs = mem->store_norm->forward(x);
    const Tensor k = mem->keys(xs), v = mem->values(xs), q = mem->queries(x);  // (G, T, D)
    const NeuralMemory::Gates gates = mem->gates(xs, T);  // theta (G, T, 1); eta, alpha (G, T)
    Tensor W = reshape(expand(unsqueeze(mem->initial_weights, 0), {B, H, P}), {G, P});
    Tensor S = zeros({G, P}, {DType::f64});
    std::vector<Tensor> y;
    for (int64_t t = 0; t < T; ++t) {
      auto row = [&](const Tensor& a) { return reshape(narrow(a, 1, t, 1), {G, 1, 1, D}); };
      y.push_back(reshape(mem->model.forward(unsqueeze(W, 1), row(q)), {G, 1, D}));
      Tensor grad;
      {
        EnableGradGuard enable;
        const Tensor w = clone(unsqueeze(W, 1)).set_requires_grad();
        backward(sum(mem->model.inner_loss(w, row(k), row(v), narrow(gates.theta, 1, t, 1))));
        grad = reshape(w.grad(), {G, P});
      }
      S = unsqueeze(select(gates.eta, 1, t), -1) * S - grad;
      W = (1.0 - unsqueeze(select(gates.alpha, 1, t), -1)) * W + S;
    }
    CHECK(max_abs_diff(got, mem->combine(concat(y, 1), B)) < 1e-11);
    CHECK(max_abs_diff(out.at("m.weights"), reshape(W, {B, H, P})) < 1e-11);
    CHECK(max_abs_diff(out.at("m.momentum"), reshape(S, {B, H, P})) < 1e-11);
  }
}

TEST_CASE("titans memory: a stream cut anywhere, the state carried, equals one call") {
  // Chunks of 3, update batches of 6: the cuts fall inside chunks and inside update batches.
  const std::vector<std::vector<int64_t>> cuts = {
      {5, 3, 5}, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {6, 7}, {2, 11}};
  for (const auto& [kind, read_batch] :
       {std::pair{MemoryModelKind::linear, false}, std::pair{MemoryModelKind::mlp, false},
        std::pair{MemoryModelKind::attention, false}, std::pair{MemoryModelKind::linear, true},
        std::pair{MemoryModelKind::mlp, true}}) {
    CAPTURE(memory_model_name(kind));
    CAPTURE(read_batch);
    Generator gen(11);
    const auto mem = make_memory(kind, 3, 6, gen, /*conv_kernel=*/3);
    mem->options.read_batch = read_batch;
    const int64_t B = 2, T = 13;
    const Tensor x = rand64({B, T, 8}, gen);
    MemoryState initial, whole;
    mem->initial_state(B, "m", initial);
    const Tensor want = mem->forward(x, initial, "m", whole);
    for (const auto& lengths : cuts) {
      CAPTURE(lengths.size());
      MemoryState state = initial;
      std::vector<Tensor> pieces;
      int64_t start = 0;
      for (int64_t n : lengths) {
        MemoryState next;
        pieces.push_back(mem->forward(narrow(x, 1, start, n), state, "m", next));
        state = next;
        start += n;
      }
      CHECK(max_abs_diff(concat(pieces, 1), want) < 1e-12);
      for (const char* name :
           {"m.weights", "m.momentum", "m.batch_weights", "m.pending", "m.history"}) {
        CAPTURE(name);
        CHECK(max_abs_diff(state.at(name), whole.at(name)) < 1e-12);
      }
      CHECK(state.at("m.position").to_vector<int64_t>() ==
            whole.at("m.position").to_vector<int64_t>());
    }
    // The memory changed on the way (the read-out of the last rows is not the first weights').
    MemoryState unused;
    const Tensor fresh = mem->forward(narrow(x, 1, T - 3, 3), initial, "m", unused);
    CHECK(max_abs_diff(narrow(want, 1, T - 3, 3), fresh) > 1e-3);
  }
}

TEST_CASE("titans memory: read_batch reads each update batch's starting weights") {
  // Chunks of 3, update batches of 6, 13 rows: batches of rows 0-5, 6-11 and 12. A change of
  // row 1 reaches no read-out of its own batch and every one of the next; chunk by chunk (the
  // default) it reaches rows 3-5 of its own batch too.
  Generator gen(12);
  const auto mem = make_memory(MemoryModelKind::linear, 3, 6, gen);
  const int64_t B = 2, T = 13;
  const Tensor x = rand64({B, T, 8}, gen);
  Tensor changed = clone(x);
  {
    NoGradGuard no_grad;
    Tensor row = narrow(changed, 1, 1, 1);
    copy_(row, add(row, 0.5));
  }
  MemoryState initial;
  mem->initial_state(B, "m", initial);
  auto moved = [&](bool read_batch) {
    mem->options.read_batch = read_batch;
    MemoryState a, b;
    const Tensor ya = mem->forward(x, initial, "m", a), yb = mem->forward(changed, initial, "m", b);
    std::vector<int64_t> rows;
    for (int64_t i = 0; i < T; ++i) {
      if (max_abs_diff(narrow(ya, 1, i, 1), narrow(yb, 1, i, 1)) > 1e-9) rows.push_back(i);
    }
    CHECK(max_abs_diff(a.at("m.weights"), b.at("m.weights")) > 1e-6);  // stored either way
    return rows;
  };
  CHECK(moved(true) == std::vector<int64_t>{1, 6, 7, 8, 9, 10, 11, 12});
  CHECK(moved(false) == std::vector<int64_t>{1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
  // Batch-start weights of chunks that open, continue and reopen batches.
  const Tensor wb = rand64({2, 5, 4}, gen), start = rand64({2, 4}, gen);
  const Tensor w = batch_start_weights(wb, start, /*first_chunk=*/1, /*chunks_per_batch=*/2, 4);
  CHECK(w.shape() == Shape{2, 4, 4});
  CHECK(max_abs_diff(select(w, 1, 0), start) == 0.0);  // chunk 0 continues the state's batch
  CHECK(max_abs_diff(select(w, 1, 1), select(wb, 1, 1)) == 0.0);  // chunk 1 opens one
  CHECK(max_abs_diff(select(w, 1, 2), select(wb, 1, 1)) == 0.0);
  CHECK(max_abs_diff(select(w, 1, 3), select(wb, 1, 3)) == 0.0);
  CHECK(batch_start_weights(wb, start, 0, 4, 4).shape() == Shape{2, 1, 4});
}

TEST_CASE("titans memory: f64 gradcheck of the outer loss through several chunks") {
  for (MemoryModelKind kind : kModels) {
    CAPTURE(memory_model_name(kind));
    Generator gen(13);
    // Chunks of 2, update batches of 4, 7 rows after 1 pending row (and 1 row of history for
    // the convolution): three update batches.
    const auto mem = make_memory(kind, 2, 4, gen, /*conv_kernel=*/2);
    const int64_t B = 2;
    const Tensor pending = rand64({B, 2, 8}, gen), x = rand64({B, 7, 8}, gen);
    const Tensor history = rand64({B, 1, 8}, gen);
    const TensorList inputs = {mem->initial_weights,
                               mem->key_proj->weight,
                               mem->value_proj->weight,
                               mem->query_proj->weight,
                               mem->step_gate->weight,
                               mem->step_gate->bias,
                               mem->momentum_gate->weight,
                               mem->momentum_gate->bias,
                               mem->forget_gate->weight,
                               mem->forget_gate->bias,
                               mem->combine_proj->weight,
                               mem->key_conv,
                               mem->value_conv,
                               mem->query_conv};
    const auto fn = [&](const TensorList&) {
      MemoryState initial, out;
      mem->initial_state(B, "m", initial);
      initial.set("m.pending", pending);
      initial.set("m.position", full({B}, 1.0, {DType::i64}));
      initial.set("m.history", history);
      const Tensor y = mem->forward(x, initial, "m", out);
      return concat({reshape(y, {-1}), reshape(out.at("m.weights"), {-1})});
    };
    const GradcheckResult r = gradcheck(fn, inputs, {.eps = 1e-6, .atol = 1e-7, .rtol = 1e-5});
    INFO(r.message);
    CHECK(r.ok);
    CHECK(r.elements_checked > 200);
    // The tape went through both scans.
    CHECK(std::find(r.rules.begin(), r.rules.end(), "scan") != r.rules.end());
  }
}

TEST_CASE("titans memory: alpha = 1, eta = 0 keep only the last chunk; theta = 0 only decays") {
  Generator gen(17);
  const MemoryModel m(MemoryModelKind::mlp, 4);
  const int64_t G = 2, N = 4, c = 2, P = m.num_weights();
  InnerChunks ch;
  ch.k = unit(rand64({G, N, c, 4}, gen));
  ch.v = rand64({G, N, c, 4}, gen);
  ch.theta = uniform({G, N, c}, 0.1, 0.5, {DType::f64}, &gen);
  const InnerState s0{rand64({G, P}, gen), rand64({G, P}, gen), rand64({G, P}, gen)};
  {
    // alpha = 1 forgets everything before, eta = 0 drops the momentum: W_N = -g_N, where g_N
    // is the last chunk's surprise at its batch's start W' (every chunk its own batch).
    ch.eta = zeros({G, N}, {DType::f64});
    ch.alpha = ones({G, N}, {DType::f64});
    const InnerUpdate u = inner_update(m, ch, s0, 0, 1);
    const Tensor W_before_last = select(u.weights_before, 1, N - 1);
    const Tensor g = m.inner_gradient(unsqueeze(W_before_last, 1), narrow(ch.k, 1, N - 1, 1),
                                      narrow(ch.v, 1, N - 1, 1), narrow(ch.theta, 1, N - 1, 1));
    CHECK(max_abs_diff(u.state.weights, neg(select(g, 1, 0))) < 1e-13);
  }
  {
    // theta = 0: no surprise. With no momentum carried and no forgetting the memory never
    // changes; with forgetting it only decays: W_N = prod (1 - alpha_n) W_0.
    ch.theta = zeros({G, N, c}, {DType::f64});
    ch.eta = uniform({G, N}, 0.0, 1.0, {DType::f64}, &gen);
    const InnerState still{s0.weights, zeros({G, P}, {DType::f64}), s0.weights};
    ch.alpha = zeros({G, N}, {DType::f64});
    const InnerUpdate u = inner_update(m, ch, still, 0, 2);
    for (int64_t n = 0; n <= N; ++n) {
      CHECK(max_abs_diff(select(u.weights_before, 1, n), s0.weights) == 0.0);
    }
    ch.alpha = uniform({G, N}, 0.0, 0.5, {DType::f64}, &gen);
    const InnerUpdate decayed = inner_update(m, ch, still, 0, 2);
    const Tensor keep = unsqueeze(exp(sum(log(1.0 - ch.alpha), {1})), -1);  // (G, 1)
    CHECK(max_abs_diff(decayed.state.weights, keep * s0.weights) < 1e-13);
  }
}

TEST_CASE("titans memory: max_forget scales the forgetting gate and nothing else") {
  // Two memories with the same weights, one with alpha capped at 0.3: its alpha is 0.3 times
  // the other's, theta and eta are the same.
  Generator gen(17), gen_capped(17);
  const auto free = make_memory(MemoryModelKind::linear, 2, 4, gen);
  NeuralMemoryOptions o = free->options;
  o.max_forget = 0.3;
  auto capped = std::make_shared<NeuralMemory>(8, o, 1e-6, &gen_capped);
  capped->to(DType::f64);
  {
    NoGradGuard no_grad;
    const auto from = free->named_parameters(), to = capped->named_parameters();
    REQUIRE(from.size() == to.size());
    for (size_t i = 0; i < from.size(); ++i) copy_(to[i].second, from[i].second);
  }
  Generator data(18);
  const Tensor xs = rand64({3, 8, 8}, data, 1.0);
  const NeuralMemory::Gates a = free->gates(xs, 4), b = capped->gates(xs, 4);
  CHECK(max_abs_diff(b.alpha, a.alpha * 0.3) < 1e-14);
  CHECK(max_abs_diff(b.theta, a.theta) == 0);
  CHECK(max_abs_diff(b.eta, a.eta) == 0);
  CHECK(max_abs_diff(a.alpha, b.alpha) > 0.01);  // the gates are not near 0 to begin with
}

TEST_CASE("titans memory: bad options are errors naming the key") {
  NeuralMemoryOptions o;
  o.heads = 3;
  CHECK_THROWS_WITH_AS(NeuralMemory(8, o), doctest::Contains("'heads'"), Error);
  o = {};
  o.chunk_size = 4;
  o.update_batch = 6;
  CHECK_THROWS_WITH_AS(NeuralMemory(8, o), doctest::Contains("'update_batch'"), Error);
  o = {};
  o.max_forget = 2;
  CHECK_THROWS_WITH_AS(NeuralMemory(8, o), doctest::Contains("'max_forget'"), Error);
  CHECK_THROWS_WITH_AS(parse_memory_model("deep", "'memory_model'"),
                       doctest::Contains("'memory_model'"), Error);
}

}  // namespace mnemo::memory

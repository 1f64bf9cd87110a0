// The memory models of Titans' neural memory (memory/titans_memory.h): the small network M_W
// whose weights W are the memory, and the closed-form gradient of its inner loss.
//
// A NeuralMemory keeps one M_W per stream and head. Its weights are one flat vector of P
// numbers per (stream, head), so that momentum and forgetting can run over all of them as one
// scan (titans_memory.h); `unflatten` cuts the vector into the model's matrices. Every
// function here is batched over groups G (= streams x heads) and chunks N: row t of chunk n
// of group g is read by the weights W[g, n] (W may have 1 in the chunk dim: one set of
// weights for every chunk).
//
// The three models, x (c, D) the rows of one chunk (keys when storing, queries when reading):
//   linear     y = x W                                  W (D, D): the fast-weight / linear-
//                                                       attention memory
//   mlp        y = x + s silu(x W1) W2                  W1 (D, 4D), W2 (4D, D), s = 1/sqrt(4D):
//                                                       depth 2, expansion 4, residual
//   attention  y = s silu(softmax(x wq (x wk)^T / sqrt(D) + causal) x wv1) wv2
//                                                       wq, wk, wv1, wv2 (D, D), s = 1/sqrt(D):
//                                                       causal attention over the chunk's rows
//
// Why s: the keys are unit vectors, so the linear memory's step on a key changes its read-out
// by about theta. A hidden layer of width h fed unit keys through W1 ~ N(0, 1) has activations
// of squared norm ~0.35 h, and the step of the matrix after it moves the read-out by about
// 0.35 h theta: ~90x the linear memory's at D = 64 (the reason an MLP memory went NaN at a
// step size where the linear one learned). Scaling the hidden activations by 1/sqrt(h) puts
// every matrix's input at norm ~0.6 and every layer's step at the linear memory's scale; it is
// part of the model, so the inner gradient below is still the exact gradient of the loss.
//
// Inner loss of one chunk (the seed implementation's: mean over D, summed over the rows,
// each row weighted by its step size theta_t):
//   l(W) = sum_t theta_t (1/D) |M_W(k_t) - v_t|^2
// and its gradient by hand (dY = dl/dY, Y = M_W(K) the chunk's predictions):
//   dY      = (2/D) theta (Y - V)
//   linear  dW = K^T dY
//   mlp     Z = K W1, A = s silu(Z):        dW2 = A^T dY,  dZ = s (dY W2^T) silu'(Z),
//                                            dW1 = K^T dZ
//   attention  Q = K wq, Kk = K wk, Vv = K wv1, P = softmax(Q Kk^T / sqrt(D) + causal),
//              H = P Vv, A = s silu(H):     dwv2 = A^T dY,  dH = s (dY wv2^T) silu'(H),
//              dP = dH Vv^T,  dwv1 = K^T (P^T dH),
//              dS = P (dP - rowsum(dP P)) / sqrt(D),  dwq = K^T (dS Kk),  dwk = K^T (dS^T Q)
// with silu'(z) = sigmoid(z) (1 + z (1 - sigmoid(z))). It is written with differentiable
// tensor ops, so back-propagating the LM loss through the inner updates is ordinary
// first-order backprop through these lines (no double backward);
// tests/memory/test_titans_memory.cpp checks it against autograd's gradient of `inner_loss`.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/ops/random.h"
#include "core/tensor.h"

namespace mnemo::memory {

enum class MemoryModelKind { linear, mlp, attention };

// "linear" | "mlp" | "attention"; else a mnemo::Error naming `what` (the config key).
MemoryModelKind parse_memory_model(const std::string& name, std::string_view what);
std::string memory_model_name(MemoryModelKind kind);

class MemoryModel {
 public:
  // D: the head dim (the width of keys, values and queries).
  MemoryModel(MemoryModelKind kind, int64_t D);

  // One matrix of the model: `rows` x `cols` numbers at `offset` of the flat vector.
  struct Piece {
    std::string name;
    int64_t rows, cols, offset;
  };

  MemoryModelKind kind;
  int64_t D;
  int64_t hidden;  // mlp: 4D; attention: D; linear: 0
  double scale;    // s above (1 for linear)
  std::vector<Piece> pieces;

  int64_t num_weights() const;  // P: the flat vector's length

  // The initial weights W_0 of `heads` memories (H, P): linear 0; mlp W1 ~ N(0, 1), W2 = 0
  // (the identity map at first, through the residual); attention wq, wk, wv1 ~ N(0, 1),
  // wv2 = 0.
  Tensor initial_weights(int64_t heads, TensorOptions options, Generator* gen) const;

  // W (..., P) -> one tensor per piece, (..., rows, cols).
  std::vector<Tensor> unflatten(const Tensor& W) const;
  // The inverse: pieces (..., rows, cols) -> (..., P).
  Tensor flatten(const std::vector<Tensor>& pieces) const;

  // W (G, N or 1, P), x (G, N, c, D) -> M_{W[g, n]}(rows of chunk n) (G, N, c, D).
  Tensor forward(const Tensor& W, const Tensor& x) const;

  // The gradient of each chunk's inner loss at W, in closed form (above):
  // W (G, N or 1, P), k, v (G, N, c, D), theta (G, N, c) -> (G, N, P).
  Tensor inner_gradient(const Tensor& W, const Tensor& k, const Tensor& v,
                        const Tensor& theta) const;

  // The inner loss of each chunk, same arguments -> (G, N). The definition the gradient is
  // checked against.
  Tensor inner_loss(const Tensor& W, const Tensor& k, const Tensor& v, const Tensor& theta) const;

 private:
  // The attention model's forward pieces, shared by forward and inner_gradient.
  struct AttentionPass {
    Tensor q, k, v, p, h, y;  // Q, Kk, Vv (G, N, c, D), P (G, N, c, c), H, Y (G, N, c, D)
  };
  AttentionPass attention_pass(const std::vector<Tensor>& w, const Tensor& x) const;
};

}  // namespace mnemo::memory

// The memory models M_W of Titans' neural memory and their inner gradients (titans_models.h).
#include "memory/titans_models.h"

#include <cmath>
#include <limits>

#include "autograd/ops.h"
#include "core/error.h"

namespace mnemo::memory {

namespace {

// The last two dims swapped: x (..., a, b) -> (..., b, a).
Tensor mT(const Tensor& x) {
  return transpose(x, -1, -2);
}

// silu'(z) = sigmoid(z) (1 + z (1 - sigmoid(z)))
Tensor silu_grad(const Tensor& z) {
  const Tensor s = sigmoid(z);
  return s * (1.0 + z * (1.0 - s));
}

// The causal mask of a chunk (c, c): 0 on and below the diagonal, -inf above.
Tensor causal_mask(int64_t c, const Tensor& like) {
  std::vector<double> mask(size_t(c * c), 0.0);
  for (int64_t i = 0; i < c; ++i) {
    for (int64_t j = i + 1; j < c; ++j)
      mask[size_t(i * c + j)] = -std::numeric_limits<double>::infinity();
  }
  return mnemo::to(from_vector(mask, {c, c}, {like.dtype()}), like.device());
}

// t (..., r, c) -> (..., r c)
Tensor flatten_last_two(const Tensor& t) {
  Shape shape(t.shape().begin(), t.shape().end() - 2);
  shape.push_back(t.size(-2) * t.size(-1));
  return reshape(t, shape);
}

}  // namespace

MemoryModelKind parse_memory_model(const std::string& name, std::string_view what) {
  if (name == "linear") return MemoryModelKind::linear;
  if (name == "mlp") return MemoryModelKind::mlp;
  if (name == "attention") return MemoryModelKind::attention;
  fail("titans config: {} must be \"linear\", \"mlp\" or \"attention\", got \"{}\"", what, name);
}

std::string memory_model_name(MemoryModelKind kind) {
  switch (kind) {
    case MemoryModelKind::linear: return "linear";
    case MemoryModelKind::mlp: return "mlp";
    case MemoryModelKind::attention: return "attention";
  }
  fail_internal("memory_model_name: unknown kind {}", int(kind));
}

MemoryModel::MemoryModel(MemoryModelKind k, int64_t d) : kind(k), D(d), hidden(0), scale(1.0) {
  MNEMO_CHECK(D > 0, "MemoryModel: head dim must be positive, got {}", D);
  auto add = [&](const char* name, int64_t rows, int64_t cols) {
    const int64_t offset =
        pieces.empty() ? 0 : pieces.back().offset + pieces.back().rows * pieces.back().cols;
    pieces.push_back({name, rows, cols, offset});
  };
  switch (kind) {
    case MemoryModelKind::linear: add("w", D, D); break;
    case MemoryModelKind::mlp:
      hidden = 4 * D;
      add("w1", D, hidden);
      add("w2", hidden, D);
      break;
    case MemoryModelKind::attention:
      hidden = D;
      add("wq", D, D);
      add("wk", D, D);
      add("wv1", D, D);
      add("wv2", D, D);
      break;
  }
  if (hidden > 0) scale = 1.0 / std::sqrt(double(hidden));
}

int64_t MemoryModel::num_weights() const {
  return pieces.back().offset + pieces.back().rows * pieces.back().cols;
}

Tensor MemoryModel::initial_weights(int64_t heads, TensorOptions options, Generator* gen) const {
  std::vector<Tensor> parts;
  for (const Piece& p : pieces) {
    // The last matrix starts at zero (linear: the empty memory; mlp: the identity through the
    // residual; attention: a zero read-out); the others at N(0, 1), so that a unit key gives
    // unit-variance hidden pre-activations.
    const bool last = &p == &pieces.back();
    parts.push_back(last ? zeros({heads, p.rows, p.cols}, options)
                         : normal({heads, p.rows, p.cols}, 0.0, 1.0, options, gen));
  }
  return flatten(parts);
}

std::vector<Tensor> MemoryModel::unflatten(const Tensor& W) const {
  MNEMO_CHECK(W.dim() >= 1 && W.size(-1) == num_weights(),
              "MemoryModel: weights of shape {}, want (..., {})", shape_str(W.shape()),
              num_weights());
  Shape lead(W.shape().begin(), W.shape().end() - 1);
  std::vector<Tensor> out;
  for (const Piece& p : pieces) {
    Shape shape = lead;
    shape.push_back(p.rows);
    shape.push_back(p.cols);
    out.push_back(reshape(narrow(W, -1, p.offset, p.rows * p.cols), shape));
  }
  return out;
}

Tensor MemoryModel::flatten(const std::vector<Tensor>& parts) const {
  MNEMO_CHECK(parts.size() == pieces.size(), "MemoryModel: {} pieces, want {}", parts.size(),
              pieces.size());
  std::vector<Tensor> flat;
  for (const Tensor& t : parts) flat.push_back(flatten_last_two(t));
  return flat.size() == 1 ? flat[0] : concat(flat, -1);
}

MemoryModel::AttentionPass MemoryModel::attention_pass(const std::vector<Tensor>& w,
                                                       const Tensor& x) const {
  AttentionPass a;
  a.q = matmul(x, w[0]);
  a.k = matmul(x, w[1]);
  a.v = matmul(x, w[2]);
  const Tensor s = matmul(a.q, mT(a.k)) * (1.0 / std::sqrt(double(D)));  // (G, N, c, c)
  a.p = softmax(s + causal_mask(x.size(-2), x), -1);
  a.h = matmul(a.p, a.v);
  a.y = matmul(silu(a.h) * scale, w[3]);
  return a;
}

Tensor MemoryModel::forward(const Tensor& W, const Tensor& x) const {
  MNEMO_CHECK(W.dim() == 3 && x.dim() == 4 && x.size(-1) == D && W.size(0) == x.size(0) &&
                  (W.size(1) == x.size(1) || W.size(1) == 1),
              "MemoryModel: weights {} and rows {} do not match (want (G, N or 1, P) and "
              "(G, N, c, {}))",
              shape_str(W.shape()), shape_str(x.shape()), D);
  // (G, N or 1, rows, cols): matmul broadcasts a chunk dim of 1 over the N chunks.
  const std::vector<Tensor> w = unflatten(W);
  switch (kind) {
    case MemoryModelKind::linear: return matmul(x, w[0]);
    case MemoryModelKind::mlp: return x + matmul(silu(matmul(x, w[0])) * scale, w[1]);
    case MemoryModelKind::attention: return attention_pass(w, x).y;
  }
  fail_internal("MemoryModel::forward: unknown kind {}", int(kind));
}

Tensor MemoryModel::inner_loss(const Tensor& W, const Tensor& k, const Tensor& v,
                               const Tensor& theta) const {
  // sum_t theta_t (1/D) |M(k_t) - v_t|^2  -> (G, N)
  const Tensor err = forward(W, k) - v;
  return sum(mean(err * err, {-1}) * theta, {-1});
}

Tensor MemoryModel::inner_gradient(const Tensor& W, const Tensor& k, const Tensor& v,
                                   const Tensor& theta) const {
  MNEMO_CHECK(k.dim() == 4 && v.shape() == k.shape() && theta.dim() == 3 &&
                  theta.size(0) == k.size(0) && theta.size(1) == k.size(1) &&
                  theta.size(2) == k.size(2),
              "MemoryModel::inner_gradient: keys {}, values {}, theta {} (want (G, N, c, D) "
              "twice and (G, N, c))",
              shape_str(k.shape()), shape_str(v.shape()), shape_str(theta.shape()));
  const std::vector<Tensor> w = unflatten(W);                    // (G, N or 1, rows, cols)
  const Tensor coef = unsqueeze(theta, -1) * (2.0 / double(D));  // (G, N, c, 1)
  const Tensor K = k, Kt = mT(k);
  switch (kind) {
    case MemoryModelKind::linear: {
      // Y = K W;  dY = (2/D) theta (Y - V);  dW = K^T dY
      const Tensor dY = coef * (matmul(K, w[0]) - v);
      return flatten({matmul(Kt, dY)});
    }
    case MemoryModelKind::mlp: {
      // Z = K W1, A = s silu(Z), Y = K + A W2
      const Tensor Z = matmul(K, w[0]);
      const Tensor A = silu(Z) * scale;
      const Tensor dY = coef * (K + matmul(A, w[1]) - v);
      // dW2 = A^T dY;  dZ = s (dY W2^T) silu'(Z);  dW1 = K^T dZ
      const Tensor dZ = matmul(dY, mT(w[1])) * silu_grad(Z) * scale;
      return flatten({matmul(Kt, dZ), matmul(mT(A), dY)});
    }
    case MemoryModelKind::attention: {
      const AttentionPass a = attention_pass(w, K);
      const Tensor A = silu(a.h) * scale;
      const Tensor dY = coef * (a.y - v);
      // dwv2 = A^T dY;  dH = s (dY wv2^T) silu'(H);  dP = dH Vv^T;  dVv = P^T dH
      const Tensor dH = matmul(dY, mT(w[3])) * silu_grad(a.h) * scale;
      const Tensor dP = matmul(dH, mT(a.v));
      const Tensor dVv = matmul(mT(a.p), dH);
      // dS = P (dP - rowsum(dP P)) / sqrt(D);  dQ = dS Kk;  dKk = dS^T Q
      const Tensor dS = a.p * (dP - sum(dP * a.p, {-1}, true)) * (1.0 / std::sqrt(double(D)));
      const Tensor dQ = matmul(dS, a.k);
      const Tensor dKk = matmul(mT(dS), a.q);
      return flatten({matmul(Kt, dQ), matmul(Kt, dKk), matmul(Kt, dVv), matmul(mT(A), dY)});
    }
  }
  fail_internal("MemoryModel::inner_gradient: unknown kind {}", int(kind));
}

}  // namespace mnemo::memory

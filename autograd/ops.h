// The differentiable op API, and its derivative index.
//
// Each function below computes with the raw op from core/ops (core::add, ...) and, when grad
// mode is on and an input requires grad, records a Node whose backward rule is written with
// these same functions (so it runs on every backend). Non-differentiable ops (comparisons,
// argmax, factories, random) are declared once in core and are available here too.
//
// `derivatives` is the index of every rule, as PyTorch's derivatives.yaml is: read top to
// bottom, it gives each differentiable op, the math of its rule, and the file that holds it
// (three rules live in nn/: swiglu, rope, fused_linear). A rule's node carries its op's name
// on the tape, and autograd::record accepts only a name that is a rule here (checked at
// compile time, autograd/node.h), so a rule cannot exist without its line. A composite is
// written with other differentiable ops and records no node of its own. The operators
// (a + b, s / x, ...) call the ops of the same name (s / x is mul(pow(x, -1), s)).
//
// tests/autograd/test_derivative_index.cpp checks the index against the code: every op has
// exactly one `gradcheck: <op>` case (f64 central differences), every rule's case records
// that rule, and every file named here holds its op.
#pragma once

#include <string_view>
#include <vector>

#include "core/ops/elementwise.h"
#include "core/ops/factory.h"
#include "core/ops/index.h"
#include "core/ops/nn.h"
#include "core/ops/random.h"
#include "core/ops/reduce.h"
#include "core/ops/view.h"

namespace mnemo {

namespace autograd {

struct Derivative {
  enum Kind { rule, composite };
  std::string_view op;    // a rule's node carries this name on the tape
  std::string_view file;  // where the rule (or the composite) is written
  std::string_view math;  // forward  =>  gradients (d-prefixed: dy is the output's gradient)
  Kind kind = rule;
};

// The files that hold rules.
namespace file {
inline constexpr std::string_view view = "autograd/rules_view.cpp";
inline constexpr std::string_view elementwise = "autograd/rules_elementwise.cpp";
inline constexpr std::string_view reduce = "autograd/rules_reduce.cpp";
inline constexpr std::string_view linalg = "autograd/rules_linalg.cpp";
inline constexpr std::string_view index = "autograd/rules_index.cpp";
inline constexpr std::string_view softmax = "autograd/rules_softmax.cpp";
inline constexpr std::string_view norm = "autograd/rules_norm.cpp";
inline constexpr std::string_view dropout = "autograd/rules_dropout.cpp";
inline constexpr std::string_view attention = "autograd/rules_attention.cpp";
inline constexpr std::string_view scan = "autograd/rules_scan.cpp";
inline constexpr std::string_view swiglu = "nn/mlp.cpp";
inline constexpr std::string_view rope = "nn/rotary.cpp";
inline constexpr std::string_view fused_linear = "nn/fused_linear.cpp";
}  // namespace file

inline constexpr Derivative::Kind composite = Derivative::composite;

// The derivative index: op, file, math.
// clang-format off
inline constexpr Derivative derivatives[] = {
    // ---- views and copies: the inverse view of dy, or dy written into zeros ----
    {"view",          file::view,         "y = x viewed as a shape  =>  dx = dy viewed as x"},
    {"reshape",       file::view,         "y = x in another shape  =>  dx = reshape(dy, x.shape)"},
    {"flatten",       file::view,         "y = x with dims merged  =>  dx = reshape(dy, x.shape)"},
    {"transpose",     file::view,         "y = x with dims a, b swapped  =>  dx = dy swapped back"},
    {"permute",       file::view,         "y = permute(x, p)  =>  dx = permute(dy, p^-1)"},
    {"narrow",        file::view,         "y = x[s : s+n] along dim  =>  dx = 0, dy at s : s+n"},
    {"slice",         file::view,         "y = x[s:e:k] along dim  =>  dx = 0, dy at s:e:k"},
    {"select",        file::view,         "y = x[i] along dim  =>  dx = 0, dy at i"},
    {"expand",        file::view,         "y = x broadcast  =>  dx = dy summed over the new dims"},
    {"squeeze",       file::view,         "y = x less size-1 dims  =>  dx = reshape(dy, x.shape)"},
    {"unsqueeze",     file::view,         "y = x plus a size-1 dim  =>  dx = reshape(dy, x.shape)"},
    {"clone",         file::view,         "y = a copy of x  =>  dx = dy"},
    {"to",            file::view,         "y = x cast or moved  =>  dx = dy cast or moved back"},
    {"contiguous",    file::view,         "clone(x) unless x is contiguous", composite},
    {"split",         file::view,         "narrow(x) per piece", composite},
    {"chunk",         file::view,         "split(x) into near-equal pieces", composite},

    // ---- elementwise (the engine sums broadcast gradients down to each input) ----
    {"add",           file::elementwise,  "y = a + b  =>  da = dy,  db = dy   (also x + s)"},
    {"sub",           file::elementwise,  "y = a - b  =>  da = dy,  db = -dy"},
    {"mul",           file::elementwise,  "y = a b  =>  da = dy b,  db = dy a   (also x s)"},
    {"div",           file::elementwise,  "y = a / b  =>  da = dy / b,  db = -dy y / b"},
    {"pow",           file::elementwise,  "y = a^b  =>  da = dy b a^(b-1),  db = dy y log a"},
    {"maximum",       file::elementwise,  "y = max(a, b)  =>  dy to the larger; ties split it"},
    {"minimum",       file::elementwise,  "y = min(a, b)  =>  dy to the smaller; ties split it"},
    {"where",         file::elementwise,  "y = c ? a : b  =>  da = c ? dy : 0,  db = c ? 0 : dy"},
    {"affine",        file::elementwise,  "y = alpha x + beta  =>  dx = alpha dy"},
    {"neg",           file::elementwise,  "y = -x  =>  dx = -dy"},
    {"exp",           file::elementwise,  "y = e^x  =>  dx = dy y"},
    {"log",           file::elementwise,  "y = log x  =>  dx = dy / x"},
    {"sqrt",          file::elementwise,  "y = sqrt x  =>  dx = dy / (2 y)"},
    {"rsqrt",         file::elementwise,  "y = x^(-1/2)  =>  dx = -dy y^3 / 2"},
    {"abs",           file::elementwise,  "y = |x|  =>  dx = dy sign(x)"},
    {"clamp",         file::elementwise,  "y = clamp(x, lo, hi)  =>  dx = dy where lo <= x <= hi"},
    {"tanh",          file::elementwise,  "y = tanh x  =>  dx = dy (1 - y^2)"},
    {"sigmoid",       file::elementwise,  "y = sigmoid x  =>  dx = dy y (1 - y)"},
    {"relu",          file::elementwise,  "y = max(x, 0)  =>  dx = dy where x > 0"},
    {"gelu",          file::elementwise,  "y = x Phi(x)  =>  dx = dy (Phi(x) + x phi(x))"},
    {"silu",          file::elementwise,  "y = x s, s = sigmoid x  =>  dx = dy s (1 + x (1 - s))"},
    {"softplus",      file::elementwise,  "y = log(1 + e^x)  =>  dx = dy sigmoid(x)"},
    {"erf",           file::elementwise,  "y = erf x  =>  dx = dy 2/sqrt(pi) e^(-x^2)"},

    // ---- reductions and scans ----
    {"sum",           file::reduce,       "y = sum of x over dims  =>  dx = dy broadcast to x"},
    {"max",           file::reduce,       "y = max over dims  =>  dx = dy [x == y] / #ties"},
    {"min",           file::reduce,       "y = min over dims  =>  dx = dy [x == y] / #ties"},
    {"logsumexp",     file::reduce,       "y = log sum e^x  =>  dx = dy e^(x - y)"},
    {"cumsum",        file::reduce,       "y_t = sum_{s<=t} x_s  =>  dx = reverse cumsum of dy"},
    {"topk",          file::reduce,       "v = x at indices  =>  dx = 0, dv added at indices"},
    {"sum_to",        file::reduce,       "y = x summed to a shape  =>  dx = dy expanded to x"},
    {"mean",          file::reduce,       "sum(x, dims) / n", composite},
    {"var",           file::reduce,       "sum((x - mean)^2, dims) / (n - correction)", composite},
    {"norm",          file::reduce,       "(sum |x|^p)^(1/p)", composite},

    // ---- linear algebra ----
    {"matmul",        file::linalg,       "Y = A B  =>  dA = dY B^T,  dB = A^T dY"},
    {"linear",        file::linalg,       "Y = X W^T + b  =>  dX = dY W, dW = dY^T X, db = sum dY"},

    // ---- indexing and joining: reading through an index and adding through it are adjoint ----
    {"embedding",     file::index,        "y = W[ids]  =>  dW = 0, each row of dy added at its id"},
    {"index_select",  file::index,        "y = x[index] along dim  =>  dx = index_add(0, dy)"},
    {"index_add",     file::index,        "y = x + src at index  =>  dx = dy,  dsrc = dy[index]"},
    {"gather",        file::index,        "y[p] = x[index[p]]  =>  dx = scatter_add(0, index, dy)"},
    {"scatter_add",   file::index,        "y = x + src at index  =>  dx = dy,  dsrc = gather(dy)"},
    {"concat",        file::index,        "y = [x_0, x_1, ..] along dim  =>  dx_i = dy at x_i"},
    {"pad",           file::index,        "y = pad(x, pads)  =>  dx = pad(dy, -pads)"},
    {"stack",         file::index,        "concat of unsqueeze(x_i, dim)", composite},

    // ---- softmax and the loss (fused: backward ops in core) ----
    {"softmax",       file::softmax,      "y = softmax x  =>  dx = y (dy - sum(dy y))"},
    {"log_softmax",   file::softmax,      "y = log_softmax x  =>  dx = dy - e^y sum(dy)"},
    {"cross_entropy", file::softmax,      "l = lse(z) - z[t], smoothed by s  =>  "
                                          "dz = dl (softmax(z) - (1 - s) onehot(t) - s/C)"},

    // ---- normalisation, dropout, attention, scan ----
    {"rms_norm",      file::norm,         "y = x r w, r = (mean x^2 + eps)^-1/2  =>  "
                                          "dx = r w dy - x r^3 mean(w dy x),  dw = sum dy x r"},
    {"layer_norm",    file::norm,         "y = xh w + b, xh = (x - mean) r  =>  "
                                          "dx = r (g - mean g - xh mean(g xh)),  g = w dy,  "
                                          "dw = sum dy xh,  db = sum dy"},
    {"dropout",       file::dropout,      "x * mask / (1 - p), mask ~ bernoulli(1 - p)", composite},
    {"attention",     file::attention,    "O = P V, P = softmax(s q k^T + mask)  =>  "
                                          "dV = P^T dO,  dS = P (dO V^T - rowsum(dO O)),  "
                                          "dq = s dS k,  dk = s dS^T q"},
    {"scan",          file::scan,         "h_t = a_t h_{t-1} + x_t  =>  "
                                          "g_t = dh_t + a_{t+1} g_{t+1},  dx_t = g_t,  "
                                          "da_t = g_t h_{t-1},  dh0 = a_0 g_0"},

    // ---- rules that live in nn/ ----
    {"swiglu",        file::swiglu,       "y = silu(g) u  =>  du = dy silu(g),  "
                                          "dg = dy u s (1 + g - silu(g)),  s = sigmoid(g)"},
    {"rope",          file::rope,         "y = x cos + P(x t)  =>  "
                                          "dx = dy cos + P(-dy t),  P: swap halves"},
    {"fused_linear",  file::fused_linear, "y_i = x W_i^T  =>  dx = sum dy_i W_i,  dW_i = dy_i^T x"},
};
// clang-format on

// Whether op is a line of the index (a rule or a composite).
constexpr bool in_derivative_index(std::string_view op) {
  for (const Derivative& d : derivatives) {
    if (d.op == op) return true;
  }
  return false;
}

// The index's spelling of a rule's name; not a constant expression (so a compile error where
// it is evaluated at compile time) when op is not a rule of the index.
consteval std::string_view indexed_rule(std::string_view op) {
  for (const Derivative& d : derivatives) {
    if (d.op == op && d.kind == Derivative::rule) return d.op;
  }
  throw "autograd::record: this op is not a rule of the derivative index (autograd/ops.h)";
}

}  // namespace autograd

// ---- views and copies (autograd/rules_view.cpp) ----
Tensor view(const Tensor& x, Shape shape);
Tensor reshape(const Tensor& x, Shape shape);
Tensor flatten(const Tensor& x, int64_t start_dim = 0, int64_t end_dim = -1);
Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1);
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims);
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
Tensor select(const Tensor& x, int64_t dim, int64_t index);
Tensor expand(const Tensor& x, const Shape& shape);
Tensor squeeze(const Tensor& x, int64_t dim);
Tensor squeeze(const Tensor& x);
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor contiguous(const Tensor& x);
Tensor clone(const Tensor& x);
Tensor to(const Tensor& x, DType dtype);
Tensor to(const Tensor& x, Device device);
// Sizes along dim (must add up to its length); split(x, n, dim) cuts pieces of n (the last
// may be shorter); chunk cuts into `chunks` near-equal pieces. All pieces are views.
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim = 0);
std::vector<Tensor> split(const Tensor& x, int64_t size, int64_t dim = 0);
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim = 0);

// ---- elementwise (autograd/rules_elementwise.cpp) ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& x, double exponent);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor add(const Tensor& x, double s);
Tensor mul(const Tensor& x, double s);
Tensor affine(const Tensor& x, double alpha, double beta);  // alpha * x + beta
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor clamp(const Tensor& x, double lo, double hi);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor gelu(const Tensor& x, bool tanh_approximation = false);
Tensor silu(const Tensor& x);
Tensor softplus(const Tensor& x);
Tensor erf(const Tensor& x);

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& x);
Tensor operator+(const Tensor& x, double s);
Tensor operator-(const Tensor& x, double s);
Tensor operator*(const Tensor& x, double s);
Tensor operator/(const Tensor& x, double s);
Tensor operator+(double s, const Tensor& x);
Tensor operator-(double s, const Tensor& x);
Tensor operator*(double s, const Tensor& x);
Tensor operator/(double s, const Tensor& x);

// ---- reductions (autograd/rules_reduce.cpp) ----
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// Largest / smallest value over dims; the gradient goes to the positions holding it, split
// evenly among ties.
Tensor max(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor min(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor logsumexp(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// Variance with Bessel-style correction (1 = unbiased, 0 = population).
Tensor var(const Tensor& x, const std::vector<int64_t>& dims = {}, int64_t correction = 1,
           bool keepdim = false);
// p-norm (p > 0) over dims: (sum |x|^p)^(1/p).
Tensor norm(const Tensor& x, double p = 2, const std::vector<int64_t>& dims = {},
            bool keepdim = false);
Tensor cumsum(const Tensor& x, int64_t dim);
struct TopKResult {
  Tensor values;   // differentiable
  Tensor indices;  // i64
};
TopKResult topk(const Tensor& x, int64_t k, int64_t dim = -1, bool largest = true);
// Reduces a broadcast gradient back to shape (sums broadcast dims).
Tensor sum_to(const Tensor& x, const Shape& shape);

// ---- linear algebra (autograd/rules_linalg.cpp) ----
Tensor matmul(const Tensor& a, const Tensor& b);
// x (..., in) @ weight (out, in)^T + bias (out,) -> (..., out). bias may be undefined.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = {});

// ---- indexing and joining (autograd/rules_index.cpp) ----
Tensor embedding(const Tensor& weight, const Tensor& ids);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);
Tensor concat(const std::vector<Tensor>& xs, int64_t dim = 0);
Tensor stack(const std::vector<Tensor>& xs, int64_t dim = 0);
Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, double value = 0);

// ---- softmax and the loss (autograd/rules_softmax.cpp) ----
Tensor softmax(const Tensor& x, int64_t dim = -1);
Tensor log_softmax(const Tensor& x, int64_t dim = -1);
enum class Reduction { none, mean, sum };
// logits (N, C) or (..., C); target (N,) or (...) integer ids. mean averages over the
// targets that are not ignore_index.
Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index = -100,
                     double label_smoothing = 0, Reduction reduction = Reduction::mean);

// ---- normalisation (autograd/rules_norm.cpp), over the last dim ----
// x (..., C); weight (C,) or undefined; bias (C,) or undefined.
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps = 1e-6);
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);

// ---- dropout (autograd/rules_dropout.cpp) ----
// Zeroes each element with probability p and scales the rest by 1/(1-p) when training;
// identity otherwise.
Tensor dropout(const Tensor& x, double p, bool training = true, Generator* gen = nullptr);

// ---- attention (autograd/rules_attention.cpp) ----
// q (B, H, Tq, D), k (B, Hkv, Tk, D), v (B, Hkv, Tk, Dv) -> (B, H, Tq, Dv).
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v,
                 const AttentionOptions& options = {});

// ---- scan (autograd/rules_scan.cpp) ----
// h_t = a_t * h_{t-1} + x_t along dim; h0 optional (shape of a without dim).
Tensor scan(const Tensor& a, const Tensor& x, int64_t dim, const Tensor& h0 = {});

// swiglu, rope and fused_linear are declared with their layers: nn/mlp.h, nn/rotary.h,
// nn/fused_linear.h.

}  // namespace mnemo

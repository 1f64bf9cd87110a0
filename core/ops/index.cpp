// Indexing, gathering and joining: argument checks, shape inference and output allocation,
// then one backend call (or, for concat and pad, copies into views of the output).
//
// Index tensors may be i32 or i64; they are converted to i64 here, so backends see one index
// type. Index values are range-checked by the backends (they hold the data); a bad index is a
// mnemo::Error naming the op, the index and the dim size. Negative indices are errors, not
// "count from the end": explicit beats clever for data that usually comes from a tokenizer.
//
// concat and pad need no kernel of their own: the output is allocated once and each input is
// copied into a core::narrow view of it (copy_ handles strides and dtype conversion).
#include "core/ops/index.h"

#include "core/backend.h"
#include "core/ops/factory.h"
#include "core/ops/view.h"

namespace mnemo {

namespace {

// index as i64 (checks that it is an integer tensor on x's device).
Tensor index_i64(const Tensor& index, const Tensor& x, std::string_view op) {
  MNEMO_CHECK(index.defined(), "{}: undefined index", op);
  MNEMO_CHECK(index.dtype() == DType::i64 || index.dtype() == DType::i32,
              "{}: index must be i32 or i64, got {} of shape {}", op, index.dtype(),
              shape_str(index.shape()));
  common_device(op, {&x, &index});
  return core::to(index, DType::i64);
}

// A (n,) index for index_select / index_add (a 0-d index counts as one element).
Tensor index_vector(const Tensor& index, const Tensor& x, std::string_view op) {
  Tensor i64 = index_i64(index, x, op);
  MNEMO_CHECK(i64.dim() <= 1, "{}: index must be 1-d, got shape {}", op, shape_str(i64.shape()));
  return i64.dim() == 0 ? core::view(i64, {1}) : i64;
}

// gather / scatter_add: index has x's rank, and no larger size than x outside dim.
void check_gather_index(const Tensor& x, int64_t dim, const Tensor& index, std::string_view op) {
  MNEMO_CHECK(index.dim() == x.dim(), "{}: index of shape {} has rank {} but input has rank {}", op,
              shape_str(index.shape()), index.dim(), x.dim());
  for (int64_t d = 0; d < x.dim(); ++d) {
    MNEMO_CHECK(d == dim || index.shape()[d] <= x.shape()[d],
                "{}: index of shape {} is larger than input {} at dim {}", op,
                shape_str(index.shape()), shape_str(x.shape()), d);
  }
}

// Reruns fn, prefixing an error with context (so that an index error found by the backend's
// index_select names embedding, the op the user called).
template <typename Fn>
Tensor with_context(std::string_view context, Fn&& fn) {
  try {
    return fn();
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", context, e.what()));
  }
}

}  // namespace

namespace core {

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  MNEMO_CHECK(x.defined(), "index_select: undefined input");
  MNEMO_CHECK(x.dim() > 0, "index_select: expected an input with at least one dim");
  const int64_t d = normalize_dim(dim, x.dim(), "index_select");
  Tensor idx = index_vector(index, x, "index_select");
  Shape shape = x.shape();
  shape[d] = idx.numel();
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  if (out.numel() > 0) backend_for(x.device()).index_select(x, d, idx, out);
  return out;
}

Tensor index_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  MNEMO_CHECK(x.defined() && src.defined(), "index_add: undefined input");
  MNEMO_CHECK(x.dim() > 0, "index_add: expected an input with at least one dim");
  common_device("index_add", {&x, &src});
  const int64_t d = normalize_dim(dim, x.dim(), "index_add");
  Tensor idx = index_vector(index, x, "index_add");
  Shape expected = x.shape();
  expected[d] = idx.numel();
  MNEMO_CHECK(src.shape() == expected,
              "index_add: src of shape {} does not match input {} with dim {} of size {}",
              shape_str(src.shape()), shape_str(x.shape()), d, idx.numel());
  const DType dtype = promote(x.dtype(), src.dtype());
  Tensor out = clone(to(x, dtype));
  if (src.numel() > 0) backend_for(x.device()).index_add(out, d, idx, to(src, dtype));
  return out;
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  MNEMO_CHECK(x.defined(), "gather: undefined input");
  MNEMO_CHECK(x.dim() > 0, "gather: expected an input with at least one dim");
  const int64_t d = normalize_dim(dim, x.dim(), "gather");
  Tensor idx = index_i64(index, x, "gather");
  check_gather_index(x, d, idx, "gather");
  Tensor out = Tensor::empty(idx.shape(), x.dtype(), x.device());
  if (out.numel() > 0) backend_for(x.device()).gather(x, d, idx, out);
  return out;
}

Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  MNEMO_CHECK(x.defined() && src.defined(), "scatter_add: undefined input");
  MNEMO_CHECK(x.dim() > 0, "scatter_add: expected an input with at least one dim");
  common_device("scatter_add", {&x, &src});
  const int64_t d = normalize_dim(dim, x.dim(), "scatter_add");
  Tensor idx = index_i64(index, x, "scatter_add");
  check_gather_index(x, d, idx, "scatter_add");
  MNEMO_CHECK(src.shape() == idx.shape(),
              "scatter_add: src of shape {} and index of shape {} differ", shape_str(src.shape()),
              shape_str(idx.shape()));
  const DType dtype = promote(x.dtype(), src.dtype());
  Tensor out = clone(to(x, dtype));
  if (src.numel() > 0) backend_for(x.device()).scatter_add(out, d, idx, to(src, dtype));
  return out;
}

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  MNEMO_CHECK(weight.defined() && ids.defined(), "embedding: undefined input");
  MNEMO_CHECK(weight.dim() == 2, "embedding: weight must be (V, C), got shape {}",
              shape_str(weight.shape()));
  Shape shape = ids.shape();
  shape.push_back(weight.shape()[1]);
  Tensor flat = reshape(ids, {ids.numel()});
  Tensor rows = with_context("embedding", [&] { return index_select(weight, 0, flat); });
  return view(rows, shape);
}

// Accumulates in f32 for bf16/f16 gradients (many rows may add into one id), then rounds.
Tensor embedding_backward(const Tensor& grad_out, const Tensor& ids, int64_t num_embeddings) {
  MNEMO_CHECK(grad_out.defined() && ids.defined(), "embedding_backward: undefined input");
  MNEMO_CHECK(num_embeddings >= 0, "embedding_backward: negative num_embeddings {}",
              num_embeddings);
  MNEMO_CHECK(grad_out.dim() == ids.dim() + 1 &&
                  Shape(grad_out.shape().begin(), grad_out.shape().end() - 1) == ids.shape(),
              "embedding_backward: grad of shape {} does not match ids of shape {} plus (C,)",
              shape_str(grad_out.shape()), shape_str(ids.shape()));
  const int64_t channels = grad_out.shape().back();
  const DType acc_dtype = stats_dtype(grad_out.dtype());
  Tensor dweight = zeros({num_embeddings, channels}, {acc_dtype, grad_out.device()});
  Tensor idx = reshape(index_i64(ids, grad_out, "embedding_backward"), {ids.numel()});
  if (idx.numel() > 0 && channels > 0) {
    Tensor src = reshape(to(grad_out, acc_dtype), {ids.numel(), channels});
    with_context("embedding_backward", [&] {
      backend_for(grad_out.device()).index_add(dweight, 0, idx, src);
      return dweight;
    });
  }
  return to(dweight, grad_out.dtype());
}

Tensor concat(const std::vector<Tensor>& xs, int64_t dim) {
  MNEMO_CHECK(!xs.empty(), "concat: expected at least one tensor");
  for (const Tensor& x : xs) MNEMO_CHECK(x.defined(), "concat: undefined input");
  const Tensor& first = xs[0];
  MNEMO_CHECK(first.dim() > 0, "concat: cannot join 0-d tensors (use stack)");
  const int64_t d = normalize_dim(dim, first.dim(), "concat");
  Shape shape = first.shape();
  DType dtype = first.dtype();
  shape[d] = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = xs[i];
    common_device("concat", {&first, &x});
    bool same = x.dim() == first.dim();
    for (int64_t k = 0; same && k < x.dim(); ++k) same = k == d || x.shape()[k] == first.shape()[k];
    MNEMO_CHECK(same, "concat: tensor {} has shape {}, expected {} except at dim {}", i,
                shape_str(x.shape()), shape_str(first.shape()), d);
    shape[d] += x.shape()[d];
    dtype = promote(dtype, x.dtype());
  }
  Tensor out = Tensor::empty(shape, dtype, first.device());
  int64_t start = 0;
  for (const Tensor& x : xs) {
    if (x.numel() > 0) copy_(narrow(out, d, start, x.shape()[d]), x);
    start += x.shape()[d];
  }
  return out;
}

Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, double value) {
  MNEMO_CHECK(x.defined(), "pad: undefined input");
  MNEMO_CHECK(pads.size() % 2 == 0 && pads.size() <= size_t(2 * x.dim()),
              "pad: expected (before, after) pairs for at most {} dims, got {} values", x.dim(),
              pads.size());
  // Per padded dim: the output size and the overlap of input and output (what is copied).
  Shape shape = x.shape();
  Tensor src = x;
  std::vector<std::pair<int64_t, int64_t>> dst_ranges;  // (dim, start in the output)
  for (size_t p = 0; p < pads.size() / 2; ++p) {
    const int64_t d = x.dim() - 1 - int64_t(p);
    const int64_t before = pads[2 * p], after = pads[2 * p + 1];
    shape[d] = x.shape()[d] + before + after;
    MNEMO_CHECK(shape[d] >= 0, "pad: pads ({}, {}) make dim {} of shape {} negative", before, after,
                d, shape_str(x.shape()));
    const int64_t kept = std::max<int64_t>(
        0, x.shape()[d] - std::max<int64_t>(0, -before) - std::max<int64_t>(0, -after));
    src = narrow(src, d, std::min<int64_t>(std::max<int64_t>(0, -before), x.shape()[d]), kept);
    dst_ranges.push_back({d, std::max<int64_t>(0, before)});
  }
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  if (out.numel() == 0) return out;
  fill_(out, value);
  if (src.numel() == 0) return out;
  Tensor dst = out;
  for (auto [d, start] : dst_ranges) dst = narrow(dst, d, start, src.shape()[d]);
  copy_(dst, src);
  return out;
}

}  // namespace core

Tensor one_hot(const Tensor& ids, int64_t num_classes, DType dtype) {
  MNEMO_CHECK(ids.defined(), "one_hot: undefined ids");
  MNEMO_CHECK(num_classes > 0, "one_hot: num_classes must be positive, got {}", num_classes);
  Shape shape = ids.shape();
  shape.push_back(num_classes);
  Tensor out = zeros(shape, {dtype, ids.device()});
  // A 1 scattered at each id along the new last dim.
  Tensor idx = core::unsqueeze(index_i64(ids, out, "one_hot"), -1);
  Tensor one = core::expand(scalar_tensor(1, {dtype, ids.device()}), idx.shape());
  if (idx.numel() > 0) {
    with_context("one_hot", [&] {
      backend_for(ids.device()).scatter_add(out, out.dim() - 1, idx, one);
      return out;
    });
  }
  return out;
}

}  // namespace mnemo

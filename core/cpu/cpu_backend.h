// The CPU backend: the complete reference implementation of every op.
//
// Eigen does the matrix products, OpenMP spreads elementwise work and reductions over cores,
// and inner loops are written so that the compiler vectorises them. bf16/f16 are loaded as
// f32, computed in f32 and rounded on store.
//
// The methods are implemented across core/cpu/*.cpp, one file per op family.
#pragma once

#include "core/backend.h"

namespace mnemo::cpu {

class CpuBackend final : public Backend {
 public:
  std::string_view name() const override { return "cpu"; }
  Allocator* allocator(Device device) override;

  // memory.cpp
  void copy(const Tensor& src, const Tensor& dst) override;
  void fill(const Tensor& dst, double value) override;
  void arange(const Tensor& out, double start, double step) override;

  // elementwise.cpp
  void unary(UnaryOp op, const UnaryParams& params, const Tensor& x, const Tensor& out) override;
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override;
  void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) override;

  // reduce.cpp
  void reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims,
              const Tensor& out) override;
  void arg_reduce(ArgReduceOp op, const Tensor& x, int64_t dim, const Tensor& out) override;
  void cumsum(const Tensor& x, int64_t dim, bool reverse, const Tensor& out) override;
  void topk(const Tensor& x, int64_t k, int64_t dim, bool largest, const Tensor& values,
            const Tensor& indices) override;

  // matmul.cpp
  void matmul(const Tensor& a, const Tensor& b, const Tensor& out) override;
  void matmul_segment_sum(const Tensor& a, const Tensor& b, int64_t segment,
                          const Tensor& out) override;

  // index.cpp
  void index_select(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) override;
  void index_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) override;
  void gather(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) override;
  void scatter_add(const Tensor& out, int64_t dim, const Tensor& index,
                   const Tensor& src) override;

  // softmax.cpp
  void softmax(const Tensor& x, int64_t dim, bool log, const Tensor& out) override;
  void softmax_backward(const Tensor& y, const Tensor& dy, int64_t dim, bool log,
                        const Tensor& dx) override;
  void cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                     double label_smoothing, const Tensor& loss, const Tensor& lse) override;
  void cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse,
                              const Tensor& dloss, int64_t ignore_index, double label_smoothing,
                              const Tensor& dlogits) override;

  // norm.cpp
  void rms_norm(const Tensor& x, const Tensor& weight, double eps, const Tensor& y,
                const Tensor& rstd) override;
  void rms_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& rstd,
                         const Tensor& dy, const Tensor& dx, const Tensor& dweight) override;
  void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                  const Tensor& y, const Tensor& mean, const Tensor& rstd) override;
  void layer_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& mean,
                           const Tensor& rstd, const Tensor& dy, const Tensor& dx,
                           const Tensor& dweight, const Tensor& dbias) override;

  // attention.cpp
  void attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                 bool causal, double scale, const Tensor& out, const Tensor& lse) override;
  void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                          bool causal, double scale, const Tensor& out, const Tensor& lse,
                          const Tensor& dout, const Tensor& dq, const Tensor& dk,
                          const Tensor& dv) override;

  // optim.cpp
  void adamw(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
             const Tensor& exp_avg_sq, const AdamWParams& params) override;

  // scan.cpp
  void scan(const Tensor& a, const Tensor& x, const Tensor& h0, const Tensor& h) override;
  void scan_backward(const Tensor& a, const Tensor& h, const Tensor& h0, const Tensor& dh,
                     const Tensor& da, const Tensor& dx, const Tensor& dh0) override;

  // random.cpp
  void random(RandomOp op, const RandomParams& params, PhiloxState state,
              const Tensor& out) override;
  void multinomial(const Tensor& probs, int64_t num_samples, bool replacement, PhiloxState state,
                   const Tensor& out) override;
};

CpuBackend& backend();

}  // namespace mnemo::cpu

// CudaBackend: the CUDA devices' entry in core's backend table.
//
// Each method makes the tensors' GPU the current device and calls the matching function of
// cuda/ops.h, which queues the work on that GPU's compute stream (cuda/context.h). Memory
// comes from the caching allocator (cuda/allocator.h). An op this backend cannot run throws
// mnemo::Error naming the op and the device: a CUDA build never silently falls back to the CPU.
//
// Registration: a static initialiser below puts the backend into core's table, so
// backend_for(Device::cuda(i)) finds it. Static libraries drop object files nothing refers
// to, hence executables link mnemo_cuda whole-archive (MNEMO_BACKEND_LIBS in CMake).
// Constructing the backend touches no CUDA API: a process that never uses a GPU never
// initialises the driver.
#include "core/backend.h"
#include "cuda/allocator.h"
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/ops.h"
#include "cuda/runtime.h"

namespace mnemo::cuda {

namespace {

// Throws unless device names a visible GPU.
void check_device(std::string_view op, Device device) {
  const int count = device_count();
  MNEMO_CHECK(device.index >= 0 && device.index < count,
              "{}: {} is not available ({} CUDA device{} visible{}{})", op, device, count,
              count == 1 ? "" : "s", count == 0 ? "; " : "", no_device_reason());
}

// The GPU an op's tensors live on (core has already checked that they share one).
int gpu_of(const Tensor& t) { return t.device().index; }

class CudaBackend final : public Backend {
 public:
  std::string_view name() const override { return "cuda"; }

  Allocator* allocator(Device device) override {
    check_device("cuda allocator", device);
    return &caching_allocator(device.index);
  }

  void synchronize(Device device) override {
    check_device("synchronize", device);
    DeviceGuard guard(device.index);
    MNEMO_CUDA_CHECK(cudaStreamSynchronize(stream(device.index)));
  }

  // Called by core's copy_ for two tensors on one GPU, or one on the CPU and one on a GPU.
  void copy(const Tensor& src, const Tensor& dst) override {
    if (src.device().is_cuda()) check_device("copy", src.device());
    if (dst.device().is_cuda()) check_device("copy", dst.device());
    cuda::copy(src, dst);
  }
  void fill(const Tensor& dst, double value) override {
    DeviceGuard g(gpu_of(dst));
    cuda::fill(dst, value);
  }
  void arange(const Tensor& out, double start, double step) override {
    DeviceGuard g(gpu_of(out));
    cuda::arange(out, start, step);
  }

  void unary(UnaryOp op, const UnaryParams& params, const Tensor& x, const Tensor& out) override {
    DeviceGuard g(gpu_of(out));
    cuda::unary(op, params, x, out);
  }
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override {
    DeviceGuard g(gpu_of(out));
    cuda::binary(op, a, b, out);
  }
  void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) override {
    DeviceGuard g(gpu_of(out));
    cuda::where(cond, a, b, out);
  }

  void reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims,
              const Tensor& out) override {
    DeviceGuard g(gpu_of(out));
    cuda::reduce(op, x, dims, out);
  }
  void arg_reduce(ArgReduceOp op, const Tensor& x, int64_t dim, const Tensor& out) override {
    DeviceGuard g(gpu_of(out));
    cuda::arg_reduce(op, x, dim, out);
  }
  void cumsum(const Tensor& x, int64_t dim, bool reverse, const Tensor& out) override {
    DeviceGuard g(gpu_of(out));
    cuda::cumsum(x, dim, reverse, out);
  }
  void topk(const Tensor& x, int64_t k, int64_t dim, bool largest, const Tensor& values,
            const Tensor& indices) override {
    DeviceGuard g(gpu_of(values));
    cuda::topk(x, k, dim, largest, values, indices);
  }

  void matmul(const Tensor& a, const Tensor& b, const Tensor& out) override {
    DeviceGuard g(gpu_of(out));
    cuda::matmul(a, b, out);
  }

  void index_select(const Tensor& x, int64_t dim, const Tensor& index,
                    const Tensor& out) override {
    DeviceGuard g(gpu_of(out));
    cuda::index_select(x, dim, index, out);
  }
  void index_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) override {
    DeviceGuard g(gpu_of(out));
    cuda::index_add(out, dim, index, src);
  }
  void gather(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) override {
    DeviceGuard g(gpu_of(out));
    cuda::gather(x, dim, index, out);
  }
  void scatter_add(const Tensor& out, int64_t dim, const Tensor& index,
                   const Tensor& src) override {
    DeviceGuard g(gpu_of(out));
    cuda::scatter_add(out, dim, index, src);
  }

  void softmax(const Tensor& x, int64_t dim, bool log, const Tensor& out) override {
    DeviceGuard g(gpu_of(out));
    cuda::softmax(x, dim, log, out);
  }
  void softmax_backward(const Tensor& y, const Tensor& dy, int64_t dim, bool log,
                        const Tensor& dx) override {
    DeviceGuard g(gpu_of(dx));
    cuda::softmax_backward(y, dy, dim, log, dx);
  }
  void cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                     double label_smoothing, const Tensor& loss, const Tensor& lse) override {
    DeviceGuard g(gpu_of(loss));
    cuda::cross_entropy(logits, target, ignore_index, label_smoothing, loss, lse);
  }
  void cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse,
                              const Tensor& dloss, int64_t ignore_index, double label_smoothing,
                              const Tensor& dlogits) override {
    DeviceGuard g(gpu_of(dlogits));
    cuda::cross_entropy_backward(logits, target, lse, dloss, ignore_index, label_smoothing,
                                 dlogits);
  }

  void rms_norm(const Tensor& x, const Tensor& weight, double eps, const Tensor& y,
                const Tensor& rstd) override {
    DeviceGuard g(gpu_of(y));
    cuda::rms_norm(x, weight, eps, y, rstd);
  }
  void rms_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& rstd,
                         const Tensor& dy, const Tensor& dx, const Tensor& dweight) override {
    DeviceGuard g(gpu_of(dx));
    cuda::rms_norm_backward(x, weight, rstd, dy, dx, dweight);
  }
  void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                  const Tensor& y, const Tensor& mean, const Tensor& rstd) override {
    DeviceGuard g(gpu_of(y));
    cuda::layer_norm(x, weight, bias, eps, y, mean, rstd);
  }
  void layer_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& mean,
                           const Tensor& rstd, const Tensor& dy, const Tensor& dx,
                           const Tensor& dweight, const Tensor& dbias) override {
    DeviceGuard g(gpu_of(dx));
    cuda::layer_norm_backward(x, weight, mean, rstd, dy, dx, dweight, dbias);
  }

  void attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                 bool causal, double scale, const Tensor& out, const Tensor& lse) override {
    DeviceGuard g(gpu_of(out));
    cuda::attention(q, k, v, mask, causal, scale, out, lse);
  }
  void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                          bool causal, double scale, const Tensor& out, const Tensor& lse,
                          const Tensor& dout, const Tensor& dq, const Tensor& dk,
                          const Tensor& dv) override {
    DeviceGuard g(gpu_of(dq));
    cuda::attention_backward(q, k, v, mask, causal, scale, out, lse, dout, dq, dk, dv);
  }

  void scan(const Tensor& a, const Tensor& x, const Tensor& h0, const Tensor& h) override {
    DeviceGuard g(gpu_of(h));
    cuda::scan(a, x, h0, h);
  }
  void scan_backward(const Tensor& a, const Tensor& h, const Tensor& h0, const Tensor& dh,
                     const Tensor& da, const Tensor& dx, const Tensor& dh0) override {
    DeviceGuard g(gpu_of(dx));
    cuda::scan_backward(a, h, h0, dh, da, dx, dh0);
  }

  void adamw(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
             const Tensor& exp_avg_sq, const AdamWParams& params) override {
    DeviceGuard g(gpu_of(param));
    cuda::adamw(param, grad, exp_avg, exp_avg_sq, params);
  }

  void random(RandomOp op, const RandomParams& params, PhiloxState state,
              const Tensor& out) override {
    DeviceGuard g(gpu_of(out));
    cuda::random(op, params, state, out);
  }
  void multinomial(const Tensor& probs, int64_t num_samples, bool replacement, PhiloxState state,
                   const Tensor& out) override {
    DeviceGuard g(gpu_of(out));
    cuda::multinomial(probs, num_samples, replacement, state, out);
  }
};

CudaBackend& instance() {
  static CudaBackend backend;
  return backend;
}

// Registers the backend before main runs (see the file comment for why this links).
[[maybe_unused]] const bool registered = [] {
  register_backend(DeviceType::cuda, &instance());
  return true;
}();

}  // namespace

}  // namespace mnemo::cuda

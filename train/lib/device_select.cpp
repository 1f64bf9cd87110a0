// Device selection (see device_select.h).
#include "train/lib/device_select.h"

#include <algorithm>
#include <ostream>

#include "autograd/ops.h"
#include "core/backend.h"
#include "core/error.h"
#include "mnemo_build_info.h"
#if MNEMO_HAVE_CUDA
#include "cuda/runtime.h"
#endif

namespace mnemo::train {

namespace {

int visible_gpus() {
#if MNEMO_HAVE_CUDA
  return cuda::device_count();
#else
  return 0;
#endif
}

// Runs the ops of one training step on a few elements; returns "" or what failed.
std::string probe(Device device) {
  try {
    TensorOptions on{.device = device};
    Tensor x = ones({2, 4, 8}, on);
    Tensor w = ones({8, 8}, on);
    Tensor h = rms_norm(linear(x, w), ones({8}, on));
    Tensor q = view(h, {2, 1, 4, 8});
    Tensor a = attention(q, q, q, {.causal = true});
    Tensor loss =
        cross_entropy(view(a, {8, 8}), zeros({8}, {.dtype = DType::i64, .device = device}));
    (void)loss.item();
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

}  // namespace

Device select_device(std::string_view spec, std::ostream& log, int gpu_hint) {
  if (spec != "auto") {
    const Device device = Device::parse(spec);
    if (device.is_cuda()) {
      MNEMO_CHECK(has_backend(DeviceType::cuda), "--device {}: this build has no CUDA backend",
                  spec);
      MNEMO_CHECK(device.index < visible_gpus(), "--device {}: {} GPU(s) visible", spec,
                  visible_gpus());
    }
    return device;
  }
  if (!has_backend(DeviceType::cuda) || visible_gpus() == 0) return Device::cpu();
  const Device gpu = Device::cuda(std::max(gpu_hint, 0) % visible_gpus());
  const std::string failure = probe(gpu);
  if (failure.empty()) return gpu;
  log << "device auto: using the CPU; the CUDA backend cannot run a training step yet (" << failure
      << ")\n";
  return Device::cpu();
}

}  // namespace mnemo::train

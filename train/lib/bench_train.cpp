// Training-step benchmark (see bench_train.h).
#include "train/lib/bench_train.h"

#include <algorithm>
#include <chrono>
#include <iostream>
#include <numeric>
#include <optional>

#include "autograd/engine.h"
#include "autograd/exact_grad.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/cpu/parallel.h"
#include "core/error.h"
#include "memory/segment_lm.h"
#include "mnemo_build_info.h"
#include "optim/adamw.h"
#include "optim/clip.h"
#include "optim/param_groups.h"
#include "train/distributed/communicator.h"
#include "train/lib/device_select.h"
#include "train/lib/grad_sync.h"
#include "train/lib/run_config.h"
#include "train/lib/segment_checkpoint.h"

#if MNEMO_HAVE_CUDA
#include "cuda/runtime.h"
#endif

namespace mnemo::train {

namespace {

// The median and the mean of the step times (median: robust to one preempted step).
std::pair<double, double> median_and_mean(const std::vector<double>& times) {
  std::vector<double> sorted = times;
  std::sort(sorted.begin(), sorted.end());
  const size_t n = sorted.size();
  const double median = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
  return {median, std::accumulate(times.begin(), times.end(), 0.0) / double(n)};
}

// o.warmup + o.steps iterations of prepare(i) (untimed: draw the batch) then step() (timed,
// from and to a synchronized device); returns the times of the last o.steps, in seconds.
template <typename Prepare, typename Step>
std::vector<double> time_steps(const BenchTrainOptions& o, Device device, Prepare prepare,
                               Step step) {
  std::vector<double> times;
  for (int64_t i = 0; i < o.warmup + o.steps; ++i) {
    prepare(i);
    synchronize(device);
    const auto start = std::chrono::steady_clock::now();
    step();
    synchronize(device);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (i >= o.warmup) times.push_back(seconds);
  }
  return times;
}

// The benchmark itself, on comm.device() (this rank's GPU under NCCL).
nlohmann::json bench_on(const BenchTrainOptions& o, const RunConfig& rc, int64_t batch, int64_t seq,
                        dist::Communicator& comm) {
  const Device device = comm.device();
  const int64_t ranks = comm.world_size();
  MNEMO_CHECK(batch % ranks == 0, "bench train: --batch {} must be a multiple of the {} ranks",
              batch, ranks);
  const int64_t share = batch / ranks;

  manual_seed(rc.train.seed);
  nn::LlamaForCausalLM model(rc.model);
  if (!device.is_cpu()) model.to(device);
  model.train();
  optim::AdamW optimizer(optim::decay_groups(model.named_parameters(), rc.train.weight_decay),
                         rc.train.lr, rc.train.beta1, rc.train.beta2, rc.train.adam_eps);
  std::vector<Tensor> params = model.parameters();
  if (ranks > 1) {
    NoGradGuard no_grad;
    for (Tensor& p : params) comm.broadcast(p, 0);
  }
  // The trainer's step (train/lib/trainer.cpp): the loss summed and scaled by the global
  // token count, gradients summed over ranks, exact (split-invariant) gradients where the
  // config asks for them (the CPU default).
  const bool exact = rc.train.exact_grads_on(device);
  GradientSync::Options sync_options;
  sync_options.bucket_bytes = int64_t(rc.train.bucket_mb * 1024 * 1024);
  sync_options.op = dist::ReduceOp::sum;
  sync_options.exact = exact;
  GradientSync sync(comm, params, sync_options);
  const double scale = 1.0 / double(batch * seq);
  Generator gen(rc.train.seed + 1);
  const TensorOptions ids_options{.dtype = DType::i64, .device = device};

#if MNEMO_HAVE_CUDA
  int64_t mallocs_before_timing = 0;
#endif
  Tensor x, y;
  auto prepare = [&](int64_t i) {
#if MNEMO_HAVE_CUDA
    if (i == o.warmup && device.is_cuda()) {
      mallocs_before_timing = cuda::memory_stats(device.index).device_mallocs;
    }
#endif
    (void)i;
    // A fresh batch every step, drawn before the clock starts.
    Tensor ids = randint(0, double(rc.model.vocab_size), {batch, seq + 1}, ids_options, &gen);
    ids = narrow(ids, 0, comm.rank() * share, share);  // this rank's rows
    x = contiguous(narrow(ids, 1, 0, seq));
    y = contiguous(narrow(ids, 1, 1, seq));
  };
  auto step = [&] {
    Tensor loss = model.loss(x, y, Reduction::sum);
    {
      std::optional<autograd::ExactGradGuard> guard;
      if (exact) guard.emplace(seq);
      backward(loss, full({}, scale, options_of(loss)));
    }
    sync.finish();
    const double norm = optim::global_grad_norm(params);
    optimizer.step(rc.train.grad_clip > 0 ? optim::clip_factor(norm, rc.train.grad_clip) : 1.0);
    optimizer.zero_grad();
  };
  const auto [median, mean] = median_and_mean(time_steps(o, device, prepare, step));
  if (comm.rank() != 0) return nullptr;  // rank 0 reports for the job
  nlohmann::json report{{"bench", "train"},
                        {"tokens_per_s", double(batch * seq) / median},
                        {"ms_per_step", median * 1e3},
                        {"ms_per_step_mean", mean * 1e3},
                        {"batch", batch},
                        {"seq", seq},
                        {"steps", o.steps},
                        {"threads", num_threads()},
                        {"ranks", ranks},
                        {"exact_grads", exact},
                        {"device", device.str()},
                        {"parameters", model.num_parameters()}};
#if MNEMO_HAVE_CUDA
  if (device.is_cuda()) {
    // The caching allocator's view of the run; a steady-state step should call cudaMalloc 0
    // times (timed_step_mallocs).
    const cuda::MemoryStats m = cuda::memory_stats(device.index);
    report["gpu_memory"] = {{"peak_allocated_bytes", m.peak_allocated_bytes},
                            {"reserved_bytes", m.reserved_bytes},
                            {"device_mallocs", m.device_mallocs},
                            {"timed_step_mallocs", m.device_mallocs - mallocs_before_timing}};
    std::cerr << cuda::describe_memory(device.index) << "\n";
  }
#endif
  return report;
}

// The memory-augmented step (segment_step.h's micro-batch and the trainer's update, without
// grad_accum): `batch`
// streams of `segments` segments of `seq` random ids, lm.forward_backward from the initial
// state (the mechanism's own gradient flow: per segment, MRBP or BPTT), the global gradient
// norm with clipping, one AdamW step. The optimizer groups are decay_groups' (the trainer
// moves the scalar controls to a third group at another learning rate: same work).
nlohmann::json bench_segment_lm(const BenchTrainOptions& o, const RunConfig& rc, int64_t batch,
                                int64_t seq, Device device) {
  const int64_t S = rc.memory.segments;
  manual_seed(rc.train.seed);
  std::unique_ptr<memory::SegmentLM> lm = make_run_segment_lm(rc, rc.train.seed);
  MNEMO_CHECK(seq >= 1 && seq <= lm->segment_length(),
              "bench train: --seq {} must be in [1, {}] (the memory section's segment_length)", seq,
              lm->segment_length());
  if (!device.is_cpu()) lm->to(device);
  lm->train();
  optim::AdamW optimizer(optim::decay_groups(lm->named_parameters(), rc.train.weight_decay),
                         rc.train.lr, rc.train.beta1, rc.train.beta2, rc.train.adam_eps);
  const std::vector<Tensor> params = lm->parameters();
  Generator gen(rc.train.seed + 1);
  const TensorOptions ids_options{.dtype = DType::i64, .device = device};
  std::vector<Tensor> ids, targets;  // S segments of (batch, seq)
  auto prepare = [&](int64_t) {
    // A fresh batch of streams every step, cut into segments before the clock starts.
    const Tensor stream =
        randint(0, double(rc.model.vocab_size), {batch, S * seq + 1}, ids_options, &gen);
    ids.clear();
    targets.clear();
    for (int64_t s = 0; s < S; ++s) {
      ids.push_back(contiguous(narrow(stream, 1, s * seq, seq)));
      targets.push_back(contiguous(narrow(stream, 1, s * seq + 1, seq)));
    }
  };
  auto step = [&] {
    lm->forward_backward(ids, targets, lm->initial_state(batch));
    const double norm = optim::global_grad_norm(params);
    optimizer.step(rc.train.grad_clip > 0 ? optim::clip_factor(norm, rc.train.grad_clip) : 1.0);
    optimizer.zero_grad();
  };
  const auto [median, mean] = median_and_mean(time_steps(o, device, prepare, step));
  return {{"bench", "train"},
          {"mechanism", lm->mechanism()},
          {"tokens_per_s", double(batch * S * seq) / median},
          {"ms_per_step", median * 1e3},
          {"ms_per_step_mean", mean * 1e3},
          {"batch", batch},
          {"seq", seq},
          {"segments", S},
          {"steps", o.steps},
          {"threads", num_threads()},
          {"ranks", 1},
          {"exact_grads", false},
          {"device", device.str()},
          {"parameters", lm->num_parameters()}};
}

}  // namespace

nlohmann::json bench_train(const BenchTrainOptions& o) {
  RunConfig rc = load_run_config(o.config_file, o.overrides);
  const int64_t batch = o.batch > 0 ? o.batch : rc.train.batch_size;
  const int64_t seq = o.seq > 0 ? o.seq : rc.train.seq_len;
  MNEMO_CHECK(o.steps >= 1, "bench train: --steps must be >= 1, got {}", o.steps);
  if (rc.memory.enabled) {
    // A memory section: the memory-augmented step, measured in one process.
    if (rc.train.threads > 0) set_num_threads(int(rc.train.threads));
    const Device device = select_device(o.device.empty() ? rc.train.device : o.device, std::cerr);
    MNEMO_CHECK(dist::make_communicator()->world_size() == 1,
                "bench train: the memory-augmented step is measured in one process; run it "
                "without mpirun");
    return bench_segment_lm(o, rc, batch, seq, device);
  }
  MNEMO_CHECK(seq <= rc.model.max_position_embeddings,
              "bench train: --seq {} exceeds max_position_embeddings {}", seq,
              rc.model.max_position_embeddings);
  // Under mpirun: data parallel, each rank on batch / ranks of the sequences, gradients
  // averaged as in training (over NCCL on GPUs, each rank on its own GPU); the figure is the
  // global tokens per second.
  if (rc.train.threads > 0) set_num_threads(int(rc.train.threads));
  const Device asked = select_device(o.device.empty() ? rc.train.device : o.device, std::cerr);
  const std::unique_ptr<dist::Communicator> comm = dist::make_communicator({}, asked);
  // From here on an error on one rank ends the whole job (the others would wait forever).
  return dist::run_or_abort(*comm, [&] { return bench_on(o, rc, batch, seq, *comm); });
}

}  // namespace mnemo::train

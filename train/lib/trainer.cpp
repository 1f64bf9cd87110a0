// The run skeleton of trainer.h: set-up, resume, the loop, evaluation, plots, checkpoints,
// signals and the data-parallel plumbing, around a TrainStep.
#include "train/lib/trainer.h"

#include <cmath>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <ostream>
#include <sstream>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/cpu/allocator_stats.h"
#include "core/cpu/parallel.h"
#include "core/error.h"
#include "core/profiler.h"
#include "optim/adamw.h"
#include "optim/clip.h"
#include "optim/schedule.h"
#include "train/io/checkpoint_dir.h"
#include "train/io/config.h"
#include "train/io/files.h"
#include "train/io/loss_svg.h"
#include "train/io/metrics.h"
#include "train/io/progress.h"
#include "train/lib/checkpoint.h"
#include "train/lib/device_select.h"
#include "train/lib/grad_sync.h"
#include "train/lib/run_support.h"
#include "train/lib/zero_adamw.h"

#if MNEMO_HAVE_CUDA
#include "cuda/runtime.h"
#endif

namespace mnemo::train {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

class Run {
 public:
  Run(const TrainOptions& options, const StepFactory& make_step, std::ostream& log)
      : options_(options),
        make_step_(make_step),
        comm_(dist::make_communicator()),
        root_(comm_->rank() == 0),
        log_(root_ ? log : quiet_) {}

  // In a job of several ranks an error on one rank ends them all (dist::abort_job), through
  // the communicator of the moment: set_up replaces the MPI one by NCCL's on GPUs.
  TrainSummary go() {
    try {
      const std::string checkpoint = checkpoint_to_resume(options_, log_);
      if (checkpoint.empty()) {
        start_fresh();
      } else {
        resume_from(checkpoint);
      }
      return loop();
    } catch (const std::exception& e) {
      if (comm_->world_size() == 1) throw;
      dist::abort_job(*comm_, e);
    }
  }

 private:
  RunContext context() const {
    return RunContext{rc_,  device_, *comm_, exact_grads_, fs::path(options_.out_dir) / "data",
                      step_};
  }

  // The step and its model first (a bad model or memory key fails before any data is
  // prepared), then the device, the communicator for it, the optimizer and the schedule.
  void set_up(RunConfig rc) {
    rc_ = std::move(rc);
    const TrainSettings& t = rc_.train;
    manual_seed(t.seed);  // the process-wide generator (dropout), and any model that uses it
    step_fn_ = make_step_(rc_);
    check_same_on_every_rank();
    const int64_t world = comm_->world_size();
    MNEMO_CHECK(t.batch_size % (world * t.grad_accum) == 0,
                "config: 'train.batch_size' ({}) must be a multiple of the number of ranks ({}) "
                "times 'train.grad_accum' ({})",
                t.batch_size, world, t.grad_accum);
    MNEMO_CHECK(options_.zero == 0 || options_.zero == 1, "train: --zero must be 0 or 1, got {}",
                options_.zero);
    if (t.threads > 0) set_num_threads(int(t.threads));
    device_ = select_device(options_.device.empty() ? t.device : options_.device, log_,
                            comm_->local_rank());
    // The communicator for that device (NCCL on this rank's GPU under mpirun), whose device
    // this rank then computes on.
    comm_ = dist::for_device(std::move(comm_), device_);
    device_ = comm_->device();
    MNEMO_CHECK(options_.zero == 0 || device_.is_cpu(),
                "train: --zero 1 runs on the CPU only for now (its shards live in host memory)");
    exact_grads_ = t.exact_grads_on(device_);
    nn::Module& model = step_fn_->model();
    if (!device_.is_cpu()) model.to(device_);
    model.train();
    if (options_.zero == 1) {
      optimizer_ = std::make_unique<ZeroAdamW>(*comm_, step_fn_->param_groups(), t.lr, t.beta1,
                                               t.beta2, t.adam_eps, dist::ReduceOp::sum);
    } else {
      optimizer_ = std::make_unique<optim::AdamW>(step_fn_->param_groups(), t.lr, t.beta1, t.beta2,
                                                  t.adam_eps);
    }
    schedule_ = make_schedule(t);
    if (world > 1) {
      log_ << fmt::format("data parallel: {} ranks ({}), {} rows per rank per micro-batch\n", world,
                          comm_->backend(), t.batch_size / t.grad_accum / world);
    }
    fs::create_directories(options_.out_dir);
  }

  // Every rank must train the same run: compare the merged configs' hashes (one clear error
  // on every rank instead of a hang later).
  void check_same_on_every_rank() {
    if (comm_->world_size() == 1) return;
    dist::check_same_on_all_ranks(
        *comm_, "the run config (hash of --config merged with --set and --steps)",
        fmt::format("{:016x}", std::hash<std::string>{}(rc_.json.dump())));
  }

  // Rank 0's parameters everywhere (they are equal already when seeded alike; this makes it
  // so whatever the initialisation), and the gradient hooks that sum gradients across ranks
  // (unless the optimizer reduces them itself: ZeRO reduce-scatters).
  void start_data_parallel() {
    std::vector<Tensor> params = step_fn_->model().parameters();
    if (comm_->world_size() > 1) {
      NoGradGuard no_grad;
      for (Tensor& p : params) comm_->broadcast(p, 0);
    }
    if (!optimizer_->reduces_gradients()) {
      GradientSync::Options sync;
      sync.bucket_bytes = int64_t(rc_.train.bucket_mb * 1024 * 1024);
      sync.op = dist::ReduceOp::sum;  // the losses are scaled by the global count (trainer.h)
      sync.exact = exact_grads_;
      sync_ = std::make_unique<GradientSync>(*comm_, params, sync);
    }
  }

  void start_fresh() {
    set_up(load_run_config(options_.config_file, options_.overrides, options_.steps));
    // A directory left by a run that crashed before its first checkpoint starts over. Rank 0
    // prepares the data; the other ranks wait for it (one file system for all ranks).
    if (root_) {
      fs::remove(fs::path(options_.out_dir) / "metrics.jsonl");
      step_fn_->prepare_data(context(), log_);
      io::write_file_atomic((fs::path(options_.out_dir) / "run_config.json").string(),
                            rc_.json.dump(2) + "\n");
    }
    comm_->barrier();
    start_data_parallel();
    step_fn_->open_data(context());
    step_ = 0;
    log_ << fmt::format("model: {}; device {}, {} threads\n", step_fn_->describe(), device_.str(),
                        num_threads());
  }

  void resume_from(const std::string& checkpoint) {
    const std::string state_file = checkpoint + "/trainer_state.json";
    const json state = io::load_json_file(state_file);
    MNEMO_CHECK(state.is_object() && state.contains("run_config") && state.contains("step"),
                "{}: missing run_config or step", state_file);
    try {
      json config = state["run_config"];
      for (const std::string& assignment : options_.overrides) {
        apply_run_override(config, assignment);
      }
      if (options_.steps > 0) config["train"]["steps"] = options_.steps;
      if (!options_.config_file.empty()) check_config_matches(config);
      set_up(run_config_from_json(config, state_file));
      step_fn_->load_model(checkpoint);
      load_optimizer_state(checkpoint, *optimizer_);
      start_data_parallel();
      step_ = state["step"].get<int64_t>();
      optimizer_->set_steps_taken(state.value("optimizer_steps", step_));
      step_fn_->open_data(context());
      step_fn_->load_data_state(state);
      if (state.contains("rng")) {  // the process-wide generator (dropout, if a model uses it)
        std::lock_guard<std::mutex> lock(default_generator_mutex());
        default_generator().set_state(state["rng"]["seed"].get<uint64_t>(),
                                      state["rng"]["offset"].get<uint64_t>());
      }
      tokens_seen_ = state.value("tokens_seen", int64_t(0));
      skipped_steps_ = state.value("skipped_steps", int64_t(0));
    } catch (const json::exception& e) {
      fail("{}: {}", state_file, e.what());
    }
    if (root_) {
      io::MetricsLog::truncate_after((fs::path(options_.out_dir) / "metrics.jsonl").string(),
                                     step_);
    }
    comm_->barrier();
    log_ << "resumed from " << checkpoint << " at step " << step_ << "\n";
  }

  // --config beside --resume: the run continues with its own config, so a different one is
  // an error naming what differs rather than silently ignored.
  void check_config_matches(const json& resumed) const {
    const json given =
        load_run_config(options_.config_file, options_.overrides, options_.steps).json;
    const std::vector<std::string> diffs = config_differences(resumed, given);
    if (diffs.empty()) return;
    std::string listed;
    for (size_t i = 0; i < std::min<size_t>(3, diffs.size()); ++i) {
      listed += (i ? "; " : "") + diffs[i];
    }
    if (diffs.size() > 3) listed += fmt::format("; and {} more", diffs.size() - 3);
    fail(
        "train --resume: {} was started from another config than {} ({}); drop --config to "
        "continue the run as it was, or choose another --out",
        options_.out_dir, options_.config_file, listed);
  }

  json trainer_state() const {
    uint64_t rng_seed = 0, rng_offset = 0;
    {
      std::lock_guard<std::mutex> lock(default_generator_mutex());
      rng_seed = default_generator().seed();
      rng_offset = default_generator().offset();
    }
    json state{{"step", step_},
               {"optimizer_steps", optimizer_->steps_taken()},
               {"rng", {{"seed", rng_seed}, {"offset", rng_offset}}},
               {"tokens_seen", tokens_seen_},
               {"skipped_steps", skipped_steps_},
               {"run_config", rc_.json}};
    step_fn_->save_data_state(state);
    return state;
  }

  // Every rank takes part in gathering a sharded optimizer's state; rank 0 writes.
  std::string write_checkpoint() {
    // Never a checkpoint of non-finite weights over a good one (every rank holds the same
    // weights, so every rank stops here alike).
    MNEMO_CHECK(weights_finite(),
                "train: the weights are not finite after step {}; no checkpoint written (the last "
                "one in {} is kept; try a lower lr)",
                step_, options_.out_dir);
    const optim::NamedTensors moments = optimizer_->state_tensors();
    std::string path;
    if (root_) {
      path = save_checkpoint(options_.out_dir, step_, [&](const fs::path& dir) {
        step_fn_->write_model(dir);
        write_optimizer_state(dir, moments);
        io::write_file_atomic((dir / "trainer_state.json").string(),
                              trainer_state().dump(2) + "\n");
      });
    }
    comm_->barrier();
    return path;
  }

  // One optimizer update: grad_accum micro-batches, the gradient reduced across ranks,
  // clipped and applied. A non-finite loss or gradient norm stops the run with an error
  // naming the step, or, with train.skip_non_finite > 0, skips the update (the gradient is
  // dropped, the weights and the optimizer's moments stay as they were). Every rank sees the
  // same global loss and norm, so every rank decides alike.
  struct Update {
    double loss = 0, norm = 0;  // the update's mean loss over all ranks, the gradient norm
    bool skipped = false;
  };
  Update update(const RunContext& run, double lr) {
    const TrainSettings& t = rc_.train;
    double loss_share = 0;
    for (int64_t m = 0; m < t.grad_accum; ++m) {
      // Accumulate, then reduce once: from the hooks of the last micro-batch's backward, or
      // all in finish() when a micro-batch runs several backward passes.
      if (sync_) sync_->set_enabled(m + 1 == t.grad_accum && step_fn_->single_backward());
      loss_share += step_fn_->micro_batch(run);
    }
    if (sync_) sync_->finish();
    Update u{global_sum(loss_share), optimizer_->grad_norm(), false};
    if (!std::isfinite(u.loss) || !std::isfinite(u.norm)) {
      MNEMO_CHECK(t.skip_non_finite > 0,
                  "train: the {} became {} at step {} (try a lower lr or grad_clip; "
                  "train.skip_non_finite skips such steps)",
                  std::isfinite(u.loss) ? "gradient norm" : "loss",
                  std::isfinite(u.loss) ? u.norm : u.loss, step_ + 1);
      optimizer_->zero_grad();
      u.skipped = true;
      return u;
    }
    optimizer_->set_lr(lr);
    optimizer_->step(t.grad_clip > 0 ? optim::clip_factor(u.norm, t.grad_clip) : 1.0);
    optimizer_->zero_grad();
    return u;
  }

  // One step: begin_step, updates_per_step() updates, end_step. Returns the step's line of
  // metrics.jsonl without "step", "lr" and "tokens_per_s": the loss and gradient norm (means
  // over the updates that were not skipped), "skipped_updates" when some were, and end_step's
  // figures.
  json train_step(double lr) {
    const RunContext run = context();
    step_fn_->begin_step(run);
    const int64_t updates = step_fn_->updates_per_step();
    double loss = 0, norm = 0;
    int64_t skipped = 0;
    for (int64_t u = 0; u < updates; ++u) {
      const Update r = update(run, lr);
      if (r.skipped) {
        ++skipped;
        continue;
      }
      loss += r.loss;
      norm += r.norm;
    }
    json line = json::object();
    RunContext done = run;  // end_step's: with the step's loss
    if (skipped < updates) {
      done.loss = loss / double(updates - skipped);
      line["loss"] = done.loss;
      line["grad_norm"] = norm / double(updates - skipped);
    }
    if (skipped > 0) line["skipped_updates"] = skipped;
    line.update(step_fn_->end_step(done));
    return line;
  }

  // What the process holds after the step, so that a leak shows in metrics.jsonl: its
  // resident memory, and the bytes in tensors of the caching allocator of the run's device
  // (flat from step to step once training has warmed up: tests/train/test_trainer.cpp).
  void add_memory_figures(json& line) const {
    line["rss_bytes"] = resident_bytes();
    if (device_.is_cpu()) {
      line["tensor_bytes"] = int64_t(cpu::allocator_stats().allocated_bytes);
    }
#if MNEMO_HAVE_CUDA
    if (device_.is_cuda()) line["tensor_bytes"] = cuda::memory_stats(device_.index).allocated_bytes;
#endif
  }

  // Whether every weight of the model is finite (read on the host: at checkpoint time only).
  bool weights_finite() {
    for (const Tensor& p : step_fn_->model().parameters()) {
      for (float v : p.to_vector<float>()) {
        if (!std::isfinite(v)) return false;
      }
    }
    return true;
  }

  // The sum of a per-rank value over ranks.
  double global_sum(double value) {
    if (comm_->world_size() == 1) return value;
    Tensor t = full({1}, value, {.dtype = DType::f64, .device = comm_->device()});
    comm_->all_reduce(t, dist::ReduceOp::sum);
    return t.item();
  }

  // The loop. In a data-parallel run every rank steps; rank 0 alone evaluates, logs, plots and
  // writes checkpoints (the others wait for it at the next collective).
  TrainSummary loop() {
    const TrainSettings& t = rc_.train;
    const fs::path out(options_.out_dir);
    History history;
    std::optional<io::MetricsLog> metrics;
    std::optional<io::Progress> progress;
    if (root_) {
      history = read_history(out / "metrics.jsonl", step_fn_->curve_keys());
      metrics.emplace(out.string());
      progress.emplace(t.steps, t.log_interval);
    }
    StopSignals signals;
    TrainSummary summary;
    const int64_t tokens_per_step = step_fn_->tokens_per_step();

    const auto [train_key, val_key] = step_fn_->curve_keys();
    auto evaluate_and_plot = [&]() {
      if (!root_) return;
      const Validation v = step_fn_->validate(context());
      summary.val_loss = v.metrics.value("val_loss", 0.0);
      summary.val_bpb = v.metrics.value("val_bpb", 0.0);
      json line{{"step", step_}};
      line.update(v.metrics);
      metrics->write(line);
      history.val.emplace_back(step_, v.curve);
      io::write_loss_svg((out / "loss.svg").string(), history.train, history.val,
                         step_fn_->title() + ": " + out.filename().string());
      std::string said;
      for (const auto& [key, value] : v.metrics.items()) {
        said += fmt::format(
            "{}{} {}", said.empty() ? "" : ", ", key,
            value.is_number_float() ? fmt::format("{:.4f}", value.get<double>()) : value.dump());
      }
      progress->message(fmt::format("step {}: {}", step_, said));
    };

    const int64_t end = options_.stop_at > 0 ? std::min(options_.stop_at, t.steps) : t.steps;
    while (step_ < end) {
      const double lr = schedule_.at(step_);
      const auto start = Clock::now();
      json line = [&] {
        // "step N": the trace, Nsight, and the summary's "% steps" column (core/profiler.h).
        profiler::ScopedRange range(fmt::format("{}{}", profiler::kStepRangePrefix, step_ + 1));
        return train_step(lr);
      }();
      const double seconds = seconds_since(start);
      ++step_;
      tokens_seen_ += tokens_per_step;
      const double rate = double(tokens_per_step) / seconds;
      if (line.contains("skipped_updates")) {
        // Skipped (train.skip_non_finite): counted, and at most that many steps in a row.
        ++skipped_steps_;
        ++skipped_in_a_row_;
        line["skipped_steps"] = skipped_steps_;
        MNEMO_CHECK(skipped_in_a_row_ <= t.skip_non_finite,
                    "train: {} steps in a row up to step {} had a non-finite loss or gradient "
                    "norm (train.skip_non_finite = {}); stopping (try a lower lr)",
                    skipped_in_a_row_, step_, t.skip_non_finite);
        if (root_)
          log_ << fmt::format("step {}: non-finite loss or gradient norm, skipped\n", step_);
      } else {
        skipped_in_a_row_ = 0;
      }
      if (line.contains("loss")) {
        const double loss = line["loss"].get<double>();
        history.train.emplace_back(step_, line.value(train_key, loss));
        summary.last_loss = loss;
        if (root_) progress->update(step_, loss, rate);
      }
      if (root_) {
        line["step"] = step_;
        line["lr"] = lr;
        line["tokens_per_s"] = rate;
        add_memory_figures(line);
        metrics->write(line);
      }

      const bool last = step_ == t.steps;
      if (t.eval_interval > 0 && step_ % t.eval_interval == 0 && !last) evaluate_and_plot();
      // A signal stops every rank at the same step (mpirun forwards it, but not at the same
      // instant).
      if (global_sum(stop_requested() ? 1.0 : 0.0) > 0) {
        summary.interrupted = true;
        break;
      }
      if (t.checkpoint_interval > 0 && step_ % t.checkpoint_interval == 0 && step_ != end) {
        summary.checkpoint = write_checkpoint();
      }
    }
    summary.stopped = !summary.interrupted && step_ < t.steps;
    if (progress) progress->finish();
    if (!summary.interrupted && !summary.stopped) evaluate_and_plot();
    summary.checkpoint = write_checkpoint();
    summary.steps_done = step_;
    if (summary.interrupted || summary.stopped) {
      log_ << (summary.interrupted ? "interrupted" : "stopped (--stop-at)") << " at step " << step_
           << " of " << t.steps << "; checkpoint " << summary.checkpoint
           << " written; continue with --resume\n";
    } else {
      log_ << fmt::format(
          "done: {} steps, loss {:.4f}, val_loss {:.4f}, val_bpb {:.4f}; checkpoint {}\n", step_,
          summary.last_loss, summary.val_loss, summary.val_bpb, summary.checkpoint);
    }
#if MNEMO_HAVE_CUDA
    if (device_.is_cuda()) log_ << cuda::describe_memory(device_.index) << "\n";
#endif
    return summary;
  }

  TrainOptions options_;
  const StepFactory& make_step_;
  std::unique_ptr<dist::Communicator> comm_;
  bool root_ = true;          // rank 0: logs, evaluates, writes checkpoints
  std::ostringstream quiet_;  // where the other ranks' log lines go
  std::ostream& log_;
  RunConfig rc_;
  Device device_ = Device::cpu();
  bool exact_grads_ = false;  // split-invariant f64 gradient sums (train.exact_grads)
  std::unique_ptr<TrainStep> step_fn_;
  std::unique_ptr<optim::Optimizer> optimizer_;  // AdamW, or ZeroAdamW with --zero 1
  std::unique_ptr<GradientSync> sync_;           // none when the optimizer reduces gradients
  optim::LrSchedule schedule_;
  int64_t step_ = 0;
  int64_t tokens_seen_ = 0;
  int64_t skipped_steps_ = 0;     // steps skipped for a non-finite loss or norm, in the run
  int64_t skipped_in_a_row_ = 0;  // ... since the last step that was not
};

}  // namespace

TrainSummary run_training(const TrainOptions& options, const StepFactory& make_step,
                          std::ostream& log) {
  Run run(options, make_step, log);
  return run.go();
}

}  // namespace mnemo::train

// The training loop of `mnemo train` (see trainer.h for the run directory and the step).
#include "train/lib/trainer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <mutex>
#include <optional>
#include <ostream>
#include <sstream>

#include "autograd/engine.h"
#include "autograd/exact_grad.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/cpu/parallel.h"
#include "core/error.h"
#include "core/profiler.h"
#include "mnemo_build_info.h"
#include "optim/adamw.h"
#include "optim/clip.h"
#include "optim/param_groups.h"
#include "optim/schedule.h"
#include "train/io/checkpoint_dir.h"
#include "train/io/config.h"
#include "train/io/files.h"
#include "train/io/metrics.h"
#include "train/lib/checkpoint.h"
#include "train/lib/device_select.h"
#include "train/lib/evaluate.h"
#include "train/lib/grad_sync.h"
#include "train/lib/run_config.h"
#include "train/lib/run_support.h"
#include "train/lib/zero_adamw.h"

#if MNEMO_HAVE_CUDA
#include "cuda/runtime.h"
#endif
#include "train/text/corpus.h"
#include "train/text/dataset.h"
#include "train/text/loader.h"
#include "train/text/shard.h"
#include "train/text/tokenizer.h"

namespace mnemo::train {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// ---- the run ----------------------------------------------------------------------------

class Run {
 public:
  Run(const TrainOptions& options, std::ostream& log)
      : options_(options),
        comm_(dist::make_communicator()),
        root_(comm_->rank() == 0),
        log_(root_ ? log : quiet_) {}

  // In a job of several ranks an error on one rank must stop all of them (the others would
  // wait in their next collective forever): it ends the job with the error's exit status.
  TrainSummary go_or_abort() {
    if (comm_->world_size() == 1) return go();
    try {
      return go();
    } catch (const Error& e) {
      comm_->abort(2, fmt::format("mnemo: rank {}: {}", comm_->rank(), e.what()));
    } catch (const std::exception& e) {
      comm_->abort(1, fmt::format("mnemo: rank {}: internal error: {}", comm_->rank(), e.what()));
    }
    return {};  // not reached: abort() does not return
  }

  TrainSummary go() {
    const std::string checkpoint = checkpoint_to_resume(options_, log_);
    if (checkpoint.empty()) {
      start_fresh();
    } else {
      resume_from(checkpoint);
    }
    return loop();
  }

 private:
  void setup_common() {
    const TrainSettings& t = rc_.train;
    // A memory section belongs to the segment trainer (train/lib/segment_trainer.h, which
    // `mnemo train` dispatches to); here it would be silently dropped.
    MNEMO_CHECK(!rc_.memory.enabled,
                "train: this config has a memory section ({}); train it with run_train "
                "(commands.h) or `mnemo train`, which pick the segment trainer",
                rc_.memory.mechanism);
    check_same_on_every_rank();
    const int64_t world = comm_->world_size();
    MNEMO_CHECK(t.batch_size % (world * t.grad_accum) == 0,
                "config: 'train.batch_size' ({}) must be a multiple of the number of ranks ({}) "
                "times 'train.grad_accum' ({})",
                t.batch_size, world, t.grad_accum);
    if (t.threads > 0) set_num_threads(int(t.threads));
    device_ = select_device(options_.device.empty() ? t.device : options_.device, log_,
                            comm_->local_rank());
    // The communicator for that device (NCCL on this rank's GPU under mpirun), whose device
    // this rank then computes on.
    comm_ = dist::for_device(std::move(comm_), device_);
    device_ = comm_->device();
    MNEMO_CHECK(options_.zero == 0 || device_.is_cpu(),
                "train: --zero 1 runs on the CPU only for now (its shards live in host memory)");
    if (world > 1) {
      log_ << fmt::format("data parallel: {} ranks ({}), {} sequences per rank per micro-batch\n",
                          world, comm_->backend(), t.batch_size / t.grad_accum / world);
    }
    fs::create_directories(options_.out_dir);
    data_dir_ = fs::path(options_.out_dir) / "data";
  }

  void build_model_and_optimizer() {
    manual_seed(rc_.train.seed);
    model_ = std::make_shared<nn::LlamaForCausalLM>(rc_.model);
    if (!device_.is_cpu()) model_->to(device_);
    model_->train();
    auto groups = optim::decay_groups(model_->named_parameters(), rc_.train.weight_decay);
    MNEMO_CHECK(options_.zero == 0 || options_.zero == 1, "train: --zero must be 0 or 1, got {}",
                options_.zero);
    if (options_.zero == 1) {
      zero_ = std::make_unique<ZeroAdamW>(*comm_, std::move(groups), rc_.train.lr, rc_.train.beta1,
                                          rc_.train.beta2, rc_.train.adam_eps);
    } else {
      optimizer_ = std::make_unique<optim::AdamW>(std::move(groups), rc_.train.lr, rc_.train.beta1,
                                                  rc_.train.beta2, rc_.train.adam_eps);
    }
    schedule_ = make_schedule(rc_.train);
  }

  // Every rank must train the same run: compare the merged configs (one clear error on all).
  void check_same_on_every_rank() {
    if (comm_->world_size() == 1) return;
    const std::vector<std::string> configs = comm_->all_gather_string(rc_.json.dump());
    for (size_t r = 1; r < configs.size(); ++r) {
      MNEMO_CHECK(configs[r] == configs[0],
                  "data parallel: rank {} has a different config from rank 0 (same --config, "
                  "--set and --steps on every rank?)",
                  r);
    }
  }

  // Rank 0's parameters everywhere (they are equal already when seeded alike; this makes it
  // so whatever the initialisation) and the gradient averaging hooks.
  void start_data_parallel() {
    std::vector<Tensor> params = model_->parameters();
    if (comm_->world_size() > 1) {
      NoGradGuard no_grad;
      for (Tensor& p : params) comm_->broadcast(p, 0);
    }
    exact_grads_ = rc_.train.exact_grads_on(device_);
    if (!zero_) {  // ZeRO-1 reduces by reduce_scatter instead
      GradientSync::Options sync;
      sync.bucket_bytes = int64_t(rc_.train.bucket_mb * 1024 * 1024);
      sync.op = dist::ReduceOp::sum;  // the losses are scaled by the global count (train_step)
      sync.exact = exact_grads_;
      sync_ = std::make_unique<GradientSync>(*comm_, params, sync);
    }
  }

  void open_data() {
    tokenizer_ = text::Tokenizer::load((data_dir_ / "tokenizer.json").string());
    train_shard_ = std::make_unique<text::TokenShard>((data_dir_ / "train.bin").string());
    val_shard_ = std::make_unique<text::TokenShard>((data_dir_ / "val.bin").string());
    sampler_ =
        std::make_unique<text::WindowSampler>(*train_shard_, rc_.train.seq_len, rc_.train.seed);
    token_bytes_ = token_byte_lengths(*tokenizer_);
    val_ids_.resize(val_shard_->size());
    std::vector<int64_t> wide(val_shard_->size());
    val_shard_->copy_range(0, int64_t(wide.size()), wide.data());
    for (size_t i = 0; i < wide.size(); ++i) val_ids_[i] = int32_t(wide[i]);
  }

  void start_fresh() {
    rc_ = load_run_config(options_.config_file, options_.overrides, options_.steps);
    setup_common();
    // A directory left by a run that crashed before its first checkpoint starts over. Rank 0
    // prepares the data; the other ranks wait for it (one file system for all ranks).
    if (root_) {
      fs::remove(fs::path(options_.out_dir) / "metrics.jsonl");
      prepare_data(rc_, data_dir_, log_);
      io::write_file_atomic((fs::path(options_.out_dir) / "run_config.json").string(),
                            rc_.json.dump(2) + "\n");
    }
    comm_->barrier();
    build_model_and_optimizer();
    start_data_parallel();
    open_data();
    step_ = 0;
    log_ << fmt::format(
        "model: Llama, {} layers, hidden {}, {} heads ({} kv), {} parameters; "
        "device {}, {} threads\n",
        rc_.model.num_hidden_layers, rc_.model.hidden_size, rc_.model.num_attention_heads,
        rc_.model.num_key_value_heads, model_->num_parameters(), device_.str(), num_threads());
  }

  void resume_from(const std::string& checkpoint) {
    try {
      resume_from_checked(checkpoint);
    } catch (const nlohmann::json::exception& e) {
      fail("{}/trainer_state.json: {}", checkpoint, e.what());
    }
  }

  void resume_from_checked(const std::string& checkpoint) {
    LoadedCheckpoint ckpt = load_checkpoint(checkpoint);
    const json& state = ckpt.trainer_state;
    MNEMO_CHECK(state.contains("run_config") && state.contains("step") &&
                    state.contains("sampler_position"),
                "{}/trainer_state.json: missing run_config, step or sampler_position", checkpoint);
    json config = state["run_config"];
    for (const std::string& assignment : options_.overrides) io::apply_override(config, assignment);
    if (options_.steps > 0) config["train"]["steps"] = options_.steps;
    rc_ = run_config_from_json(config, checkpoint + "/trainer_state.json");
    setup_common();
    build_model_and_optimizer();
    model_->load_state_dict(ckpt.model->state_dict());
    if (zero_) {
      zero_->load_state_tensors(read_optimizer_state(checkpoint));
    } else {
      load_optimizer_state(checkpoint, *optimizer_);
    }
    start_data_parallel();
    step_ = state["step"].get<int64_t>();
    const int64_t optimizer_steps = state.value("optimizer_steps", step_);
    if (zero_) {
      zero_->set_steps_taken(optimizer_steps);
    } else {
      optimizer_->set_steps_taken(optimizer_steps);
    }
    open_data();
    sampler_->set_position(state["sampler_position"].get<uint64_t>());
    if (state.contains("rng")) {  // the process-wide generator (dropout, if a model uses it)
      std::lock_guard<std::mutex> lock(default_generator_mutex());
      default_generator().set_state(state["rng"]["seed"].get<uint64_t>(),
                                    state["rng"]["offset"].get<uint64_t>());
    }
    tokens_seen_ = state.value("tokens_seen", int64_t(0));
    if (root_) {
      io::MetricsLog::truncate_after((fs::path(options_.out_dir) / "metrics.jsonl").string(),
                                     step_);
    }
    comm_->barrier();
    log_ << "resumed from " << checkpoint << " at step " << step_ << "\n";
  }

  json trainer_state() const {
    uint64_t rng_seed = 0, rng_offset = 0;
    {
      std::lock_guard<std::mutex> lock(default_generator_mutex());
      rng_seed = default_generator().seed();
      rng_offset = default_generator().offset();
    }
    return json{{"step", step_},
                {"optimizer_steps", zero_ ? zero_->steps_taken() : optimizer_->steps_taken()},
                {"sampler_position", sampler_->position()},
                {"rng", {{"seed", rng_seed}, {"offset", rng_offset}}},
                {"tokens_seen", tokens_seen_},
                {"run_config", rc_.json}};
  }

  // Rank 0 writes; with a sharded optimizer every rank first takes part in gathering its state.
  std::string write_checkpoint(optim::NamedTensors zero_state = {}) {
    CheckpointContents c;
    c.model = model_.get();
    c.optimizer = optimizer_.get();
    c.optimizer_state = std::move(zero_state);
    c.tokenizer = tokenizer_.get();
    c.trainer_state = trainer_state();
    c.torch_dtype = rc_.json["model"].value("torch_dtype", std::string("float32"));
    return save_checkpoint(options_.out_dir, step_, c);
  }

  // One optimisation step; returns {mean loss over the global batch, grad norm}. Every rank
  // draws the same global micro-batch of windows and trains on its own rows of it, so the
  // windows of a step do not depend on the number of ranks. Each rank's loss is its sum over
  // its rows times 1 / (global target count * grad_accum), the same constant on every rank,
  // so the per-token gradients are the same bits whoever computes them and the all_reduce
  // *sums* (no division by the number of ranks). With exact gradients (the CPU default,
  // autograd/exact_grad.h) the weight gradients are split-invariant too: N ranks train
  // exactly like one process with the same global batch.
  std::pair<double, double> train_step(double lr) {
    const TrainSettings& t = rc_.train;
    const int64_t micro = t.batch_size / t.grad_accum;  // sequences per micro-batch, all ranks
    const int64_t share = micro / comm_->world_size();  // this rank's rows of it
    const int64_t first_row = comm_->rank() * share;
    std::vector<int64_t> inputs(size_t(micro * t.seq_len)), targets(inputs.size());
    double loss_sum = 0;  // this rank's share of the step's mean loss
    for (int64_t m = 0; m < t.grad_accum; ++m) {
      sampler_->next(micro, inputs.data(), targets.data());
      const auto rows = [&](const std::vector<int64_t>& ids) {
        std::vector<int64_t> mine(ids.begin() + first_row * t.seq_len,
                                  ids.begin() + (first_row + share) * t.seq_len);
        Tensor out = from_vector(mine, {share, t.seq_len});
        return device_.is_cpu() ? out : to(out, device_);
      };
      // Every rank holds the whole micro-batch's targets: the global count needs no message.
      const auto counted =
          std::count_if(targets.begin(), targets.end(), [](int64_t id) { return id != -100; });
      const double scale = 1.0 / (double(std::max<int64_t>(counted, 1)) * double(t.grad_accum));
      Tensor loss = model_->loss(rows(inputs), rows(targets), Reduction::sum);
      loss_sum += loss.item() * scale;
      if (sync_) sync_->set_enabled(m + 1 == t.grad_accum);  // accumulate, then reduce once
      std::optional<autograd::ExactGradGuard> exact;
      if (exact_grads_) exact.emplace(t.seq_len);
      backward(loss, full({}, scale, options_of(loss)));
    }
    // Summed gradients: all_reduce in buckets (sync_), or reduce_scatter of shards (ZeRO-1).
    double norm = 0;
    if (zero_) {
      norm = zero_->reduce_gradients(dist::ReduceOp::sum);
    } else {
      sync_->finish();
      norm = optim::global_grad_norm(model_->parameters());
    }
    MNEMO_CHECK(std::isfinite(norm),
                "train: the gradient norm became {} at step {} (try a lower lr or grad_clip)", norm,
                step_ + 1);
    const double clip = t.grad_clip > 0 ? optim::clip_factor(norm, t.grad_clip) : 1.0;
    if (zero_) {
      zero_->step(lr, clip);
      zero_->zero_grad();
    } else {
      optimizer_->set_lr(lr);
      optimizer_->step(clip);
      optimizer_->zero_grad();
    }
    return {global_sum(loss_sum), norm};
  }

  // The sum of a per-rank value over ranks.
  double global_sum(double value) {
    if (comm_->world_size() == 1) return value;
    Tensor t = full({1}, value, {.dtype = DType::f64, .device = comm_->device()});
    comm_->all_reduce(t, dist::ReduceOp::sum);
    return t.item();
  }

  // The mean of a per-rank value over ranks (the ranks' shares are equal).
  double global_mean(double value) {
    if (comm_->world_size() == 1) return value;
    Tensor t = full({1}, value, {.dtype = DType::f64, .device = comm_->device()});
    comm_->all_reduce(t, dist::ReduceOp::avg);
    return t.item();
  }

  EvalResult validate() {
    return evaluate_windows(*model_, val_ids_, rc_.train.seq_len + 1, rc_.train.batch_size,
                            token_bytes_, rc_.train.eval_batches * rc_.train.batch_size);
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
      history = read_history(out / "metrics.jsonl");
      metrics.emplace(out.string());
      progress.emplace(t.steps, t.log_interval);
    }
    StopSignals signals;
    TrainSummary summary;
    const int64_t tokens_per_step = t.batch_size * t.seq_len;

    auto evaluate_and_plot = [&]() {
      if (!root_) return;
      const EvalResult r = validate();
      summary.val_loss = r.loss();
      summary.val_bpb = r.bits_per_byte();
      metrics->write(json{{"step", step_}, {"val_loss", r.loss()}, {"val_bpb", r.bits_per_byte()}});
      history.val.emplace_back(step_, r.loss());
      io::write_loss_svg((out / "loss.svg").string(), history.train, history.val,
                         "mnemo train: " + out.filename().string());
      progress->message(fmt::format("step {}: val_loss {:.4f}, val_bpb {:.4f}", step_, r.loss(),
                                    r.bits_per_byte()));
    };
    auto checkpoint = [&]() {
      optim::NamedTensors zero_state;
      if (zero_) zero_state = zero_->gather_state_tensors();
      if (root_) summary.checkpoint = write_checkpoint(std::move(zero_state));
      comm_->barrier();
    };

    while (step_ < t.steps) {
      const double lr = schedule_.at(step_);
      const auto start = Clock::now();
      const auto [loss, norm] = [&] {
        profiler::ScopedRange range(fmt::format("step {}", step_ + 1));  // trace and Nsight
        return train_step(lr);
      }();
      const double seconds = seconds_since(start);
      ++step_;
      tokens_seen_ += tokens_per_step;
      MNEMO_CHECK(std::isfinite(loss), "train: the loss became {} at step {} (try a lower lr)",
                  loss, step_);
      const double rate = double(tokens_per_step) / seconds;
      history.train.emplace_back(step_, loss);
      summary.last_loss = loss;
      if (root_) {
        metrics->write(json{{"step", step_},
                            {"loss", loss},
                            {"lr", lr},
                            {"grad_norm", norm},
                            {"tokens_per_s", rate}});
        progress->update(step_, loss, rate);
      }

      const bool last = step_ == t.steps;
      if (t.eval_interval > 0 && step_ % t.eval_interval == 0 && !last) evaluate_and_plot();
      // A signal stops every rank at the same step (mpirun forwards it, but not at the same
      // instant).
      if (global_mean(stop_requested() ? 1.0 : 0.0) > 0) {
        summary.interrupted = true;
        break;
      }
      if (t.checkpoint_interval > 0 && step_ % t.checkpoint_interval == 0 && !last) checkpoint();
    }
    if (progress) progress->finish();
    if (!summary.interrupted) evaluate_and_plot();
    checkpoint();
    summary.steps_done = step_;
    if (summary.interrupted) {
      log_ << "interrupted at step " << step_ << "; checkpoint " << summary.checkpoint
           << " written; continue with --resume\n";
    } else {
      log_ << fmt::format(
          "done: {} steps, loss {:.4f}, val_loss {:.4f}, val_bpb {:.4f}; "
          "checkpoint {}\n",
          step_, summary.last_loss, summary.val_loss, summary.val_bpb, summary.checkpoint);
    }
#if MNEMO_HAVE_CUDA
    if (device_.is_cuda()) log_ << cuda::describe_memory(device_.index) << "\n";
#endif
    return summary;
  }

  TrainOptions options_;
  std::unique_ptr<dist::Communicator> comm_;
  bool root_ = true;          // rank 0: logs, evaluates, writes checkpoints
  std::ostringstream quiet_;  // where the other ranks' log lines go
  std::ostream& log_;
  std::unique_ptr<GradientSync> sync_;
  bool exact_grads_ = false;  // split-invariant f64 gradient sums (train.exact_grads)
  RunConfig rc_;
  Device device_ = Device::cpu();
  fs::path data_dir_;
  std::shared_ptr<nn::LlamaForCausalLM> model_;
  std::unique_ptr<optim::AdamW> optimizer_;  // or, with --zero 1:
  std::unique_ptr<ZeroAdamW> zero_;
  optim::LrSchedule schedule_;
  std::unique_ptr<text::Tokenizer> tokenizer_;
  std::unique_ptr<text::TokenShard> train_shard_, val_shard_;
  std::unique_ptr<text::WindowSampler> sampler_;
  std::vector<int64_t> token_bytes_;
  std::vector<int32_t> val_ids_;
  int64_t step_ = 0;
  int64_t tokens_seen_ = 0;
};

}  // namespace

TrainSummary run_training(const TrainOptions& options, std::ostream& log) {
  Run run(options, log);
  return run.go_or_abort();
}

}  // namespace mnemo::train

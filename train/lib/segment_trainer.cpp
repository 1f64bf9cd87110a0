// `mnemo train` for memory-augmented LMs (see segment_trainer.h for the stream, the step and
// the checkpoint).
#include "train/lib/segment_trainer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <mutex>
#include <optional>
#include <ostream>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/cpu/parallel.h"
#include "core/error.h"
#include "memory/factory.h"
#include "optim/adamw.h"
#include "optim/clip.h"
#include "optim/param_groups.h"
#include "optim/schedule.h"
#include "train/distributed/communicator.h"
#include "train/io/checkpoint_dir.h"
#include "train/io/config.h"
#include "train/io/files.h"
#include "train/io/metrics.h"
#include "train/io/safetensors.h"
#include "train/lib/device_select.h"
#include "train/lib/run_support.h"
#include "train/text/corpus.h"
#include "train/text/dataset.h"
#include "train/text/loader.h"
#include "train/text/shard.h"

namespace mnemo::train {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// decay_groups, with the small 0-/1-D non-norm parameters of the no-decay group moved to a
// third group at scalar_lr_scale (the same rule as memory_bench's optimizer).
std::vector<optim::ParamGroup> segment_param_groups(const memory::SegmentLM& lm,
                                                    const TrainSettings& t,
                                                    double scalar_lr_scale) {
  std::vector<optim::ParamGroup> groups =
      optim::decay_groups(lm.named_parameters(), t.weight_decay);
  optim::ParamGroup plain, scalars;
  scalars.lr_scale = scalar_lr_scale;
  optim::ParamGroup& no_decay = groups[1];
  for (size_t i = 0; i < no_decay.params.size(); ++i) {
    const Tensor& p = no_decay.params[i];
    const std::string& name = no_decay.names[i];
    const bool scalar = p.dim() <= 1 && p.numel() <= 64 && name.find("norm") == std::string::npos;
    optim::ParamGroup& g = scalar ? scalars : plain;
    g.names.push_back(name);
    g.params.push_back(p);
  }
  groups[1].names = std::move(plain.names);
  groups[1].params = std::move(plain.params);
  groups.push_back(std::move(scalars));
  return groups;
}

// The memory section as checkpointed in config.json: the trainer's keys and the mechanism's.
json resolved_memory_section(const MemorySettings& m) {
  json section = m.mechanism_section;
  section["mechanism"] = m.mechanism;
  section["segments"] = m.segments;
  section["scalar_lr_scale"] = m.scalar_lr_scale;
  return section;
}

// Sums the loss of `count` streams of n ids each, stream r starting at ids[r * n], read in
// segments of seq_len tokens with the state carried.
void score_streams(memory::SegmentLM& lm, const int32_t* ids, int64_t count, int64_t n,
                   int64_t seq_len, const std::vector<int64_t>& token_bytes, Device device,
                   EvalResult& result) {
  const int64_t predictions = n - 1;
  memory::MemoryState state = lm.initial_state(count);
  for (int64_t begin = 0; begin < predictions; begin += seq_len) {
    const int64_t T = std::min(seq_len, predictions - begin);
    std::vector<int64_t> inputs(size_t(count * T)), targets(size_t(count * T));
    for (int64_t r = 0; r < count; ++r) {
      for (int64_t t = 0; t < T; ++t) {
        const int64_t target = ids[r * n + begin + t + 1];
        MNEMO_CHECK(target >= 0 && target < int64_t(token_bytes.size()),
                    "eval: token id {} is outside the tokenizer's vocabulary ({} ids)", target,
                    token_bytes.size());
        inputs[size_t(r * T + t)] = ids[r * n + begin + t];
        targets[size_t(r * T + t)] = target;
        result.bytes += token_bytes[size_t(target)];
      }
    }
    memory::SegmentOutput out =
        lm.forward_segment(to(from_vector(inputs, {count, T}), device), state);
    const memory::SegmentLoss loss =
        memory::segment_loss(out.logits, to(from_vector(targets, {count, T}), device));
    result.total_nats += loss.sum.item();
    result.tokens += loss.count;
    state = std::move(out.state);
  }
}

Device device_of(const memory::SegmentLM& lm) {
  const std::vector<Tensor> params = lm.parameters();
  return params.empty() ? Device::cpu() : params.front().device();
}

}  // namespace

// ---- the model, evaluation, memory-state files ---------------------------------------------

std::unique_ptr<memory::SegmentLM> make_run_segment_lm(const RunConfig& rc, uint64_t seed) {
  MNEMO_CHECK(rc.memory.enabled, "train: the config has no memory section");
  Generator gen(seed);
  try {
    return memory::make_segment_lm(rc.memory.mechanism, rc.model, rc.memory.mechanism_section,
                                   &gen);
  } catch (const Error& e) {
    fail("config: memory section (mechanism '{}'): {}", rc.memory.mechanism, e.what());
  }
}

EvalResult evaluate_streams(memory::SegmentLM& lm, std::span<const int32_t> ids, int64_t seq_len,
                            int64_t segments, int64_t batch,
                            const std::vector<int64_t>& token_bytes, int64_t max_streams) {
  MNEMO_CHECK(seq_len >= 1 && seq_len <= lm.segment_length(),
              "eval: segments of {} tokens, but the model takes at most {}", seq_len,
              lm.segment_length());
  MNEMO_CHECK(segments >= 1 && batch >= 1, "eval: segments ({}) and batch ({}) must be positive",
              segments, batch);
  const bool was_training = lm.is_training();
  lm.eval();
  NoGradGuard no_grad;
  const Device device = device_of(lm);
  const int64_t n = segments * seq_len + 1;
  int64_t full = int64_t(ids.size()) / n;
  int64_t tail = int64_t(ids.size()) % n;
  if (max_streams > 0 && full >= max_streams) {
    full = max_streams;
    tail = 0;
  }
  EvalResult result;
  for (int64_t first = 0; first < full; first += batch) {
    score_streams(lm, ids.data() + first * n, std::min(batch, full - first), n, seq_len,
                  token_bytes, device, result);
  }
  if (tail >= 2)
    score_streams(lm, ids.data() + full * n, 1, tail, seq_len, token_bytes, device, result);
  lm.train(was_training);
  return result;
}

void save_memory_state(const std::string& path, const memory::MemoryState& state,
                       const std::string& mechanism) {
  io::NamedTensors tensors;
  std::string names;
  for (const auto& [name, value] : state.tensors) {
    MNEMO_CHECK(!name.empty() && name.find(',') == std::string::npos,
                "save_memory_state: state name '{}' is empty or holds a comma", name);
    names += (names.empty() ? "" : ",") + name;
    if (value.defined()) tensors.emplace_back(name, detach(value));
  }
  io::save_safetensors(
      path, tensors,
      {{"format", "mnemo-memory-state"}, {"mechanism", mechanism}, {"names", names}});
}

memory::MemoryState load_memory_state(const std::string& path, Device device) {
  const auto metadata = io::read_safetensors_metadata(path);
  const auto format = metadata.find("format");
  MNEMO_CHECK(format != metadata.end() && format->second == "mnemo-memory-state",
              "{}: not a memory state file (its metadata has no format \"mnemo-memory-state\")",
              path);
  io::NamedTensors tensors = io::load_safetensors(path);
  memory::MemoryState state;
  const auto names = metadata.find("names");
  std::vector<std::string> order;
  if (names != metadata.end() && !names->second.empty()) {
    size_t start = 0;
    while (true) {
      const size_t comma = names->second.find(',', start);
      order.push_back(names->second.substr(start, comma - start));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  for (const std::string& name : order) {
    auto it = std::find_if(tensors.begin(), tensors.end(),
                           [&](const auto& t) { return t.first == name; });
    Tensor value;  // undefined when the file holds none under this name
    if (it != tensors.end()) value = device.is_cpu() ? it->second : to(it->second, device);
    state.tensors.emplace_back(name, value);
  }
  for (const auto& [name, value] : tensors) {
    MNEMO_CHECK(state.find(name) != nullptr, "{}: tensor '{}' is not listed in the metadata", path,
                name);
  }
  return state;
}

void check_memory_state(const memory::SegmentLM& lm, const memory::MemoryState& state,
                        int64_t batch, std::string_view source) {
  const memory::MemoryState expected = lm.initial_state(batch);
  MNEMO_CHECK(state.tensors.size() == expected.tensors.size(),
              "{}: {} state tensors, {} '{}' for {} streams has {}", source, state.tensors.size(),
              lm.mechanism(), lm.mechanism(), batch, expected.tensors.size());
  for (const auto& [name, want] : expected.tensors) {
    const Tensor* got = state.find(name);
    MNEMO_CHECK(got != nullptr, "{}: no state tensor '{}'", source, name);
    MNEMO_CHECK(got->defined() == want.defined(), "{}: state tensor '{}' is {}defined", source,
                name, got->defined() ? "" : "not ");
    if (!want.defined()) continue;
    MNEMO_CHECK(got->shape() == want.shape() && got->dtype() == want.dtype(),
                "{}: state tensor '{}' is {} {}, the model needs {} {}", source, name, got->dtype(),
                shape_str(got->shape()), want.dtype(), shape_str(want.shape()));
  }
}

// ---- checkpoints ---------------------------------------------------------------------------

bool is_segment_checkpoint(const std::string& path) {
  const fs::path config = fs::path(io::resolve_checkpoint(path)) / "config.json";
  if (!fs::exists(config)) return false;
  const json j = io::load_json_file(config.string());
  return j.is_object() && j.contains("memory");
}

LoadedSegmentCheckpoint load_segment_checkpoint(const std::string& path) {
  LoadedSegmentCheckpoint out;
  out.path = io::resolve_checkpoint(path);
  const fs::path dir(out.path);
  const std::string state_file = (dir / "trainer_state.json").string();
  out.trainer_state = io::load_json_file(state_file);
  MNEMO_CHECK(out.trainer_state.is_object() && out.trainer_state.contains("run_config"),
              "{}: missing run_config", state_file);
  out.run_config = run_config_from_json(out.trainer_state["run_config"], state_file);
  MNEMO_CHECK(out.run_config.memory.enabled, "{}: the run config has no memory section",
              state_file);
  out.lm = make_run_segment_lm(out.run_config, out.run_config.train.seed);
  const std::string weights = (dir / "model.safetensors").string();
  try {
    out.lm->load_state_dict(io::load_safetensors(weights));
  } catch (const Error& e) {
    const std::string message = e.what();
    if (message.find(weights) != std::string::npos) throw;
    fail("{}: {}", weights, message);
  }
  out.lm->eval();
  out.tokenizer = text::Tokenizer::load((dir / "tokenizer.json").string());
  out.lm->document_end_id = out.tokenizer->eos_id();  // memories end with their document
  return out;
}

// ---- the run -------------------------------------------------------------------------------

namespace {

class SegmentRun {
 public:
  SegmentRun(const TrainOptions& options, std::ostream& log) : options_(options), log_(log) {}

  TrainSummary go() {
    MNEMO_CHECK(!options_.out_dir.empty(), "train: --out DIR is required");
    MNEMO_CHECK(options_.zero == 0,
                "train: --zero 1 shards data-parallel optimizer state; a memory run is one "
                "process");
    {
      const auto comm = dist::make_communicator();
      MNEMO_CHECK(comm->world_size() == 1,
                  "train: memory-augmented training (a 'memory' section) runs in one process; "
                  "this job has {} ranks (run it without mpirun, or with -np 1)",
                  comm->world_size());
    }
    const std::string checkpoint = checkpoint_to_resume(options_, log_);
    if (checkpoint.empty()) {
      start_fresh();
    } else {
      resume_from(checkpoint);
    }
    return loop();
  }

 private:
  // The model first (a bad memory key fails before the data is prepared), then the device.
  void setup(const RunConfig& rc) {
    rc_ = rc;
    const TrainSettings& t = rc_.train;
    MNEMO_CHECK(rc_.memory.enabled, "train: the config has no memory section");
    manual_seed(t.seed);  // the process-wide generator, as the plain trainer seeds it
    lm_ = make_run_segment_lm(rc_, t.seed);
    MNEMO_CHECK(lm_->segment_length() >= t.seq_len,
                "config: the {} model takes segments of at most {} tokens, 'train.seq_len' is {}",
                lm_->mechanism(), lm_->segment_length(), t.seq_len);
    if (t.threads > 0) set_num_threads(int(t.threads));
    device_ = select_device(options_.device.empty() ? t.device : options_.device, log_);
    if (!device_.is_cpu()) lm_->to(device_);
    lm_->train();
    optimizer_ =
        std::make_unique<optim::AdamW>(segment_param_groups(*lm_, t, rc_.memory.scalar_lr_scale),
                                       t.lr, t.beta1, t.beta2, t.adam_eps);
    schedule_ = make_schedule(t);
    fs::create_directories(options_.out_dir);
    data_dir_ = fs::path(options_.out_dir) / "data";
  }

  void open_data() {
    tokenizer_ = text::Tokenizer::load((data_dir_ / "tokenizer.json").string());
    lm_->document_end_id = tokenizer_->eos_id();  // memories end with their document
    train_shard_ = std::make_unique<text::TokenShard>((data_dir_ / "train.bin").string());
    const int64_t stream = rc_.memory.segments * rc_.train.seq_len;
    MNEMO_CHECK(train_shard_->size() > stream,
                "train: the train shard holds {} tokens, fewer than one stream of "
                "memory.segments x train.seq_len + 1 = {}",
                train_shard_->size(), stream + 1);
    sampler_ = std::make_unique<text::WindowSampler>(*train_shard_, stream, rc_.train.seed);
    token_bytes_ = token_byte_lengths(*tokenizer_);
    const text::TokenShard val((data_dir_ / "val.bin").string());
    std::vector<int64_t> wide(size_t(val.size()));
    val.copy_range(0, val.size(), wide.data());
    val_ids_.assign(wide.begin(), wide.end());
  }

  void start_fresh() {
    setup(load_run_config(options_.config_file, options_.overrides, options_.steps));
    fs::remove(fs::path(options_.out_dir) / "metrics.jsonl");
    prepare_data(rc_, data_dir_, log_);
    io::write_file_atomic((fs::path(options_.out_dir) / "run_config.json").string(),
                          rc_.json.dump(2) + "\n");
    open_data();
    step_ = 0;
    log_ << fmt::format(
        "model: {} SegmentLM, {} layers, hidden {}, {} heads, {} parameters; streams of {} "
        "segments x {} tokens; device {}, {} threads\n",
        lm_->mechanism(), rc_.model.num_hidden_layers, rc_.model.hidden_size,
        rc_.model.num_attention_heads, lm_->num_parameters(), rc_.memory.segments,
        rc_.train.seq_len, device_.str(), num_threads());
  }

  void resume_from(const std::string& checkpoint) {
    const std::string state_file = checkpoint + "/trainer_state.json";
    const json state = io::load_json_file(state_file);
    MNEMO_CHECK(state.is_object() && state.contains("run_config") && state.contains("step") &&
                    state.contains("sampler_position"),
                "{}: missing run_config, step or sampler_position", state_file);
    json config = state["run_config"];
    for (const std::string& assignment : options_.overrides) apply_run_override(config, assignment);
    if (options_.steps > 0) config["train"]["steps"] = options_.steps;
    setup(run_config_from_json(config, state_file));
    const std::string weights = checkpoint + "/model.safetensors";
    try {
      lm_->load_state_dict(io::load_safetensors(weights));
      optimizer_->load_state_tensors(io::load_safetensors(checkpoint + "/optimizer.safetensors"));
      step_ = state["step"].get<int64_t>();
      optimizer_->set_steps_taken(state.value("optimizer_steps", step_));
      open_data();
      sampler_->set_position(state["sampler_position"].get<uint64_t>());
      if (state.contains("rng")) {
        std::lock_guard<std::mutex> lock(default_generator_mutex());
        default_generator().set_state(state["rng"]["seed"].get<uint64_t>(),
                                      state["rng"]["offset"].get<uint64_t>());
      }
      tokens_seen_ = state.value("tokens_seen", int64_t(0));
    } catch (const json::exception& e) {
      fail("{}: {}", state_file, e.what());
    }
    io::MetricsLog::truncate_after((fs::path(options_.out_dir) / "metrics.jsonl").string(), step_);
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
                {"optimizer_steps", optimizer_->steps_taken()},
                {"sampler_position", sampler_->position()},
                {"rng", {{"seed", rng_seed}, {"offset", rng_offset}}},
                {"tokens_seen", tokens_seen_},
                {"run_config", rc_.json}};
  }

  std::string write_checkpoint() {
    const std::string tmp = io::begin_checkpoint(options_.out_dir, step_);
    const fs::path dir(tmp);
    json config = hf_config_json(rc_.model, "float32");
    config["architectures"] = json::array({"MnemoSegmentLM"});
    config["memory"] = resolved_memory_section(rc_.memory);
    io::write_file_atomic((dir / "config.json").string(), config.dump(2) + "\n");
    io::NamedTensors weights;
    for (const auto& [name, tensor] : lm_->state_dict()) weights.emplace_back(name, detach(tensor));
    io::save_safetensors((dir / "model.safetensors").string(), weights, {{"format", "pt"}});
    io::save_safetensors((dir / "optimizer.safetensors").string(), optimizer_->state_tensors());
    tokenizer_->save((dir / "tokenizer.json").string());
    io::write_file_atomic((dir / "trainer_state.json").string(), trainer_state().dump(2) + "\n");
    return io::commit_checkpoint(options_.out_dir, tmp, step_);
  }

  // One step over batch_size streams; returns {mean loss, gradient norm}.
  std::pair<double, double> train_step(double lr) {
    const TrainSettings& t = rc_.train;
    const int64_t S = rc_.memory.segments, T = t.seq_len;
    const int64_t micro = t.batch_size / t.grad_accum;  // streams per micro-batch
    std::vector<int64_t> inputs(size_t(micro * S * T)), targets(inputs.size());
    double loss_sum = 0;
    for (int64_t m = 0; m < t.grad_accum; ++m) {
      sampler_->next(micro, inputs.data(), targets.data());
      std::vector<Tensor> ids, tgts;  // S segments of (micro, T)
      for (int64_t s = 0; s < S; ++s) {
        std::vector<int64_t> seg_ids(size_t(micro * T)), seg_tgts(seg_ids.size());
        for (int64_t r = 0; r < micro; ++r) {
          const int64_t from = r * S * T + s * T;
          std::copy_n(inputs.begin() + from, T, seg_ids.begin() + r * T);
          std::copy_n(targets.begin() + from, T, seg_tgts.begin() + r * T);
        }
        ids.push_back(to(from_vector(seg_ids, {micro, T}), device_));
        tgts.push_back(to(from_vector(seg_tgts, {micro, T}), device_));
      }
      // Gradients add up over the micro-batches: their sum / grad_accum is the mean's.
      loss_sum += lm_->forward_backward(ids, tgts, lm_->initial_state(micro));
    }
    const double accum = double(t.grad_accum);
    const double norm = optim::global_grad_norm(lm_->parameters()) / accum;
    MNEMO_CHECK(std::isfinite(norm),
                "train: the gradient norm became {} at step {} (try a lower lr or grad_clip)", norm,
                step_ + 1);
    const double clip = t.grad_clip > 0 ? optim::clip_factor(norm, t.grad_clip) : 1.0;
    optimizer_->set_lr(lr);
    optimizer_->step(clip / accum);
    optimizer_->zero_grad();
    return {loss_sum / accum, norm};
  }

  EvalResult validate() {
    return evaluate_streams(*lm_, val_ids_, rc_.train.seq_len, rc_.memory.segments,
                            rc_.train.batch_size, token_bytes_,
                            rc_.train.eval_batches * rc_.train.batch_size);
  }

  TrainSummary loop() {
    const TrainSettings& t = rc_.train;
    const fs::path out(options_.out_dir);
    History history = read_history(out / "metrics.jsonl");
    io::MetricsLog metrics(out.string());
    io::Progress progress(t.steps, t.log_interval);
    StopSignals signals;
    TrainSummary summary;
    const int64_t tokens_per_step = t.batch_size * rc_.memory.segments * t.seq_len;

    auto evaluate_and_plot = [&]() {
      const EvalResult r = validate();
      summary.val_loss = r.loss();
      summary.val_bpb = r.bits_per_byte();
      metrics.write(json{{"step", step_}, {"val_loss", r.loss()}, {"val_bpb", r.bits_per_byte()}});
      history.val.emplace_back(step_, r.loss());
      io::write_loss_svg((out / "loss.svg").string(), history.train, history.val,
                         "mnemo train (" + lm_->mechanism() + "): " + out.filename().string());
      progress.message(fmt::format("step {}: val_loss {:.4f}, val_bpb {:.4f}", step_, r.loss(),
                                   r.bits_per_byte()));
    };

    while (step_ < t.steps) {
      const double lr = schedule_.at(step_);
      const auto start = Clock::now();
      const auto [loss, norm] = train_step(lr);
      const double seconds = seconds_since(start);
      ++step_;
      tokens_seen_ += tokens_per_step;
      MNEMO_CHECK(std::isfinite(loss), "train: the loss became {} at step {} (try a lower lr)",
                  loss, step_);
      const double rate = double(tokens_per_step) / seconds;
      history.train.emplace_back(step_, loss);
      summary.last_loss = loss;
      metrics.write(json{{"step", step_},
                         {"loss", loss},
                         {"lr", lr},
                         {"grad_norm", norm},
                         {"tokens_per_s", rate}});
      progress.update(step_, loss, rate);
      const bool last = step_ == t.steps;
      if (t.eval_interval > 0 && step_ % t.eval_interval == 0 && !last) evaluate_and_plot();
      if (stop_requested()) {
        summary.interrupted = true;
        break;
      }
      if (t.checkpoint_interval > 0 && step_ % t.checkpoint_interval == 0 && !last) {
        summary.checkpoint = write_checkpoint();
      }
    }
    progress.finish();
    if (!summary.interrupted) evaluate_and_plot();
    summary.checkpoint = write_checkpoint();
    summary.steps_done = step_;
    if (summary.interrupted) {
      log_ << "interrupted at step " << step_ << "; checkpoint " << summary.checkpoint
           << " written; continue with --resume\n";
    } else {
      log_ << fmt::format(
          "done: {} steps, loss {:.4f}, val_loss {:.4f}, val_bpb {:.4f}; checkpoint {}\n", step_,
          summary.last_loss, summary.val_loss, summary.val_bpb, summary.checkpoint);
    }
    return summary;
  }

  TrainOptions options_;
  std::ostream& log_;
  RunConfig rc_;
  Device device_ = Device::cpu();
  fs::path data_dir_;
  std::unique_ptr<memory::SegmentLM> lm_;
  std::unique_ptr<optim::AdamW> optimizer_;
  optim::LrSchedule schedule_;
  std::unique_ptr<text::Tokenizer> tokenizer_;
  std::unique_ptr<text::TokenShard> train_shard_;
  std::unique_ptr<text::WindowSampler> sampler_;
  std::vector<int64_t> token_bytes_;
  std::vector<int32_t> val_ids_;
  int64_t step_ = 0;
  int64_t tokens_seen_ = 0;
};

}  // namespace

TrainSummary run_segment_training(const TrainOptions& options, std::ostream& log) {
  SegmentRun run(options, log);
  return run.go();
}

}  // namespace mnemo::train

// `mnemo memory-bench` (memory_bench.h): train a memory mechanism and the baseline on a task,
// score both on held-out streams.
#include "train/lib/memory_bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <ostream>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "memory/factory.h"
#include "memory/memorizing_diagnostics.h"
#include "memory/titans_diagnostics.h"
#include "optim/adamw.h"
#include "optim/clip.h"
#include "optim/param_groups.h"
#include "optim/schedule.h"
#include "train/lib/device_select.h"
#include "train/lib/facts_bench.h"

namespace mnemo::train {

namespace {

using Clock = std::chrono::steady_clock;

struct Trained {
  memory::Tally tally;
  double final_loss = 0;  // mean training loss over the last 10% of steps
  int64_t parameters = 0;
};

Trained train_and_score(memory::SegmentLM& lm, const memory::MemoryTask& task,
                        const MemoryBenchOptions& o, int64_t steps, Device device,
                        std::ostream& log) {
  Trained out;
  out.parameters = lm.num_parameters();
  out.final_loss = train_memory_bench_model(
      lm, o, steps, device,
      [&](int64_t step) {
        const memory::StreamBatch batch = task.batch(memory::Split::train, step * o.batch, o.batch);
        return lm.forward_backward(batch.ids_segments(device), batch.targets_segments(device),
                                   lm.initial_state(o.batch));
      },
      log);
  out.tally = evaluate_segment_lm(lm, task, o.eval_streams, o.batch, device);
  return out;
}

}  // namespace

int64_t memory_bench_default_steps(const std::string& task, const std::string& mechanism) {
  if (task == "recall") return mechanism == "memformer" ? 1500 : 2500;
  if (task == "copy-far") return 400;
  if (task == "longdoc") return 200;
  if (task == "facts") return 1500;
  fail("memory-bench: unknown task '{}' (recall, copy-far, longdoc or facts)", task);
}

double memory_bench_default_lr(const std::string& task, const std::string& mechanism) {
  (void)memory_bench_default_steps(task, mechanism);  // names an unknown task
  return task == "copy-far" || mechanism == "memformer" ? 1e-3 : 3e-3;
}

double memory_bench_default_scalar_lr_scale(const std::string& mechanism) {
  return mechanism == "titans" ? 1.0 : 10.0;
}

double memory_bench_default_lr_decay(const std::string& mechanism) {
  return mechanism == "titans" ? 0.2 : 0.0;
}

double memory_bench_default_init_std(const std::string& task, int64_t hidden) {
  (void)memory_bench_default_steps(task, "none");  // names an unknown task
  return task == "recall" ? 1.0 / std::sqrt(double(hidden)) : 0.0;
}

MemoryBenchOptions memory_bench_resolved(const MemoryBenchOptions& o) {
  const auto known = memory::mechanism_names();
  MNEMO_CHECK(std::find(known.begin(), known.end(), o.mechanism) != known.end(),
              "memory-bench: unknown mechanism '{}' (one of {})", o.mechanism,
              memory::mechanism_list());
  MNEMO_CHECK(o.batch >= 1, "memory-bench: --batch must be positive, got {}", o.batch);
  MNEMO_CHECK(o.eval_streams >= 1, "memory-bench: --eval-streams must be positive, got {}",
              o.eval_streams);
  MNEMO_CHECK(o.init_std >= 0 && std::isfinite(o.init_std),
              "memory-bench: --init-std must be a finite number >= 0, got {}", o.init_std);
  MNEMO_CHECK(o.lr >= 0 && o.scalar_lr_scale >= 0,
              "memory-bench: --lr and --scalar-lr-scale must not be negative");
  MNEMO_CHECK(o.mechanism != "none" || o.memory_overrides.empty(),
              "memory-bench: --memory does not apply to --mechanism none");
  MemoryBenchOptions r = o;
  if (r.steps <= 0) r.steps = memory_bench_default_steps(o.task, o.mechanism);
  if (r.lr == 0) r.lr = memory_bench_default_lr(o.task, o.mechanism);
  if (r.lr_decay < 0) r.lr_decay = memory_bench_default_lr_decay(o.mechanism);
  MNEMO_CHECK(r.lr_decay <= 1, "memory-bench: --lr-decay must lie in [0, 1], got {}", r.lr_decay);
  if (r.scalar_lr_scale == 0) r.scalar_lr_scale = memory_bench_default_scalar_lr_scale(o.mechanism);
  if (r.init_std == 0) r.init_std = memory_bench_default_init_std(o.task, o.hidden);
  return r;
}

nn::LlamaConfig memory_bench_model(const MemoryBenchOptions& o, int64_t vocab, int64_t window) {
  nn::LlamaConfig c;
  c.vocab_size = vocab;
  c.hidden_size = o.hidden;
  c.num_hidden_layers = o.layers;
  c.num_attention_heads = o.heads;
  c.num_key_value_heads = o.heads;
  // SwiGLU at ~8/3 of the width, rounded up to a multiple of 32 (Llama's rule of thumb).
  c.intermediate_size = (o.hidden * 8 / 3 + 31) / 32 * 32;
  // Room for the segment and one segment of extra positions (an XL cache).
  c.max_position_embeddings = 2 * window;
  c.tie_word_embeddings = false;
  if (o.init_std > 0) c.initializer_range = o.init_std;  // both models alike
  c.validate();
  return c;
}

nlohmann::json memory_bench_model_json(const MemoryBenchOptions& o, const nn::LlamaConfig& model,
                                       int64_t window) {
  return {{"layers", o.layers},
          {"hidden", o.hidden},
          {"heads", o.heads},
          {"intermediate", model.intermediate_size},
          {"vocab", model.vocab_size},
          {"window", window},
          {"init_std", model.initializer_range}};
}

// The window as segment_length, for "memorizing" a kNN memory that holds a whole stream
// (capacity S * T), for "titans" MAG without persistent tokens, then the overrides.
nlohmann::json memory_bench_section(const std::string& mechanism, int64_t window, int64_t segments,
                                    int64_t steps, const std::vector<std::string>& overrides) {
  nlohmann::json section = nlohmann::json::object();
  section["segment_length"] = window;
  if (mechanism == "memorizing") section["capacity"] = segments * window;
  // Titans as a gate without persistent tokens: on recall, persistent tokens held the
  // in-segment lookup back (local exact match 0.47 against 0.98 without them at 1000 steps)
  // and MAC learned the far lookup more slowly than MAG (docs/memory-results.md).
  if (mechanism == "titans") {
    section["variant"] = "mag";
    section["persistent_tokens"] = 0;
  }
  for (const std::string& item : overrides) {
    const size_t eq = item.find('=');
    MNEMO_CHECK(eq != std::string::npos && eq > 0, "memory-bench: --memory '{}' is not key=value",
                item);
    const std::string key = item.substr(0, eq), text = item.substr(eq + 1);
    nlohmann::json value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    section[key] = value.is_discarded() ? nlohmann::json(text) : value;
  }
  // Titans' gate held shut for the first 8% of the steps (titans.h: 200 of recall's 2500):
  // far recall 0.935-0.995 on seeds 0-4, against 0.882-0.988 on seeds 0-3 with the gate open
  // from the first step, where the read-out slowed or kept the in-segment lookup from forming;
  // seed 5, whose lookup forms late, 0.625. Ending the hold on the loss instead (a
  // gate_open_loss override; then 40% of the steps at most) rescued seed 5 and lost seed 7
  // (docs/memory-results.md), so the fixed hold stays the default.
  // (A value of the wrong type is left for the mechanism's config to name: memory/titans.h.)
  if (mechanism == "titans" && section["variant"] == "mag" &&
      !section.contains("gate_hold_steps")) {
    const nlohmann::json& open_loss = section.value("gate_open_loss", nlohmann::json(0));
    const bool on_loss = open_loss.is_number() && open_loss.get<double>() > 0;
    section["gate_hold_steps"] = std::llround((on_loss ? 0.4 : 0.08) * double(steps));
  }
  return section;
}

MemoryBenchModels make_memory_bench_models(const MemoryBenchOptions& o,
                                           const nn::LlamaConfig& model,
                                           const nlohmann::json& section, int64_t window) {
  Generator gen_memory(o.seed), gen_baseline(o.seed);
  MemoryBenchModels models;
  if (o.mechanism != "none") {
    models.memory = memory::make_segment_lm(o.mechanism, model, section, &gen_memory);
  }
  models.baseline =
      memory::make_segment_lm("none", model, {{"segment_length", window}}, &gen_baseline);
  for (const memory::SegmentLM* lm : {models.memory.get(), models.baseline.get()}) {
    if (lm != nullptr) {
      MNEMO_CHECK(lm->segment_length() >= window,
                  "memory-bench: {} takes segments of at most {} tokens, the task has {}",
                  lm->mechanism(), lm->segment_length(), window);
    }
  }
  return models;
}

double memory_bench_lr(const MemoryBenchOptions& o, int64_t steps, int64_t step) {
  MNEMO_CHECK(o.lr > 0 && o.lr_decay >= 0 && o.lr_decay <= 1 && steps >= 1 && step >= 0,
              "memory-bench: learning rate {} decaying over {} of {} steps at step {}", o.lr,
              o.lr_decay, steps, step);
  optim::LrSchedule schedule;
  schedule.max_lr = o.lr;
  schedule.warmup_steps = std::max<int64_t>(1, steps / 20);
  schedule.total_steps = steps;
  schedule.decay = optim::LrSchedule::constant;
  const double lr = schedule.at(step);
  // The last `decay` steps: lr (decay - i) / (decay + 1) at the i-th of them, never 0.
  const int64_t decay = int64_t(std::llround(o.lr_decay * double(steps)));
  if (decay <= 0 || step < steps - decay) return lr;
  return lr * double(steps - step) / double(decay + 1);
}

double train_memory_bench_model(memory::SegmentLM& lm, const MemoryBenchOptions& o, int64_t steps,
                                Device device, const std::function<double(int64_t step)>& step_loss,
                                std::ostream& log) {
  if (!device.is_cpu()) lm.to(device);
  lm.train();
  // AdamW over two groups: everything, and the mechanisms' small scalar controls (per-head
  // gates, temperatures, bias scales: optim::split_scalar_controls), which move more slowly
  // than they need to at the matrices' learning rate (docs/memory-results.md).
  std::vector<optim::ParamGroup> groups(1);
  for (const auto& [name, p] : lm.named_parameters()) {
    groups[0].names.push_back(name);
    groups[0].params.push_back(p);
  }
  optim::split_scalar_controls(groups, o.scalar_lr_scale);
  optim::AdamW optimizer(std::move(groups), o.lr, 0.9, 0.95);
  const std::vector<Tensor> params = lm.parameters();
  const int64_t tail = std::max<int64_t>(1, steps / 10);
  const int64_t report = std::max<int64_t>(1, steps / 10);
  double tail_sum = 0, window_sum = 0;
  int64_t window = 0;
  // Titans' gate hold on the loss (titans.h): the step it opens at goes to the log.
  const auto* titans = dynamic_cast<const memory::TitansLM*>(&lm);
  bool gate_open = titans == nullptr || !titans->gate_hold.defined();
  const auto start = Clock::now();
  for (int64_t step = 0; step < steps; ++step) {
    optimizer.zero_grad();
    lm.set_training_step(step);
    const double loss = step_loss(step);
    MNEMO_CHECK(std::isfinite(loss), "memory-bench: {} loss is {} at step {}", lm.mechanism(), loss,
                step + 1);
    lm.observe_training_loss(loss);
    if (!gate_open && titans->gate_opened_by_loss()) {
      gate_open = true;
      log << "memory-bench: titans gate opens after step " << step + 1 << " (loss average "
          << titans->gate_loss_average() << ")\n";
    }
    const double factor = optim::clip_factor(optim::global_grad_norm(params), 1.0);
    optimizer.set_lr(memory_bench_lr(o, steps, step));
    optimizer.step(factor);
    if (step >= steps - tail) tail_sum += loss;
    window_sum += loss;
    ++window;
    if ((step + 1) % report == 0 || step + 1 == steps) {
      const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
      log << "memory-bench: " << lm.mechanism() << " step " << step + 1 << "/" << steps << " loss "
          << window_sum / double(window) << " (" << seconds << " s)\n";
      window_sum = 0;
      window = 0;
    }
  }
  return tail_sum / double(std::min(tail, steps));
}

memory::Tally evaluate_segment_lm(memory::SegmentLM& lm, const memory::MemoryTask& task,
                                  int64_t streams, int64_t batch, Device device) {
  MNEMO_CHECK(streams >= 1 && batch >= 1, "memory-bench: bad eval size {} streams, batch {}",
              streams, batch);
  NoGradGuard no_grad;
  const bool was_training = lm.is_training();
  lm.eval();
  memory::Tally tally;
  for (int64_t first = 0; first < streams; first += batch) {
    const int64_t count = std::min(batch, streams - first);
    const memory::StreamBatch b = task.batch(memory::Split::eval, first, count);
    memory::MemoryState state = lm.initial_state(count);
    for (int64_t s = 0; s < b.segments; ++s) {
      memory::SegmentOutput out = lm.forward_segment(b.ids_tensor(s, device), state);
      tally.add_logits(b, s, out.logits);
      state = std::move(out.state);
    }
  }
  lm.train(was_training);
  return tally;
}

nlohmann::json run_memory_bench(const MemoryBenchOptions& o, std::ostream& log) {
  if (o.task == "facts") return run_facts_bench(o, log);
  const auto start = Clock::now();
  // Everything the input names is checked before any training.
  const std::unique_ptr<memory::MemoryTask> task =
      memory::make_task(o.task, o.seed, o.task_options);
  const MemoryBenchOptions opts = memory_bench_resolved(o);  // the task's defaults filled in
  const int64_t steps = opts.steps;
  const int64_t T = task->segment_length();
  const nn::LlamaConfig model = memory_bench_model(opts, task->vocab_size(), T);
  const Device device = select_device(o.device, log);

  const nlohmann::json section =
      memory_bench_section(o.mechanism, T, task->num_segments(), steps, o.memory_overrides);
  MemoryBenchModels models = make_memory_bench_models(o, model, section, T);
  memory::SegmentLM* with_memory = models.memory.get();
  memory::SegmentLM& baseline = *models.baseline;

  log << "memory-bench: task " << task->name() << " " << task->config().dump() << ", " << steps
      << " steps of " << o.batch << " streams x " << task->num_segments() << " x " << T
      << " tokens\n";
  const Trained base = train_and_score(baseline, *task, opts, steps, device, log);
  const Trained mem =
      with_memory ? train_and_score(*with_memory, *task, opts, steps, device, log) : base;

  nlohmann::json r;
  r["task"] = task->name();
  r["mechanism"] = o.mechanism;
  r["metric"] = task->metric();
  r["memory"] = task->score(mem.tally);
  r["baseline"] = task->score(base.tally);
  r["steps"] = steps;
  r["lr"] = opts.lr;
  r["lr_decay"] = opts.lr_decay;
  r["scalar_lr_scale"] = opts.scalar_lr_scale;
  r["seconds"] = std::chrono::duration<double>(Clock::now() - start).count();
  r["higher_is_better"] = task->higher_is_better();
  r["seed"] = o.seed;
  r["batch"] = o.batch;
  r["eval_streams"] = o.eval_streams;
  r["device"] = device.str();
  r["model"] = memory_bench_model_json(o, model, T);
  if (with_memory) r["memory_config"] = section;
  r["parameters"] = {{"memory", mem.parameters}, {"baseline", base.parameters}};
  r["task_config"] = task->config();
  r["details"] = {{"memory", task->details(mem.tally)}, {"baseline", task->details(base.tally)}};
  r["final_loss"] = {{"memory", mem.final_loss}, {"baseline", base.final_loss}};
  // The Memorizing Transformer's own figures: gate, retrieval hit rate on far probes,
  // q/k gradients from local and far probes (memory/memorizing_diagnostics.h).
  if (auto* m = dynamic_cast<memory::MemorizingLM*>(with_memory)) {
    r["diagnostics"] = memory::diagnose_memorizing(*m, *task, std::min<int64_t>(o.eval_streams, 64),
                                                   o.batch, device);
  }
  // Titans': the far figure with the memory wiped, the gates, the stored part against W_0
  // (memory/titans_diagnostics.h).
  if (auto* t = dynamic_cast<memory::TitansLM*>(with_memory)) {
    r["diagnostics"] =
        memory::diagnose_titans(*t, *task, std::min<int64_t>(o.eval_streams, 64), o.batch, device);
  }
  return r;
}

}  // namespace mnemo::train

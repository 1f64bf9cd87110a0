// RlStep: the model, the reference policy, checkpoints and validation of `mnemo rl` (see
// rl_step.h); the step's algorithm (rollouts, advantages, losses) is in rl_step_batch.cpp.
#include "train/lib/rl_step.h"

#include <filesystem>
#include <ostream>

#include "autograd/grad_mode.h"
#include "core/error.h"
#include "optim/param_groups.h"
#include "train/io/config.h"
#include "train/io/files.h"
#include "train/io/loss_svg.h"
#include "train/io/safetensors.h"
#include "train/lib/checkpoint.h"
#include "train/lib/run_support.h"
#include "train/rl/evaluate.h"

namespace mnemo::train {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The checkpoint's model must be the config's: the same HF config.json.
void check_same_model(const nn::LlamaConfig& found, const nn::LlamaConfig& wanted,
                      const std::string& where) {
  const json a = hf_config_json(found, "float32"), b = hf_config_json(wanted, "float32");
  for (const auto& [key, value] : b.items()) {
    MNEMO_CHECK(a.contains(key) && a[key] == value,
                "rl: {} has model {} = {}, the config's model section {} (make them agree)", where,
                key, a.contains(key) ? a[key].dump() : "nothing", value.dump());
  }
}

const char* kValueHeadFile = "value_head.safetensors";

}  // namespace

RlStep::RlStep(const RunConfig& config)
    : config_(config), llama_(std::make_shared<nn::LlamaForCausalLM>(config.model)) {
  MNEMO_CHECK(config.rl.enabled,
              "rl: the config has no rl section (configs/arith-grpo.json is an example)");
  MNEMO_CHECK(!config.memory.enabled, "rl: a memory section cannot be trained with RL here ({})",
              config.memory.mechanism);
  policy_ = std::make_shared<rl::PolicyModel>(llama_, config.rl.is_ppo());
  kl_.coef = config.rl.kl_coef;
  kl_.target = config.rl.kl_target;
  kl_.horizon = config.rl.kl_horizon;
}

std::vector<optim::ParamGroup> RlStep::param_groups() const {
  return optim::decay_groups(policy_->named_parameters(), config_.train.weight_decay);
}

std::string RlStep::title() const {
  return fmt::format("mnemo rl ({}, {})", config_.rl.algo, config_.rl.task);
}

std::string RlStep::describe() const {
  const nn::LlamaConfig& c = config_.model;
  const RlSettings& r = config_.rl;
  return fmt::format(
      "{} on {}: Llama, {} layers, hidden {}, {} heads, {} parameters{}; {} prompts x {} answers "
      "per step, {} pass{} x {} minibatch{}",
      r.is_ppo() ? "PPO" : "GRPO", r.task, c.num_hidden_layers, c.hidden_size,
      c.num_attention_heads, policy_->num_parameters(), r.is_ppo() ? " (with a value head)" : "",
      r.prompts_per_step, r.group_size, r.passes(), r.passes() == 1 ? "" : "es", r.minibatches,
      r.minibatches == 1 ? "" : "es");
}

void RlStep::write_model(const fs::path& dir) const {
  write_llama_files(dir, *llama_, *tokenizer_,
                    config_.json["model"].value("torch_dtype", std::string("float32")));
  if (policy_->has_value_head()) {
    io::save_safetensors((dir / kValueHeadFile).string(),
                         {{"value_head.weight", policy_->value_head->weight},
                          {"value_head.bias", policy_->value_head->bias}});
  }
}

void RlStep::load_model(const std::string& checkpoint_dir) {
  const LoadedCheckpoint saved = load_checkpoint(checkpoint_dir);
  check_same_model(saved.config, config_.model, saved.path);
  llama_->load_state_dict(saved.model->state_dict());
  if (policy_->has_value_head()) {
    const std::string file = (fs::path(saved.path) / kValueHeadFile).string();
    // Under the policy's own names (value_head.weight, value_head.bias); the rest is loaded.
    io::naming_file(file, [&] { policy_->load_state_dict(io::load_safetensors(file), false); });
  }
}

// RUN/data: the reference policy (the initial weights) as a checkpoint, and where it came from.
void RlStep::prepare_data(const RunContext& run, std::ostream& log) {
  const RlSettings& r = config_.rl;
  std::unique_ptr<text::Tokenizer> tokenizer;
  if (!r.init.empty()) {
    LoadedCheckpoint init = load_checkpoint(r.init);
    check_same_model(init.config, config_.model, init.path);
    llama_->load_state_dict(init.model->state_dict());
    tokenizer = std::move(init.tokenizer);
    reference_origin_ = {{"init", fs::absolute(init.path).string()},
                         {"step", init.trainer_state.value("step", json())}};
    log << "rl: initial and reference policy from " << init.path << "\n";
  } else {
    tokenizer = std::make_unique<text::ByteTokenizer>();
    reference_origin_ = {{"init", nullptr}, {"seed", config_.train.seed}};
    log << "rl: initial and reference policy: fresh weights (seed " << config_.train.seed << ")\n";
  }
  MNEMO_CHECK(tokenizer->vocab_size() <= config_.model.vocab_size,
              "rl: the tokenizer has {} ids, more than the model's vocab_size {}",
              tokenizer->vocab_size(), config_.model.vocab_size);
  fs::create_directories(run.data_dir);
  const fs::path reference = run.data_dir / "reference";
  fs::create_directories(reference);
  write_llama_files(reference, *llama_, *tokenizer);
  io::write_file_atomic((run.data_dir / "info.json").string(),
                        json{{"task", r.task}, {"reference", reference_origin_}}.dump(2) + "\n");
}

void RlStep::open_data(const RunContext& run) {
  const RlSettings& r = config_.rl;
  LoadedCheckpoint reference = load_checkpoint((run.data_dir / "reference").string());
  check_same_model(reference.config, config_.model, reference.path);
  reference_ = reference.model;
  if (!run.device.is_cpu()) reference_->to(run.device);
  reference_->eval();
  tokenizer_ = std::move(reference.tokenizer);
  task_ = rl::make_task(r.task, config_.train.seed, *tokenizer_, r.task_options);
  const json info = io::load_json_file((run.data_dir / "info.json").string());
  reference_origin_ = info.value("reference", json());

  const int64_t W = run.comm.world_size(), K = micro_batches_per_pass();
  MNEMO_CHECK(r.prompts_per_step % (W * K) == 0,
              "rl: 'rl.prompts_per_step' ({}) must be a multiple of the ranks ({}) x "
              "'rl.minibatches' ({}) x 'train.grad_accum' ({}), so that every rank has prompts in "
              "every micro-batch",
              r.prompts_per_step, W, r.minibatches, config_.train.grad_accum);
  const int64_t prompt_length = int64_t(task_->prompt(rl::Split::train, 0).ids.size());
  MNEMO_CHECK(prompt_length + r.max_new_tokens <= config_.model.max_position_embeddings,
              "rl: prompts of {} tokens and 'rl.max_new_tokens' {} exceed the model's {} "
              "positions",
              prompt_length, r.max_new_tokens, config_.model.max_position_embeddings);
}

void RlStep::save_data_state(json& state) const {
  state["rl"] = {
      {"prompts_drawn", prompts_drawn_}, {"kl_coef", kl_.coef}, {"reference", reference_origin_}};
}

void RlStep::load_data_state(const json& state) {
  MNEMO_CHECK(state.contains("rl") && state["rl"].contains("prompts_drawn"),
              "trainer state: no rl.prompts_drawn (not a checkpoint of `mnemo rl`?)");
  prompts_drawn_ = state["rl"]["prompts_drawn"].get<uint64_t>();
  kl_.coef = state["rl"].value("kl_coef", config_.rl.kl_coef);
}

int64_t RlStep::tokens_per_step() const {
  const RlSettings& r = config_.rl;
  return r.prompts_per_step * r.group_size * r.max_new_tokens;
}

int64_t RlStep::updates_per_step() const {
  return config_.rl.passes() * config_.rl.minibatches;
}

rl::EvalSettings RlStep::eval_settings() const {
  rl::EvalSettings s;
  s.prompts = config_.rl.eval_prompts;
  s.max_new_tokens = config_.rl.max_new_tokens;
  s.vocab_limit = tokenizer_->vocab_size();
  return s;
}

// Also redraws RUN/kl.svg, the KL to the reference (k3 per token) of every step so far, from
// metrics.jsonl (loss.svg has the reward and val_exact_match).
Validation RlStep::validate(const RunContext& run) {
  const fs::path run_dir = run.data_dir.parent_path();
  const History kl = read_history(run_dir / "metrics.jsonl", {"kl", "val_kl"});
  if (!kl.train.empty()) {
    io::write_loss_svg((run_dir / "kl.svg").string(), kl.train, {},
                       title() + ": KL to the reference per token (k3)");
  }
  const double exact = rl::greedy_exact_match(*llama_, *task_, eval_settings());
  Validation v;
  v.metrics = {{"val_exact_match", exact}};
  v.curve = exact;
  return v;
}

TrainSummary run_rl(TrainOptions options, const std::string& init, std::ostream& log) {
  if (!init.empty()) {
    MNEMO_CHECK(!options.resume,
                "rl: --init starts a new run; --resume continues from the run's checkpoint");
    options.overrides.push_back("rl.init=" + init);
  }
  MNEMO_CHECK(!options.config_file.empty() || options.resume,
              "rl: --config FILE is required (unless --resume)");
  return run_training(
      options, [](const RunConfig& rc) { return std::make_unique<RlStep>(rc); }, log);
}

}  // namespace mnemo::train

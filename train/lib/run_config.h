// A training run's configuration: the JSON schema with its defaults, the typed settings the
// trainer reads, and the conversion of the model section to and from HF's config.json.
//
// A config file has three sections (configs/demo.json is the example):
//   "model": the keys of HF transformers' LlamaConfig (vocab_size, hidden_size, ...), so the
//            section is, key for key, the config.json a checkpoint carries;
//   "train": batch_size (the global batch, in sequences), seq_len, lr, min_lr, warmup_steps,
//            steps, weight_decay, grad_clip, grad_accum, eval_interval, eval_batches,
//            checkpoint_interval, seed, device, plus threads, beta1, beta2, decay, decay_steps
//            (where the decay reaches min_lr; 0 = train.steps), log_interval,
//            bucket_mb (data parallel: gradient bucket size), adam_eps, exact_grads ("auto",
//            "on", "off": split-invariant f64 gradient sums, autograd/exact_grad.h; auto = on
//            for the CPU, off for CUDA), skip_non_finite (0: a NaN/Inf loss or gradient norm
//            stops the run; N: such steps are skipped, N in a row stop it);
//   "data":  path (a text file or directory; "" = the fortunes corpus), tokenizer ("bpe",
//            "byte", or the path of a tokenizer.json), vocab_size (of a trained BPE; null = the
//            model's), val_fraction;
//   "memory": optional. Absent, `mnemo train` trains the plain LM (train/lib/lm_step.h);
//            present, it trains a memory-augmented SegmentLM on streams of segments
//            (train/lib/segment_step.h). Its keys: mechanism (one of
//            memory::mechanism_names(), memory/factory.h; required), segments (segments of
//            train.seq_len tokens per training stream, default 4), scalar_lr_scale (learning-rate
//            factor of the mechanisms' small 0-/1-D controls: gates, temperatures, distance slopes;
//            default 1), and the mechanism's own keys as memory::make_segment_lm takes them
//            (memory/factory.h); its segment_length (the local window) defaults to train.seq_len.
//            The mechanism's keys have no schema here: make_segment_lm rejects unknown ones by name
//            when the run starts, and `--set memory.KEY=VALUE` may add any of them.
//   "rl":    optional; what `mnemo rl` reads (train/lib/rl_step.h), with a typed schema
//            (default_rl_section: every key, its default and type) merged like the sections
//            above, so an unknown or ill-typed key is an error naming it. Present only in RL
//            configs (a plain run's config and run_config.json are unchanged); `--set
//            rl.KEY=VALUE` adds the section with its defaults. The RL run's steps and learning
//            rate are train.steps and train.lr, as for any run; the keys are listed at
//            RlSettings below.
// Every key a file or `--set key=value` names must exist in the schema with a compatible
// type (train/io/config.h): a typo is an error naming the key, never silently ignored.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nn/llama.h"

namespace mnemo::train {

struct TrainSettings {
  int64_t batch_size = 16;  // global batch, in sequences
  int64_t seq_len = 128;
  double lr = 3e-3;
  double min_lr = 3e-4;
  int64_t warmup_steps = 50;
  int64_t steps = 1000;
  double weight_decay = 0.1;
  double grad_clip = 1.0;       // 0 = no clipping
  int64_t grad_accum = 1;       // micro-batches per step (batch_size must divide evenly)
  int64_t eval_interval = 100;  // 0 = only at the end... and never in between
  int64_t eval_batches = 8;
  int64_t checkpoint_interval = 500;  // 0 = only at the end
  uint64_t seed = 0;
  std::string device = "auto";  // auto, cpu, cuda, cuda:N
  int64_t threads = 0;          // CPU threads; 0 = all cores
  double beta1 = 0.9;
  double beta2 = 0.95;
  double adam_eps = 1e-8;
  std::string decay = "cosine";  // cosine, linear, constant (after the warmup)
  // The step at which the decay reaches min_lr (it stays there after); 0 = steps. Apart from
  // steps so that a run can decay early and then hold min_lr (the arith RL configs: 100 of
  // their 2000 steps).
  int64_t decay_steps = 0;
  int64_t log_interval = 10;  // plain progress lines when not on a terminal
  double bucket_mb = 25;      // data parallel: gradient all_reduce bucket size (MiB)
  // Gradients that are the same bits however the batch is split over ranks and micro-batches
  // (autograd/exact_grad.h): "on", "off", or "auto" (on for the CPU, off for CUDA, where
  // the per-sequence weight-gradient GEMMs would cost more than they do on the CPU).
  std::string exact_grads = "auto";
  // A step whose loss or gradient norm is not finite: 0 stops the run with an error naming
  // the step; N > 0 skips it (no update; "skipped_updates" and "skipped_steps" in
  // metrics.jsonl) and stops only after N such steps in a row.
  int64_t skip_non_finite = 0;
  bool exact_grads_on(const Device& device) const {
    return exact_grads == "on" || (exact_grads == "auto" && device.is_cpu());
  }
};

struct DataSettings {
  std::string path;               // "" = the default corpus (fortunes)
  std::string tokenizer = "bpe";  // bpe, byte, or a tokenizer.json path
  int64_t vocab_size = 0;         // BPE vocabulary incl. eos; 0 (null in JSON) = the model's
  double val_fraction = 0.05;
};

// The "memory" section (see the top of this file).
struct MemorySettings {
  bool enabled = false;            // the config has a memory section
  std::string mechanism = "none";  // memory::mechanism_names()
  int64_t segments = 4;            // segments per training stream
  double scalar_lr_scale = 1.0;    // lr factor of the small 0-/1-D non-norm parameters
  // What memory::make_segment_lm receives: the section without the trainer's own keys
  // (mechanism, segments, scalar_lr_scale), with segment_length defaulted to train.seq_len.
  nlohmann::json mechanism_section = nlohmann::json::object();
};

// The "rl" section (train/lib/rl_step.h runs it; train/rl/losses.h and advantages.h have the
// math). Names follow TRL's GRPOConfig and PPOConfig where they exist.
struct RlSettings {
  bool enabled = false;                                    // the config has an rl section
  std::string algo = "grpo";                               // grpo | ppo
  std::string task = "arith";                              // rl::task_names() (train/rl/task.h)
  nlohmann::json task_options = nlohmann::json::object();  // the task's own (arith: digits)
  std::string init;  // checkpoint of the initial and reference policy; "" = fresh weights
  int64_t prompts_per_step = 32;  // P, all ranks together
  int64_t group_size = 8;         // G answers sampled per prompt
  int64_t max_new_tokens = 5;     // answer tokens at most, eos included
  double temperature = 1.0;       // of the rollouts (> 0)
  int64_t minibatches = 1;        // optimizer updates per pass over the rollouts
  int64_t eval_prompts = 256;     // held-out prompts scored greedily at each evaluation
  // clipped surrogate (both algorithms)
  double epsilon = 0.2;      // lower clip: rho >= 1 - epsilon
  double epsilon_high = -1;  // upper clip: rho <= 1 + epsilon_high; null in JSON = epsilon
  // GRPO
  double beta = 0.04;                   // weight of the k3 KL to the reference in the loss
  std::string loss_type = "dapo";       // grpo | bnpo | dr_grpo | dapo
  int64_t num_iterations = 1;           // mu: passes over each batch of rollouts
  std::string scale_rewards = "group";  // group | batch | none
  bool filter_zero_variance = false;    // leave groups with equal rewards out of the loss
  // PPO
  int64_t ppo_epochs = 2;    // passes over each batch of rollouts
  double gamma = 1.0;        // GAE discount
  double lam = 0.95;         // GAE lambda
  double kl_coef = 0.05;     // k1 KL penalty per token, in the reward
  bool adaptive_kl = false;  // adapt kl_coef towards kl_target (advantages.h)
  double kl_target = 6.0;
  double kl_horizon = 10000;
  double cliprange_value = 0.2;  // value clipping around the rollout's values
  double vf_coef = 0.1;          // weight of the value loss
  double entropy_coef = 0.0;     // entropy bonus (0 = none)
  bool whiten_advantages = true;

  bool is_ppo() const { return algo == "ppo"; }
  // Passes over one batch of rollouts: num_iterations (GRPO) or ppo_epochs (PPO).
  int64_t passes() const { return is_ppo() ? ppo_epochs : num_iterations; }
  double clip_high() const { return epsilon_high < 0 ? epsilon : epsilon_high; }
};

struct RunConfig {
  nlohmann::json json;  // the complete, merged config (saved with every checkpoint)
  nn::LlamaConfig model;
  TrainSettings train;
  DataSettings data;
  MemorySettings memory;
  RlSettings rl;
};

// The rl section's schema: every key with its default (and so its type).
nlohmann::json default_rl_section();

// The schema: every section and key with its default value.
nlohmann::json default_run_config();

// Reads FILE (if not empty), merges it over the defaults (the memory section, which has no
// fixed schema, is taken as it is), applies the --set assignments in order (memory.KEY=VALUE
// sets any key of the memory section, creating it if needed) and `steps` (if > 0), then checks the
// values (RunConfig::validate rules: positive sizes, batch divisible by grad_accum, ...). Errors
// name the file or the key.
RunConfig load_run_config(const std::string& file, const std::vector<std::string>& overrides = {},
                          int64_t steps = 0);
// One --set assignment applied to a merged config: memory.KEY=VALUE sets KEY of the memory
// section (VALUE parsed as JSON when it parses, else text; the section is created if absent),
// rl.KEY=VALUE first adds the rl section with its defaults if absent, and everything goes
// through io::apply_override (the schema's checks).
void apply_run_override(nlohmann::json& config, std::string_view assignment);
// The typed view of an already merged config JSON (used on --resume).
RunConfig run_config_from_json(const nlohmann::json& json, std::string_view source);

// HF's config.json for a LlamaForCausalLM with these settings (architectures, model_type,
// hidden_act "silu", attention_bias/mlp_bias false, torch_dtype, ...).
nlohmann::json hf_config_json(const nn::LlamaConfig& config, std::string_view torch_dtype);
// The model settings of an HF config.json (checks model_type and the supported options).
nn::LlamaConfig llama_config_from_hf(const nlohmann::json& json, std::string_view source);

}  // namespace mnemo::train

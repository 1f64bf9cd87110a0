// The run config: schema, merge, typed settings, HF config.json (see run_config.h).
#include "train/lib/run_config.h"

#include <algorithm>
#include <cmath>

#include <fmt/ranges.h>

#include "core/error.h"
#include "memory/factory.h"
#include "train/io/config.h"
#include "train/rl/task.h"

namespace mnemo::train {

using nlohmann::json;

json default_run_config() {
  const nn::LlamaConfig m;
  const TrainSettings t;
  const DataSettings d;
  return json{
      {"model",
       {{"vocab_size", 512},
        {"hidden_size", 128},
        {"intermediate_size", 384},
        {"num_hidden_layers", 4},
        {"num_attention_heads", 4},
        {"num_key_value_heads", 4},
        {"hidden_act", "silu"},
        {"rms_norm_eps", 1e-5},
        {"rope_theta", 10000.0},
        {"max_position_embeddings", 128},
        {"tie_word_embeddings", true},
        {"initializer_range", m.initializer_range},
        {"torch_dtype", "float32"}}},
      {"train",
       {{"batch_size", t.batch_size},
        {"seq_len", t.seq_len},
        {"lr", t.lr},
        {"min_lr", t.min_lr},
        {"warmup_steps", t.warmup_steps},
        {"steps", t.steps},
        {"weight_decay", t.weight_decay},
        {"grad_clip", t.grad_clip},
        {"grad_accum", t.grad_accum},
        {"eval_interval", t.eval_interval},
        {"eval_batches", t.eval_batches},
        {"checkpoint_interval", t.checkpoint_interval},
        {"seed", t.seed},
        {"device", t.device},
        {"threads", t.threads},
        {"beta1", t.beta1},
        {"beta2", t.beta2},
        {"adam_eps", t.adam_eps},
        {"decay", t.decay},
        {"decay_steps", t.decay_steps},
        {"log_interval", t.log_interval},
        {"bucket_mb", t.bucket_mb},
        {"exact_grads", t.exact_grads},
        {"skip_non_finite", t.skip_non_finite}}},
      {"data",
       {{"path", d.path},
        {"tokenizer", d.tokenizer},
        {"vocab_size", d.vocab_size},
        {"val_fraction", d.val_fraction}}},
  };
}

json default_rl_section() {
  const RlSettings r;
  return json{{"algo", r.algo},
              {"task", r.task},
              {"task_options", nullptr},
              {"init", r.init},
              {"prompts_per_step", r.prompts_per_step},
              {"group_size", r.group_size},
              {"max_new_tokens", r.max_new_tokens},
              {"temperature", r.temperature},
              {"minibatches", r.minibatches},
              {"eval_prompts", r.eval_prompts},
              {"epsilon", r.epsilon},
              {"epsilon_high", nullptr},
              {"beta", r.beta},
              {"loss_type", r.loss_type},
              {"num_iterations", r.num_iterations},
              {"scale_rewards", r.scale_rewards},
              {"filter_zero_variance", r.filter_zero_variance},
              {"ppo_epochs", r.ppo_epochs},
              {"gamma", r.gamma},
              {"lam", r.lam},
              {"kl_coef", r.kl_coef},
              {"adaptive_kl", r.adaptive_kl},
              {"kl_target", r.kl_target},
              {"kl_horizon", r.kl_horizon},
              {"cliprange_value", r.cliprange_value},
              {"vf_coef", r.vf_coef},
              {"entropy_coef", r.entropy_coef},
              {"whiten_advantages", r.whiten_advantages}};
}

namespace {

template <typename T>
T get(const json& section, const char* name, std::string_view where) {
  try {
    return section.at(name).get<T>();
  } catch (const json::exception&) {
    fail("{}: key '{}' is missing or has the wrong type", where, name);
  }
}

void check_positive(int64_t value, std::string_view key) {
  MNEMO_CHECK(value > 0, "config: '{}' must be positive, got {}", key, value);
}

void check_non_negative(double value, std::string_view key) {
  MNEMO_CHECK(std::isfinite(value) && value >= 0, "config: '{}' must be finite and >= 0, got {}",
              key, value);
}

// The memory section (run_config.h): the trainer's keys are typed here; the mechanism's keys
// are checked by memory::make_segment_lm when the model is built.
MemorySettings memory_settings(const json& section, const TrainSettings& train,
                               std::string_view source) {
  MNEMO_CHECK(section.is_object(), "{}: 'memory' must be an object (a section), got {}", source,
              section.dump());
  MemorySettings m;
  m.enabled = true;
  MNEMO_CHECK(section.contains("mechanism") && section["mechanism"].is_string(),
              "{}: 'memory.mechanism' is required: one of {}", source,
              fmt::join(memory::mechanism_names(), ", "));
  m.mechanism = section["mechanism"].get<std::string>();
  MNEMO_CHECK(memory::mechanism_built_in(m.mechanism),
              "{}: 'memory.mechanism' must be one of {}, got '{}'", source,
              fmt::join(memory::mechanism_names(), ", "), m.mechanism);
  if (section.contains("segments")) {
    const json& v = section["segments"];
    MNEMO_CHECK(v.is_number_integer() && v.get<int64_t>() >= 1,
                "{}: 'memory.segments' must be a positive integer, got {}", source, v.dump());
    m.segments = v.get<int64_t>();
  }
  if (section.contains("scalar_lr_scale")) {
    const json& v = section["scalar_lr_scale"];
    MNEMO_CHECK(v.is_number() && v.get<double>() > 0 && std::isfinite(v.get<double>()),
                "{}: 'memory.scalar_lr_scale' must be a positive number, got {}", source, v.dump());
    m.scalar_lr_scale = v.get<double>();
  }
  m.mechanism_section = section;
  for (const char* key : {"mechanism", "segments", "scalar_lr_scale"}) {
    m.mechanism_section.erase(key);
  }
  if (!m.mechanism_section.contains("segment_length")) {
    m.mechanism_section["segment_length"] = train.seq_len;
  }
  const json& window = m.mechanism_section["segment_length"];
  MNEMO_CHECK(window.is_number_integer() && window.get<int64_t>() >= train.seq_len,
              "{}: 'memory.segment_length' ({}) must be an integer >= 'train.seq_len' ({}): a "
              "training segment is seq_len tokens",
              source, window.dump(), train.seq_len);
  return m;
}

// The rl section, already merged over default_rl_section() (so every key is there with its
// schema's type): the values' ranges.
RlSettings rl_settings(const json& r, std::string_view source) {
  RlSettings s;
  s.enabled = true;
  s.algo = get<std::string>(r, "algo", source);
  s.task = get<std::string>(r, "task", source);
  s.task_options = r.at("task_options").is_null() ? json::object() : r.at("task_options");
  s.init = get<std::string>(r, "init", source);
  s.prompts_per_step = get<int64_t>(r, "prompts_per_step", source);
  s.group_size = get<int64_t>(r, "group_size", source);
  s.max_new_tokens = get<int64_t>(r, "max_new_tokens", source);
  s.temperature = get<double>(r, "temperature", source);
  s.minibatches = get<int64_t>(r, "minibatches", source);
  s.eval_prompts = get<int64_t>(r, "eval_prompts", source);
  s.epsilon = get<double>(r, "epsilon", source);
  const json& high = r.at("epsilon_high");
  MNEMO_CHECK(high.is_null() || high.is_number(),
              "{}: 'rl.epsilon_high' must be a number or null (= epsilon), got {}", source,
              high.dump());
  s.epsilon_high = high.is_null() ? -1.0 : high.get<double>();
  s.beta = get<double>(r, "beta", source);
  s.loss_type = get<std::string>(r, "loss_type", source);
  s.num_iterations = get<int64_t>(r, "num_iterations", source);
  s.scale_rewards = get<std::string>(r, "scale_rewards", source);
  s.filter_zero_variance = get<bool>(r, "filter_zero_variance", source);
  s.ppo_epochs = get<int64_t>(r, "ppo_epochs", source);
  s.gamma = get<double>(r, "gamma", source);
  s.lam = get<double>(r, "lam", source);
  s.kl_coef = get<double>(r, "kl_coef", source);
  s.adaptive_kl = get<bool>(r, "adaptive_kl", source);
  s.kl_target = get<double>(r, "kl_target", source);
  s.kl_horizon = get<double>(r, "kl_horizon", source);
  s.cliprange_value = get<double>(r, "cliprange_value", source);
  s.vf_coef = get<double>(r, "vf_coef", source);
  s.entropy_coef = get<double>(r, "entropy_coef", source);
  s.whiten_advantages = get<bool>(r, "whiten_advantages", source);

  const auto one_of = [&](const std::string& value, std::vector<std::string> names,
                          const char* key) {
    MNEMO_CHECK(std::find(names.begin(), names.end(), value) != names.end(),
                "{}: 'rl.{}' must be one of {}, got '{}'", source, key, fmt::join(names, ", "),
                value);
  };
  one_of(s.algo, {"grpo", "ppo"}, "algo");
  one_of(s.task, rl::task_names(), "task");
  one_of(s.loss_type, {"grpo", "bnpo", "dr_grpo", "dapo"}, "loss_type");
  one_of(s.scale_rewards, {"group", "batch", "none"}, "scale_rewards");
  MNEMO_CHECK(s.task_options.is_object(), "{}: 'rl.task_options' must be an object, got {}", source,
              s.task_options.dump());
  check_positive(s.prompts_per_step, "rl.prompts_per_step");
  check_positive(s.group_size, "rl.group_size");
  check_positive(s.max_new_tokens, "rl.max_new_tokens");
  check_positive(s.minibatches, "rl.minibatches");
  check_positive(s.eval_prompts, "rl.eval_prompts");
  check_positive(s.num_iterations, "rl.num_iterations");
  check_positive(s.ppo_epochs, "rl.ppo_epochs");
  MNEMO_CHECK(s.algo == "ppo" || s.group_size >= 2,
              "config: 'rl.group_size' must be at least 2 for GRPO (a group is its own "
              "baseline), got {}",
              s.group_size);
  MNEMO_CHECK(s.prompts_per_step % s.minibatches == 0,
              "config: 'rl.prompts_per_step' ({}) must be a multiple of 'rl.minibatches' ({})",
              s.prompts_per_step, s.minibatches);
  MNEMO_CHECK(std::isfinite(s.temperature) && s.temperature > 0,
              "config: 'rl.temperature' must be positive, got {}", s.temperature);
  MNEMO_CHECK(s.epsilon >= 0 && s.epsilon < 1, "config: 'rl.epsilon' must be in [0, 1), got {}",
              s.epsilon);
  for (const auto& [value, key] : {std::pair{s.clip_high(), "rl.epsilon_high"},
                                   {s.beta, "rl.beta"},
                                   {s.kl_coef, "rl.kl_coef"},
                                   {s.vf_coef, "rl.vf_coef"},
                                   {s.entropy_coef, "rl.entropy_coef"}}) {
    check_non_negative(value, key);
  }
  for (const auto& [value, key] : {std::pair{s.gamma, "rl.gamma"}, {s.lam, "rl.lam"}}) {
    MNEMO_CHECK(value >= 0 && value <= 1, "config: '{}' must be in [0, 1], got {}", key, value);
  }
  for (const auto& [value, key] : {std::pair{s.kl_target, "rl.kl_target"},
                                   {s.kl_horizon, "rl.kl_horizon"},
                                   {s.cliprange_value, "rl.cliprange_value"}}) {
    MNEMO_CHECK(std::isfinite(value) && value > 0, "config: '{}' must be positive, got {}", key,
                value);
  }
  return s;
}

}  // namespace

void apply_run_override(json& config, std::string_view assignment) {
  MNEMO_CHECK(io::is_valid_utf8(assignment), "--set: the assignment is not valid UTF-8");
  const size_t equals = assignment.find('=');
  const std::string_view key = assignment.substr(0, equals);
  if (equals == std::string_view::npos || !key.starts_with("memory.")) {
    if (key.starts_with("rl.") && config.is_object() && !config.contains("rl")) {
      config["rl"] = default_rl_section();
    }
    io::apply_override(config, assignment);
    return;
  }
  const std::string name(key.substr(7));
  MNEMO_CHECK(!name.empty() && name.find('.') == std::string::npos,
              "--set {}: expected memory.KEY=VALUE", assignment);
  const std::string text(assignment.substr(equals + 1));
  json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) value = text;
  if (!config.contains("memory")) config["memory"] = json::object();
  MNEMO_CHECK(config["memory"].is_object(), "--set {}: 'memory' is not a section", assignment);
  config["memory"][name] = value;
}

RunConfig run_config_from_json(const json& config, std::string_view source) {
  RunConfig rc;
  rc.json = config;
  MNEMO_CHECK(config.is_object() && config.contains("model") && config.contains("train") &&
                  config.contains("data"),
              "{}: a run config needs the sections model, train and data", source);
  rc.model = llama_config_from_hf(config["model"], source);

  const json& t = config["train"];
  TrainSettings& s = rc.train;
  s.batch_size = get<int64_t>(t, "batch_size", source);
  s.seq_len = get<int64_t>(t, "seq_len", source);
  s.lr = get<double>(t, "lr", source);
  s.min_lr = get<double>(t, "min_lr", source);
  s.warmup_steps = get<int64_t>(t, "warmup_steps", source);
  s.steps = get<int64_t>(t, "steps", source);
  s.weight_decay = get<double>(t, "weight_decay", source);
  s.grad_clip = get<double>(t, "grad_clip", source);
  s.grad_accum = get<int64_t>(t, "grad_accum", source);
  s.eval_interval = get<int64_t>(t, "eval_interval", source);
  s.eval_batches = get<int64_t>(t, "eval_batches", source);
  s.checkpoint_interval = get<int64_t>(t, "checkpoint_interval", source);
  s.seed = get<uint64_t>(t, "seed", source);
  s.device = get<std::string>(t, "device", source);
  s.threads = get<int64_t>(t, "threads", source);
  s.beta1 = get<double>(t, "beta1", source);
  s.beta2 = get<double>(t, "beta2", source);
  s.decay = get<std::string>(t, "decay", source);
  // Absent from run configs saved before it existed (a resumed run).
  s.decay_steps = t.contains("decay_steps") ? get<int64_t>(t, "decay_steps", source) : 0;
  s.log_interval = get<int64_t>(t, "log_interval", source);
  s.adam_eps = t.contains("adam_eps") ? get<double>(t, "adam_eps", source) : 1e-8;
  MNEMO_CHECK(std::isfinite(s.adam_eps) && s.adam_eps > 0,
              "config: 'train.adam_eps' must be positive, got {}", s.adam_eps);
  s.bucket_mb = t.contains("bucket_mb") ? get<double>(t, "bucket_mb", source) : 25.0;
  s.exact_grads =
      t.contains("exact_grads") ? get<std::string>(t, "exact_grads", source) : std::string("auto");
  MNEMO_CHECK(s.exact_grads == "auto" || s.exact_grads == "on" || s.exact_grads == "off",
              "config: 'train.exact_grads' must be auto, on or off, got '{}'", s.exact_grads);
  // Absent from run configs saved before it existed (a resumed run).
  s.skip_non_finite =
      t.contains("skip_non_finite") ? get<int64_t>(t, "skip_non_finite", source) : int64_t(0);
  check_non_negative(double(s.skip_non_finite), "train.skip_non_finite");

  check_positive(s.batch_size, "train.batch_size");
  check_positive(s.seq_len, "train.seq_len");
  check_positive(s.steps, "train.steps");
  check_positive(s.grad_accum, "train.grad_accum");
  check_positive(s.eval_batches, "train.eval_batches");
  check_positive(s.log_interval, "train.log_interval");
  MNEMO_CHECK(s.batch_size % s.grad_accum == 0,
              "config: 'train.batch_size' ({}) must be a multiple of 'train.grad_accum' ({})",
              s.batch_size, s.grad_accum);
  MNEMO_CHECK(s.seq_len <= rc.model.max_position_embeddings,
              "config: 'train.seq_len' ({}) exceeds 'model.max_position_embeddings' ({})",
              s.seq_len, rc.model.max_position_embeddings);
  MNEMO_CHECK(std::isfinite(s.bucket_mb) && s.bucket_mb > 0,
              "config: 'train.bucket_mb' must be positive, got {}", s.bucket_mb);
  check_non_negative(s.lr, "train.lr");
  check_non_negative(s.min_lr, "train.min_lr");
  check_non_negative(s.weight_decay, "train.weight_decay");
  check_non_negative(s.grad_clip, "train.grad_clip");
  check_non_negative(double(s.warmup_steps), "train.warmup_steps");
  MNEMO_CHECK(s.decay_steps == 0 || s.decay_steps >= s.warmup_steps,
              "config: 'train.decay_steps' ({}) must be 0 (= train.steps) or at least "
              "'train.warmup_steps' ({})",
              s.decay_steps, s.warmup_steps);
  check_non_negative(double(s.eval_interval), "train.eval_interval");
  check_non_negative(double(s.checkpoint_interval), "train.checkpoint_interval");
  check_non_negative(double(s.threads), "train.threads");
  MNEMO_CHECK(s.beta1 >= 0 && s.beta1 < 1, "config: 'train.beta1' must be in [0, 1), got {}",
              s.beta1);
  MNEMO_CHECK(s.beta2 >= 0 && s.beta2 < 1, "config: 'train.beta2' must be in [0, 1), got {}",
              s.beta2);
  MNEMO_CHECK(s.decay == "cosine" || s.decay == "linear" || s.decay == "constant",
              "config: 'train.decay' must be cosine, linear or constant, got '{}'", s.decay);
  Device::parse(s.device == "auto" ? "cpu" : s.device);  // throws on a bad device name

  const json& d = config["data"];
  DataSettings& ds = rc.data;
  ds.path = get<std::string>(d, "path", source);
  ds.tokenizer = get<std::string>(d, "tokenizer", source);
  ds.vocab_size = get<int64_t>(d, "vocab_size", source);
  ds.val_fraction = get<double>(d, "val_fraction", source);
  if (ds.vocab_size == 0) ds.vocab_size = rc.model.vocab_size;
  MNEMO_CHECK(ds.val_fraction > 0 && ds.val_fraction < 1,
              "config: 'data.val_fraction' must be in (0, 1), got {}", ds.val_fraction);
  MNEMO_CHECK(ds.vocab_size <= rc.model.vocab_size,
              "config: 'data.vocab_size' ({}) exceeds 'model.vocab_size' ({})", ds.vocab_size,
              rc.model.vocab_size);

  for (const auto& [key, value] : config.items()) {
    MNEMO_CHECK(key == "model" || key == "train" || key == "data" || key == "memory" || key == "rl",
                "{}: unknown key '{}' (the sections are model, train, data, memory and rl)", source,
                key);
  }
  if (config.contains("memory")) rc.memory = memory_settings(config["memory"], s, source);
  if (config.contains("rl")) {
    MNEMO_CHECK(config["rl"].is_object(), "{}: 'rl' must be an object (a section), got {}", source,
                config["rl"].dump());
    // Checked against the schema here too: a config given as JSON (a checkpoint's) has not
    // been through load_run_config's merge.
    const json rl =
        io::merge_config({{"rl", default_rl_section()}}, {{"rl", config["rl"]}}, source)["rl"];
    rc.rl = rl_settings(rl, source);
  }
  return rc;
}

RunConfig load_run_config(const std::string& file, const std::vector<std::string>& overrides,
                          int64_t steps) {
  json config = default_run_config();
  if (!file.empty()) {
    json user = io::load_json_file(file);
    json memory;  // null when absent
    if (user.is_object() && user.contains("memory")) {
      memory = user["memory"];
      user.erase("memory");
    }
    // An rl section is merged over its schema like the fixed sections.
    if (user.is_object() && user.contains("rl")) config["rl"] = default_rl_section();
    config = io::merge_config(config, user, file);
    if (!memory.is_null()) config["memory"] = memory;
  }
  for (const std::string& assignment : overrides) apply_run_override(config, assignment);
  if (steps > 0) config["train"]["steps"] = steps;
  return run_config_from_json(config, file.empty() ? "config" : file);
}

json hf_config_json(const nn::LlamaConfig& c, std::string_view torch_dtype) {
  return json{{"architectures", {"LlamaForCausalLM"}},
              {"model_type", "llama"},
              {"vocab_size", c.vocab_size},
              {"hidden_size", c.hidden_size},
              {"intermediate_size", c.intermediate_size},
              {"num_hidden_layers", c.num_hidden_layers},
              {"num_attention_heads", c.num_attention_heads},
              {"num_key_value_heads", c.num_key_value_heads},
              {"hidden_act", c.hidden_act},
              {"rms_norm_eps", c.rms_norm_eps},
              {"rope_theta", c.rope_theta},
              {"max_position_embeddings", c.max_position_embeddings},
              {"tie_word_embeddings", c.tie_word_embeddings},
              {"initializer_range", c.initializer_range},
              {"attention_bias", false},
              {"attention_dropout", 0.0},
              {"mlp_bias", false},
              {"head_dim", c.hidden_size / c.num_attention_heads},
              {"pretraining_tp", 1},
              {"rope_scaling", nullptr},
              {"use_cache", true},
              {"bos_token_id", nullptr},
              {"eos_token_id", c.vocab_size - 1},
              {"torch_dtype", std::string(torch_dtype)}};
}

nn::LlamaConfig llama_config_from_hf(const json& j, std::string_view source) {
  MNEMO_CHECK(j.is_object(), "{}: the model config must be a JSON object", source);
  if (j.contains("model_type")) {
    MNEMO_CHECK(j["model_type"] == "llama", "{}: model_type must be \"llama\", got {}", source,
                j["model_type"].dump());
  }
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    if (j.contains(key)) {
      MNEMO_CHECK(j[key] == false, "{}: '{}' must be false (mnemo's Llama has no biases)", source,
                  key);
    }
  }
  if (j.contains("rope_scaling")) {
    MNEMO_CHECK(j["rope_scaling"].is_null(), "{}: 'rope_scaling' is not supported", source);
  }
  nn::LlamaConfig c;
  c.vocab_size = get<int64_t>(j, "vocab_size", source);
  c.hidden_size = get<int64_t>(j, "hidden_size", source);
  c.intermediate_size = get<int64_t>(j, "intermediate_size", source);
  c.num_hidden_layers = get<int64_t>(j, "num_hidden_layers", source);
  c.num_attention_heads = get<int64_t>(j, "num_attention_heads", source);
  c.num_key_value_heads = j.contains("num_key_value_heads")
                              ? get<int64_t>(j, "num_key_value_heads", source)
                              : c.num_attention_heads;
  c.hidden_act = j.contains("hidden_act") ? get<std::string>(j, "hidden_act", source) : "silu";
  c.rms_norm_eps = get<double>(j, "rms_norm_eps", source);
  c.rope_theta = j.contains("rope_theta") ? get<double>(j, "rope_theta", source) : 10000.0;
  c.max_position_embeddings = get<int64_t>(j, "max_position_embeddings", source);
  c.tie_word_embeddings =
      j.contains("tie_word_embeddings") ? get<bool>(j, "tie_word_embeddings", source) : true;
  if (j.contains("initializer_range")) {
    c.initializer_range = get<double>(j, "initializer_range", source);
  }
  if (j.contains("head_dim") && !j["head_dim"].is_null()) {
    MNEMO_CHECK(get<int64_t>(j, "head_dim", source) * c.num_attention_heads == c.hidden_size,
                "{}: 'head_dim' must equal hidden_size / num_attention_heads", source);
  }
  if (j.contains("torch_dtype")) {
    const std::string dtype = get<std::string>(j, "torch_dtype", source);
    MNEMO_CHECK(dtype == "float32" || dtype == "bfloat16",
                "{}: 'torch_dtype' must be float32 or bfloat16, got '{}'", source, dtype);
  }
  try {
    c.validate();
  } catch (const Error& e) {
    rethrow_with(e, "{}: {}", source, e.what());
  }
  return c;
}

}  // namespace mnemo::train

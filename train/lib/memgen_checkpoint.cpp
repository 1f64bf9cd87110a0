// MemGen checkpoints and `mnemo sample` on them (memgen_checkpoint.h).
#include "train/lib/memgen_checkpoint.h"

#include <filesystem>
#include <ostream>

#include "core/error.h"
#include "train/io/checkpoint_dir.h"
#include "train/io/config.h"
#include "train/io/files.h"
#include "train/io/safetensors.h"
#include "train/lib/checkpoint.h"

namespace mnemo::train {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kTriggerPrefix = "trigger.";

std::string resolve(const std::string& path) {
  if (fs::exists(fs::path(path) / "memgen.json")) return path;
  const fs::path latest = fs::path(path) / "latest";
  if (fs::exists(latest / "memgen.json")) return fs::canonical(latest).string();
  fail("{} is not a MemGen checkpoint (no memgen.json in it or in its latest)", path);
}

}  // namespace

std::string save_memgen_checkpoint(const std::string& run_dir, int64_t step,
                                   const memory::MemGenLM& lm, const memory::MemGenTrigger* trigger,
                                   memory::InsertMode mode, const text::Tokenizer& tokenizer) {
  return save_checkpoint(run_dir, step, [&](const fs::path& dir) {
    fs::create_directories(dir / "reasoner");
    write_llama_files(dir / "reasoner", lm.reasoner(), tokenizer);
    nn::NamedTensors tensors = lm.state_dict();
    if (trigger != nullptr) {
      for (const auto& [name, t] : trigger->state_dict())
        tensors.emplace_back(kTriggerPrefix + name, t);
    }
    io::save_safetensors((dir / "memgen.safetensors").string(), tensors);
    const json meta{{"memgen", lm.config().to_json()},
                    {"insert", memory::insert_mode_name(mode)},
                    {"trigger", trigger != nullptr}};
    io::write_file_atomic((dir / "memgen.json").string(), meta.dump(2) + "\n");
  });
}

bool is_memgen_checkpoint(const std::string& path) {
  return fs::exists(fs::path(path) / "memgen.json") ||
         fs::exists(fs::path(path) / "latest" / "memgen.json");
}

LoadedMemGen load_memgen_checkpoint(const std::string& path) {
  LoadedMemGen out;
  out.path = resolve(path);
  const fs::path dir(out.path);
  const std::string meta_file = (dir / "memgen.json").string();
  const json meta = io::load_json_file(meta_file);
  MNEMO_CHECK(meta.is_object() && meta.contains("memgen") && meta.contains("insert") &&
                  meta.contains("trigger") && meta["insert"].is_string() &&
                  meta["trigger"].is_boolean(),
              "{}: needs the keys memgen (object), insert (string) and trigger (bool)", meta_file);
  LoadedCheckpoint reasoner = load_checkpoint((dir / "reasoner").string());
  out.tokenizer = std::move(reasoner.tokenizer);
  const memory::MemGenConfig config = memory::MemGenConfig::from_json(meta["memgen"]);
  out.lm = std::make_unique<memory::MemGenLM>(reasoner.model, config);
  out.mode = memory::parse_insert_mode(meta["insert"].get<std::string>());
  if (meta["trigger"].get<bool>()) {
    out.trigger =
        std::make_unique<memory::MemGenTrigger>(reasoner.config.hidden_size, config.trigger_init);
  }
  // Split the file's tensors between the model and the trigger.
  nn::NamedTensors model_state, trigger_state;
  const std::string weights = (dir / "memgen.safetensors").string();
  for (auto& [name, t] : io::load_safetensors(weights)) {
    if (name.rfind(kTriggerPrefix, 0) == 0) {
      trigger_state.emplace_back(name.substr(std::string(kTriggerPrefix).size()), t);
    } else {
      model_state.emplace_back(name, t);
    }
  }
  try {
    out.lm->load_state_dict(model_state);
    if (out.trigger) out.trigger->load_state_dict(trigger_state);
  } catch (const Error& e) {
    fail("{}: {}", weights, e.what());
  }
  MNEMO_CHECK(out.trigger != nullptr || out.mode != memory::InsertMode::trigger,
              "{}: insert is 'trigger' but no trigger was saved", meta_file);
  return out;
}

void run_sample_memgen(const SampleOptions& o, std::ostream& out) {
  MNEMO_CHECK(!o.show_retrieval && o.bank_update.empty(),
              "sample: --show-retrieval and --bank-update need an explicit memory checkpoint; {} "
              "is a MemGen one",
              o.checkpoint);
  const LoadedMemGen ckpt = load_memgen_checkpoint(o.checkpoint);
  const text::Tokenizer& tok = *ckpt.tokenizer;
  std::vector<int32_t> prompt{tok.eos_id()};
  for (int32_t id : tok.encode(o.prompt)) prompt.push_back(id);
  memory::MemGenGenerateOptions g;
  g.mode = ckpt.mode;
  g.max_new_tokens = std::min<int64_t>(
      o.max_tokens, ckpt.lm->reasoner().config.max_position_embeddings - int64_t(prompt.size()));
  MNEMO_CHECK(g.max_new_tokens >= 1, "sample: the prompt fills the reasoner's {} positions",
              ckpt.lm->reasoner().config.max_position_embeddings);
  g.eos_id = tok.eos_id();
  g.vocab_limit = tok.vocab_size();
  g.sampling.temperature = o.temperature;
  g.sampling.top_k = o.top_k;
  g.sampling.top_p = o.top_p;
  g.seed = o.seed;
  g.use_cache = o.use_cache;
  const memory::MemGenGenerated r =
      memory::memgen_generate(*ckpt.lm, ckpt.trigger.get(), {prompt}, g);
  std::vector<int32_t> tokens = r.tokens[0];
  if (!tokens.empty() && tokens.back() == tok.eos_id()) tokens.pop_back();
  // The text, with "[+K]" after each token that latents followed.
  std::string text;
  const int64_t P = int64_t(prompt.size());
  auto mark = [&](int64_t column) {
    for (const memory::InsertionPoint& p : r.inserted[0]) {
      if (p.after == column) text += "[+" + std::to_string(ckpt.lm->latents_at(p)) + "]";
    }
  };
  text += o.prompt;
  mark(P - 1);
  for (size_t i = 0; i < tokens.size(); ++i) {
    text += tok.decode(std::span<const int32_t>(&tokens[i], 1));
    mark(P + int64_t(i));
  }
  out << text << "\n";
  out << "memgen: " << memory::insert_mode_name(ckpt.mode) << ", " << r.inserted[0].size()
      << " insertions";
  for (const memory::TriggerDecision& d : r.decisions) {
    out << (d.row == 0 && &d == &r.decisions.front() ? "; trigger P(insert):" : "") << " "
        << fmt::format("{:.2f}", d.p_insert);
  }
  out << "\n";
}

}  // namespace mnemo::train

// Memory-augmented checkpoints: the model, its files, loading (see segment_checkpoint.h).
#include "train/lib/segment_checkpoint.h"

#include "autograd/ops.h"
#include "core/error.h"
#include "memory/explicit.h"
#include "memory/factory.h"
#include "train/io/checkpoint_dir.h"
#include "train/io/config.h"
#include "train/io/files.h"
#include "train/io/safetensors.h"
#include "train/lib/bank_file.h"

namespace mnemo::train {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The memory section as checkpointed in config.json: the trainer's keys and the mechanism's.
json resolved_memory_section(const MemorySettings& m) {
  json section = m.mechanism_section;
  section["mechanism"] = m.mechanism;
  section["segments"] = m.segments;
  section["scalar_lr_scale"] = m.scalar_lr_scale;
  return section;
}

}  // namespace

std::unique_ptr<memory::SegmentLM> make_run_segment_lm(const RunConfig& rc, uint64_t seed) {
  MNEMO_CHECK(rc.memory.enabled, "train: the config has no memory section");
  Generator gen(seed);
  try {
    return memory::make_segment_lm(rc.memory.mechanism, rc.model, rc.memory.mechanism_section,
                                   &gen);
  } catch (const Error& e) {
    rethrow_with(e, "config: memory section (mechanism '{}'): {}", rc.memory.mechanism, e.what());
  }
}

void write_segment_files(const fs::path& dir, const memory::SegmentLM& lm, const RunConfig& rc,
                         const text::Tokenizer& tokenizer) {
  json config = hf_config_json(rc.model, "float32");
  config["architectures"] = json::array({"MnemoSegmentLM"});
  config["memory"] = resolved_memory_section(rc.memory);
  io::write_file_atomic((dir / "config.json").string(), config.dump(2) + "\n");
  save_segment_weights(dir, lm);
  tokenizer.save((dir / "tokenizer.json").string());
}

void save_segment_weights(const fs::path& dir, const memory::SegmentLM& lm) {
  io::NamedTensors weights;
  for (const auto& [name, tensor] : lm.state_dict()) weights.emplace_back(name, detach(tensor));
  io::save_safetensors((dir / "model.safetensors").string(), weights, {{"format", "pt"}});
}

void load_run_bank(memory::SegmentLM& lm, const text::Tokenizer& tokenizer) {
  auto* model = dynamic_cast<memory::ExplicitLM*>(&lm);
  if (model == nullptr || model->config.bank.empty()) return;
  const memory::MemoryBank& empty = model->bank();
  try {
    model->set_bank(read_bank_for_model(model->config.bank, tokenizer, empty.side(), empty.length(),
                                        empty.freeze_ratio()));
  } catch (const Error& e) {
    rethrow_with(e, "config: 'memory.bank': {}", e.what());
  }
}

void load_segment_weights(const std::string& checkpoint_dir, memory::SegmentLM& lm) {
  const std::string weights = (fs::path(checkpoint_dir) / "model.safetensors").string();
  io::naming_file(weights, [&] { lm.load_state_dict(io::load_safetensors(weights)); });
}

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
  load_segment_weights(out.path, *out.lm);
  out.lm->eval();
  out.tokenizer = text::Tokenizer::load((dir / "tokenizer.json").string());
  out.lm->document_end_id = out.tokenizer->eos_id();  // memories end with their document
  return out;
}

}  // namespace mnemo::train

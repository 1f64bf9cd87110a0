// Checkpoint directories: save and load (see checkpoint.h).
#include "train/lib/checkpoint.h"

#include <filesystem>

#include "autograd/ops.h"
#include "core/error.h"
#include "train/io/checkpoint_dir.h"
#include "train/io/config.h"
#include "train/io/files.h"
#include "train/io/safetensors.h"
#include "train/lib/run_config.h"

namespace mnemo::train {

namespace fs = std::filesystem;
using nlohmann::json;

std::string save_checkpoint(const std::string& run_dir, int64_t step,
                            const std::function<void(const fs::path&)>& write_files, int keep) {
  const std::string tmp = io::begin_checkpoint(run_dir, step);
  try {
    write_files(fs::path(tmp));
  } catch (...) {  // e.g. a full disk: leave no half-written directory behind
    std::error_code ignored;
    fs::remove_all(tmp, ignored);
    throw;
  }
  return io::commit_checkpoint(run_dir, tmp, step, keep);
}

void write_llama_files(const fs::path& dir, const nn::LlamaForCausalLM& model,
                       const text::Tokenizer& tokenizer, std::string_view torch_dtype) {
  MNEMO_CHECK(torch_dtype == "float32" || torch_dtype == "bfloat16",
              "checkpoint: torch_dtype must be float32 or bfloat16, got '{}'", torch_dtype);
  io::write_file_atomic((dir / "config.json").string(),
                        hf_config_json(model.config, torch_dtype).dump(2) + "\n");
  // HF's names; with tied embeddings lm_head.weight is not stored (transformers re-ties it).
  std::vector<std::pair<std::string, Tensor>> weights;
  const DType dtype = torch_dtype == "bfloat16" ? DType::bf16 : DType::f32;
  for (auto& [name, tensor] : model.state_dict()) {
    if (model.config.tie_word_embeddings && name == "lm_head.weight") continue;
    weights.emplace_back(name, tensor.dtype() == dtype ? tensor : to(detach(tensor), dtype));
  }
  io::save_safetensors((dir / "model.safetensors").string(), weights, {{"format", "pt"}});
  tokenizer.save((dir / "tokenizer.json").string());
}

void write_optimizer_state(const fs::path& dir, const optim::NamedTensors& state) {
  io::save_safetensors((dir / "optimizer.safetensors").string(), state);
}

LoadedCheckpoint load_checkpoint(const std::string& path) {
  LoadedCheckpoint out;
  out.path = io::resolve_checkpoint(path);
  const fs::path dir(out.path);
  const std::string config_file = (dir / "config.json").string();
  out.config = llama_config_from_hf(io::load_json_file(config_file), config_file);
  out.model = std::make_shared<nn::LlamaForCausalLM>(out.config);
  out.model->eval();

  const std::string weights_file = (dir / "model.safetensors").string();
  auto weights = io::load_safetensors(weights_file);
  std::vector<std::pair<std::string, Tensor>> expected = out.model->state_dict();
  std::vector<std::pair<std::string, Tensor>> loaded;
  for (auto& [name, tensor] : weights) {
    auto it = std::find_if(expected.begin(), expected.end(),
                           [&key = name](const auto& e) { return e.first == key; });
    MNEMO_CHECK(it != expected.end(), "{}: unexpected tensor '{}' for this config", weights_file,
                name);
    MNEMO_CHECK(tensor.shape() == it->second.shape(),
                "{}: tensor '{}' has shape {}, the config needs {}", weights_file, name,
                shape_str(tensor.shape()), shape_str(it->second.shape()));
    MNEMO_CHECK(tensor.dtype() == DType::f32 || tensor.dtype() == DType::bf16 ||
                    tensor.dtype() == DType::f16,
                "{}: tensor '{}' has dtype {}, expected a floating dtype (F32, BF16, F16)",
                weights_file, name, tensor.dtype());
    loaded.emplace_back(name, tensor);
  }
  for (const auto& [name, tensor] : expected) {
    const bool tied_head = out.config.tie_word_embeddings && name == "lm_head.weight";
    const bool present = std::any_of(loaded.begin(), loaded.end(),
                                     [&key = name](const auto& l) { return l.first == key; });
    MNEMO_CHECK(present || tied_head, "{}: missing tensor '{}'", weights_file, name);
  }
  out.model->load_state_dict(loaded, /*strict=*/false);

  out.tokenizer = text::Tokenizer::load((dir / "tokenizer.json").string());
  MNEMO_CHECK(out.tokenizer->vocab_size() <= out.config.vocab_size,
              "{}: the tokenizer has {} ids but the model's vocab_size is {}",
              (dir / "tokenizer.json").string(), out.tokenizer->vocab_size(),
              out.config.vocab_size);
  const fs::path state_file = dir / "trainer_state.json";
  out.trainer_state =
      fs::exists(state_file) ? io::load_json_file(state_file.string()) : json::object();
  return out;
}

void load_optimizer_state(const std::string& checkpoint_dir, optim::Optimizer& optimizer) {
  const std::string file = (fs::path(checkpoint_dir) / "optimizer.safetensors").string();
  io::naming_file(file, [&] { optimizer.load_state_tensors(io::load_safetensors(file)); });
}

}  // namespace mnemo::train

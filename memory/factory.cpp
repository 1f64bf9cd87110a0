// make_segment_lm (factory.h): mechanism name -> SegmentLM.
#include "memory/factory.h"

#include <algorithm>

#include "core/error.h"
#include "memory/baseline.h"
#include "memory/memformer.h"
#include "memory/memorizing.h"

namespace mnemo::memory {

namespace {

std::unique_ptr<SegmentLM> make_baseline(const nn::LlamaConfig& model,
                                         const nlohmann::json& section, Generator* gen) {
  MNEMO_CHECK(section.is_null() || section.is_object(), "memory section: must be an object, got {}",
              section.type_name());
  int64_t segment_length = model.max_position_embeddings;
  if (section.is_object()) {
    for (const auto& [key, value] : section.items()) {
      MNEMO_CHECK(key == "segment_length",
                  "memory.{}: unknown key for mechanism 'none' (it takes segment_length)", key);
      MNEMO_CHECK(value.is_number_integer(), "memory.segment_length: must be an integer, got {}",
                  value.dump());
      segment_length = value.get<int64_t>();
    }
  }
  return std::make_unique<BaselineLM>(model, segment_length, gen);
}

}  // namespace

std::vector<std::string> mechanism_names() {
  return {"none", "memorizing", "memformer"};
}

bool mechanism_built_in(const std::string& name) {
  const auto names = mechanism_names();
  return std::find(names.begin(), names.end(), name) != names.end();
}

std::unique_ptr<SegmentLM> make_segment_lm(const std::string& mechanism,
                                           const nn::LlamaConfig& model,
                                           const nlohmann::json& memory_section, Generator* gen) {
  if (mechanism == "none") return make_baseline(model, memory_section, gen);
  if (mechanism == "memorizing") {
    return std::make_unique<MemorizingLM>(model, MemorizingConfig::from_json(memory_section), gen);
  }
  if (mechanism == "memformer") {
    return std::make_unique<MemformerLM>(model, MemformerConfig::from_json(memory_section), gen);
  }
  fail("unknown memory mechanism '{}' (none, memorizing or memformer)", mechanism);
}

}  // namespace mnemo::memory

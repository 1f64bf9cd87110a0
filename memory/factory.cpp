// make_segment_lm (factory.h). The mechanisms' headers are included only when present, so the
// factory builds while a mechanism is still being written.
#include "memory/factory.h"

#include "core/error.h"
#include "memory/baseline.h"

#if __has_include("memory/memorizing.h")
#include "memory/memorizing.h"
#define MNEMO_MEMORY_HAS_MEMORIZING 1
#else
#define MNEMO_MEMORY_HAS_MEMORIZING 0
#endif
#if __has_include("memory/memformer.h")
#include "memory/memformer.h"
#define MNEMO_MEMORY_HAS_MEMFORMER 1
#else
#define MNEMO_MEMORY_HAS_MEMFORMER 0
#endif

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
  if (name == "none") return true;
  if (name == "memorizing") return MNEMO_MEMORY_HAS_MEMORIZING;
  if (name == "memformer") return MNEMO_MEMORY_HAS_MEMFORMER;
  return false;
}

std::unique_ptr<SegmentLM> make_segment_lm(const std::string& mechanism,
                                           const nn::LlamaConfig& model,
                                           const nlohmann::json& memory_section, Generator* gen) {
  if (mechanism == "none") return make_baseline(model, memory_section, gen);
  if (mechanism == "memorizing") {
#if MNEMO_MEMORY_HAS_MEMORIZING
    return std::make_unique<MemorizingLM>(model, MemorizingConfig::from_json(memory_section), gen);
#else
    fail("memory mechanism 'memorizing' is not built in (memory/memorizing.h is missing)");
#endif
  }
  if (mechanism == "memformer") {
#if MNEMO_MEMORY_HAS_MEMFORMER
    return std::make_unique<MemformerLM>(model, MemformerConfig::from_json(memory_section), gen);
#else
    fail("memory mechanism 'memformer' is not built in (memory/memformer.h is missing)");
#endif
  }
  fail("unknown memory mechanism '{}' (none, memorizing or memformer)", mechanism);
}

}  // namespace mnemo::memory

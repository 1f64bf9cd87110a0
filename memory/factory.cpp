// make_segment_lm (factory.h): mechanism name -> SegmentLM.
#include "memory/factory.h"

#include <fmt/ranges.h>

#include <algorithm>

#include "core/error.h"
#include "memory/baseline.h"
#include "memory/explicit.h"
#include "memory/memformer.h"
#include "memory/memorizing.h"
#include "memory/titans.h"

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

std::unique_ptr<SegmentLM> make_memorizing(const nn::LlamaConfig& model,
                                           const nlohmann::json& section, Generator* gen) {
  return std::make_unique<MemorizingLM>(model, MemorizingConfig::from_json(section), gen);
}

std::unique_ptr<SegmentLM> make_memformer(const nn::LlamaConfig& model,
                                          const nlohmann::json& section, Generator* gen) {
  return std::make_unique<MemformerLM>(model, MemformerConfig::from_json(section), gen);
}

std::unique_ptr<SegmentLM> make_explicit(const nn::LlamaConfig& model,
                                         const nlohmann::json& section, Generator* gen) {
  return std::make_unique<ExplicitLM>(model, ExplicitConfig::from_json(section), gen);
}

std::unique_ptr<SegmentLM> make_titans(const nn::LlamaConfig& model, const nlohmann::json& section,
                                       Generator* gen) {
  return std::make_unique<TitansLM>(model, TitansConfig::from_json(section), gen);
}

// The mechanisms, in the order help texts list them. A new mechanism is one line here.
struct Mechanism {
  const char* name;
  std::unique_ptr<SegmentLM> (*make)(const nn::LlamaConfig&, const nlohmann::json&, Generator*);
};
constexpr Mechanism kMechanisms[] = {
    {"none", make_baseline}, {"memorizing", make_memorizing}, {"memformer", make_memformer},
    {"titans", make_titans}, {"explicit", make_explicit},
};

}  // namespace

std::vector<std::string> mechanism_names() {
  std::vector<std::string> names;
  for (const Mechanism& m : kMechanisms) names.emplace_back(m.name);
  return names;
}

std::string mechanism_list() {
  return fmt::format("{}", fmt::join(mechanism_names(), ", "));
}

bool mechanism_built_in(const std::string& name) {
  const auto names = mechanism_names();
  return std::find(names.begin(), names.end(), name) != names.end();
}

std::unique_ptr<SegmentLM> make_segment_lm(const std::string& mechanism,
                                           const nn::LlamaConfig& model,
                                           const nlohmann::json& memory_section, Generator* gen) {
  for (const Mechanism& m : kMechanisms) {
    if (mechanism == m.name) return m.make(model, memory_section, gen);
  }
  fail("unknown memory mechanism '{}' (one of {})", mechanism, mechanism_list());
}

}  // namespace mnemo::memory

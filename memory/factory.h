// make_segment_lm: a SegmentLM by mechanism name, from the model config and the `memory`
// section of a config (or of `mnemo memory-bench`).
//
//   "none"        BaselineLM (baseline.h); memory section keys: segment_length (default
//                 max_position_embeddings), nothing else
//   "memorizing"  MemorizingLM (memorizing.h), MemorizingConfig::from_json(section)
//   "memformer"   MemformerLM (memformer.h), MemformerConfig::from_json(section)
//   "titans"      TitansLM (titans.h), TitansConfig::from_json(section)
//   "explicit"    ExplicitLM (explicit.h), ExplicitConfig::from_json(section)
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "memory/segment_lm.h"
#include "nn/llama.h"

namespace mnemo::memory {

// The mechanism names make_segment_lm knows (its table in factory.cpp is the only list: help
// texts and error messages read it from here).
std::vector<std::string> mechanism_names();
std::string mechanism_list();                      // "none, memorizing, memformer"
bool mechanism_built_in(const std::string& name);  // name is one of mechanism_names()

// Throws mnemo::Error naming an unknown mechanism or a bad section key.
std::unique_ptr<SegmentLM> make_segment_lm(const std::string& mechanism,
                                           const nn::LlamaConfig& model,
                                           const nlohmann::json& memory_section,
                                           Generator* gen = nullptr);

}  // namespace mnemo::memory

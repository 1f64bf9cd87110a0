// Typed reads of one key of a memory mechanism's JSON config, each failing with a
// mnemo::Error that names the mechanism and the key:
//
//   c.prompt_latents = int_key(value, "memgen", "prompt_latents");
//   -> memgen config: 'prompt_latents' must be an integer, got "8"
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"

namespace mnemo::memory {

inline int64_t int_key(const nlohmann::json& v, const std::string& what, const std::string& key) {
  MNEMO_CHECK(v.is_number_integer(), "{} config: '{}' must be an integer, got {}", what, key,
              v.dump());
  return v.get<int64_t>();
}
inline double number_key(const nlohmann::json& v, const std::string& what, const std::string& key) {
  MNEMO_CHECK(v.is_number(), "{} config: '{}' must be a number, got {}", what, key, v.dump());
  return v.get<double>();
}
inline std::string string_key(const nlohmann::json& v, const std::string& what,
                              const std::string& key) {
  MNEMO_CHECK(v.is_string(), "{} config: '{}' must be a string, got {}", what, key, v.dump());
  return v.get<std::string>();
}
inline bool bool_key(const nlohmann::json& v, const std::string& what, const std::string& key) {
  MNEMO_CHECK(v.is_boolean(), "{} config: '{}' must be true or false, got {}", what, key, v.dump());
  return v.get<bool>();
}

}  // namespace mnemo::memory

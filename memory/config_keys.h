// Typed reads of one key of a memory mechanism's JSON config, each failing with a
// mnemo::Error that names the mechanism and the key:
//
//   c.prompt_latents = int_key(value, "memgen", "prompt_latents");
//   -> memgen config: 'prompt_latents' must be an integer, got "8"
//   read_key(j, "prompt_latents", "memgen", c.prompt_latents);   // the same, if j has the key
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>

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

// target = the typed value of j[key] when j has the key (else target keeps its default).
template <class T>
void read_key(const nlohmann::json& j, const std::string& key, const std::string& what, T& target) {
  if (!j.contains(key)) return;
  const nlohmann::json& v = j.at(key);
  if constexpr (std::is_same_v<T, bool>) {
    target = bool_key(v, what, key);
  } else if constexpr (std::is_integral_v<T>) {
    target = T(int_key(v, what, key));
  } else if constexpr (std::is_floating_point_v<T>) {
    target = T(number_key(v, what, key));
  } else {
    static_assert(std::is_same_v<T, std::string>, "read_key: bool, integer, number or string");
    target = string_key(v, what, key);
  }
}

}  // namespace mnemo::memory

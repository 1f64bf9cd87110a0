// mnemo::Error — the one exception type every layer throws on misuse.
//
// Messages name the op (or file, or key) and the shapes/dtypes involved, so a user can act
// on them without a debugger: "matmul: shapes (4,3) and (5,2) do not align".
// MNEMO_CHECK is for user input and is always on (never compiled out like assert).
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace mnemo {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Throws mnemo::Error with a fmt-formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace mnemo

// MNEMO_CHECK(cond, "op: what went wrong {}", value) — throws mnemo::Error when cond is false.
#define MNEMO_CHECK(cond, ...)                 \
  do {                                         \
    if (!(cond)) [[unlikely]] {                \
      ::mnemo::fail(__VA_ARGS__);              \
    }                                          \
  } while (0)

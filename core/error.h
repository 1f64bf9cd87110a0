// mnemo::Error — the exception every layer throws, and whose fault it was.
//
// Messages name the op (or file, or key) and the shapes/dtypes involved, so a user can act
// on them without a debugger: "matmul: shapes (4,3) and (5,2) do not align".
//
// Every Error carries a kind, because the right reaction differs:
//
//   ErrorKind::input     the caller asked for something impossible: bad arguments, shapes,
//                        dtypes, config keys, a missing or malformed file. Fix the input.
//                        The CLI exits 2. Raised by fail() and MNEMO_CHECK.
//   ErrorKind::internal  an invariant of mnemo itself does not hold (a bug, or a limit of an
//                        implementation such as a CUDA grid too large). The CLI exits 1.
//                        Raised by fail_internal() and MNEMO_ASSERT: InternalError.
//   ErrorKind::system    the machine failed what mnemo asked of it: a CUDA runtime or driver
//                        call, NCCL or MPI, the operating system (a write that did not
//                        happen). The CLI exits 1. Raised by fail_system(): SystemError.
//
// Catch `const Error&` to catch them all; tests assert the kind with CHECK_THROWS_AS(expr,
// InternalError) or e.kind(), not with substrings of messages. MNEMO_CHECK and MNEMO_ASSERT
// are always on (never compiled out like assert). An Error rethrown with more context keeps
// its kind: rethrow_with(e, "file.json: {}", e.what()).
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace mnemo {

enum class ErrorKind : uint8_t { input, internal, system };

constexpr std::string_view error_kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::input: return "input";
    case ErrorKind::internal: return "internal";
    case ErrorKind::system: return "system";
  }
  return "?";
}

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message, ErrorKind kind = ErrorKind::input)
      : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

// A broken invariant of mnemo's own code: not the caller's fault.
class InternalError final : public Error {
 public:
  explicit InternalError(const std::string& message) : Error(message, ErrorKind::internal) {}
};

// A failure of the machine or a library beneath mnemo (CUDA, NCCL, MPI, the OS).
class SystemError final : public Error {
 public:
  explicit SystemError(const std::string& message) : Error(message, ErrorKind::system) {}
};

// The exit status of a command that ends with an error of this kind: 2 for bad input, 1 for
// the rest (internal and system failures, and any exception that is not a mnemo::Error).
constexpr int exit_status(ErrorKind kind) {
  return kind == ErrorKind::input ? 2 : 1;
}

// Throws an Error of `kind` (an InternalError or SystemError for those kinds, so that
// catching the subclass works whichever way it was raised).
[[noreturn]] inline void throw_error(ErrorKind kind, const std::string& message) {
  switch (kind) {
    case ErrorKind::internal: throw InternalError(message);
    case ErrorKind::system: throw SystemError(message);
    case ErrorKind::input: break;
  }
  throw Error(message, ErrorKind::input);
}

// Throws an input Error (bad arguments, config, files) with a fmt-formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

// Throws an InternalError: a broken invariant of mnemo's own code.
template <typename... Args>
[[noreturn]] void fail_internal(fmt::format_string<Args...> format, Args&&... args) {
  throw InternalError(fmt::format(format, std::forward<Args>(args)...));
}

// Throws a SystemError: the machine or a library beneath mnemo failed.
template <typename... Args>
[[noreturn]] void fail_system(fmt::format_string<Args...> format, Args&&... args) {
  throw SystemError(fmt::format(format, std::forward<Args>(args)...));
}

// Throws an Error of the same kind as `cause` with a new message (more context).
template <typename... Args>
[[noreturn]] void rethrow_with(const Error& cause, fmt::format_string<Args...> format,
                               Args&&... args) {
  throw_error(cause.kind(), fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace mnemo

// MNEMO_CHECK(cond, "op: what went wrong {}", value) — an input Error when cond is false.
#define MNEMO_CHECK(cond, ...)    \
  do {                            \
    if (!(cond)) [[unlikely]] {   \
      ::mnemo::fail(__VA_ARGS__); \
    }                             \
  } while (0)

// MNEMO_ASSERT(cond, "op: what went wrong {}", value) — an InternalError when cond is false:
// for invariants of mnemo's own code, never for checking what a caller passed.
#define MNEMO_ASSERT(cond, ...)            \
  do {                                     \
    if (!(cond)) [[unlikely]] {            \
      ::mnemo::fail_internal(__VA_ARGS__); \
    }                                      \
  } while (0)

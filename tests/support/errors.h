// The message of the mnemo::Error a call throws, for tests that check what an error says:
//
//   CHECK(test::error_message([&] { core::matmul(a, b); }).find("do not align") != npos);
//
// (Header-only, so that tests/cuda may use it too.)
#pragma once

#include <string>

#include "core/error.h"

namespace mnemo::test {

// The message of the mnemo::Error (or of the kind E of it: error_message<SystemError>) fn
// throws; "" if it throws none.
template <typename E = Error, typename Fn>
std::string error_message(Fn&& fn) {
  try {
    fn();
  } catch (const E& e) {
    return e.what();
  }
  return "";
}

}  // namespace mnemo::test

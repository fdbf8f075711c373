// tessera::Error, the one exception type of the library, and TESSERA_CHECK to raise it.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace tessera {

// Thrown for every kind of bad input; the message names the operation and what was wrong.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

template <class... Parts>
[[noreturn]] void fail(Parts&&... parts) {
  std::ostringstream message;
  (message << ... << std::forward<Parts>(parts));
  throw Error(message.str());
}

}  // namespace detail
}  // namespace tessera

// TESSERA_CHECK(cond, parts...) throws tessera::Error with the streamed parts when cond is false.
#define TESSERA_CHECK(condition, ...)               \
  do {                                              \
    if (!(condition)) ::tessera::detail::fail(__VA_ARGS__); \
  } while (false)

// Errors: throw in the library, exit only in the app.
// LRA_CHECK(cond, "fmt message {}", args...) throws lra::Error naming the failed condition, the
// source location and the message (which should say what to do about it).
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace lra {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
[[noreturn]] inline void fail(const char* file, int line, const char* cond, const std::string& msg) {
  std::string where = fmt::format("{}:{}", file, line);
  if (cond != nullptr) throw Error(fmt::format("{} (check `{}` failed at {})", msg, cond, where));
  throw Error(fmt::format("{} (at {})", msg, where));
}
}  // namespace detail

}  // namespace lra

#define LRA_CHECK(cond, ...)                                                          \
  do {                                                                                \
    if (!(cond)) ::lra::detail::fail(__FILE__, __LINE__, #cond, fmt::format(__VA_ARGS__)); \
  } while (0)

#define LRA_FAIL(...) ::lra::detail::fail(__FILE__, __LINE__, nullptr, fmt::format(__VA_ARGS__))

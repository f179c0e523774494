// Errors: throw in the library, exit only in the app.
// LRA_CHECK(cond, "fmt message {}", args...) throws lra::Error with the message, which should say what
// failed, where (file, line, key, flag) and how to fix it: that is what a user reads. The failed condition
// and its source location are kept in Error::detail(), and are part of what() only when debugging
// (LRA_DEBUG set to anything but "" or "0"; `lra --debug` sets it).
#pragma once

#include <fmt/format.h>

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

namespace lra {

inline bool debug_errors() {
  const char* v = std::getenv("LRA_DEBUG");
  return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
}

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
  Error(const std::string& msg, std::string detail)
      : std::runtime_error(debug_errors() ? fmt::format("{} ({})", msg, detail) : msg), detail_(std::move(detail)) {}
  const std::string& detail() const { return detail_; }  // "check `cond` failed at FILE:LINE"

 private:
  std::string detail_;
};

namespace detail {
[[noreturn]] inline void fail(const char* file, int line, const char* cond, const std::string& msg) {
  if (cond != nullptr) throw Error(msg, fmt::format("check `{}` failed at {}:{}", cond, file, line));
  throw Error(msg, fmt::format("at {}:{}", file, line));
}
}  // namespace detail

}  // namespace lra

#define LRA_CHECK(cond, ...)                                                          \
  do {                                                                                \
    if (!(cond)) ::lra::detail::fail(__FILE__, __LINE__, #cond, fmt::format(__VA_ARGS__)); \
  } while (0)

#define LRA_FAIL(...) ::lra::detail::fail(__FILE__, __LINE__, nullptr, fmt::format(__VA_ARGS__))

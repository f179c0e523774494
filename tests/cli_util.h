// Running the built `lra` binary from a test (LRA_BIN, set by tests/CMakeLists.txt).
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>
#include <string>
#include <utility>

#include "core/files.h"

namespace lra::test {

struct CliResult {
  int rc;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs a shell command and returns its exit code (-1 when it did not exit normally) and its stdout;
// stderr goes wherever the command redirects it.
inline std::pair<int, std::string> run_shell(const std::string& cmd) {
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// Runs `lra <args>` through the shell, without the caller's LRA_DATA_DIR (so only the arguments choose
// the data folder), and returns its exit code, stdout and stderr.
inline CliResult run_lra(const std::string& args) {
  static int calls = 0;
  const std::string err_file =
      fmt::format("{}/lra-cli-{}-{}.err", std::filesystem::temp_directory_path().string(), getpid(), calls++);
  auto [rc, out] = run_shell(fmt::format("env -u LRA_DATA_DIR {} {} 2>{}", LRA_BIN, args, err_file));
  CliResult r{rc, std::move(out), read_file(err_file)};
  std::remove(err_file.c_str());
  return r;
}

}  // namespace lra::test

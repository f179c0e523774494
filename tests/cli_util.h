// Running the built `lra` binary from a test (LRA_BIN, set by tests/CMakeLists.txt), in the foreground or
// in the background to be signalled.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <utility>

#include "core/files.h"
#include "core/system.h"

namespace lra::test {

struct CliResult {
  int rc;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs `lra <args>` through the shell, without the caller's LRA_DATA_DIR (so only the arguments choose
// the data folder), and returns its exit code, stdout and stderr.
inline CliResult run_lra(const std::string& args) {
  static int calls = 0;
  const std::string err_file =
      fmt::format("{}/lra-cli-{}-{}.err", std::filesystem::temp_directory_path().string(), getpid(), calls++);
  auto [rc, out] = run_command(fmt::format("env -u LRA_DATA_DIR {} {} 2>{}", LRA_BIN, args, err_file));
  CliResult r{rc, std::move(out), read_file(err_file)};
  std::remove(err_file.c_str());
  return r;
}

// Whether run record `b` has the numbers of run record `a`: test accuracy and loss, and every point's
// training loss and validation accuracy (wall times differ, so the curves are not compared whole).
inline void check_same_numbers(const nlohmann::json& a, const nlohmann::json& b) {
  CHECK(b["metrics"]["test_accuracy"] == a["metrics"]["test_accuracy"]);
  CHECK(b["metrics"]["test_loss"] == a["metrics"]["test_loss"]);
  REQUIRE(b["curve"].size() == a["curve"].size());
  for (size_t i = 0; i < a["curve"].size(); ++i) {
    CHECK(b["curve"][i]["loss"] == a["curve"][i]["loss"]);
    CHECK(b["curve"][i]["val_accuracy"] == a["curve"][i]["val_accuracy"]);
  }
}

// `lra <args>` started in the background, stdout and stderr to files, for tests that signal it. The
// destructor kills it if it still runs.
class LraProcess {
 public:
  explicit LraProcess(const std::string& args) {
    static int started = 0;
    const std::string base =
        fmt::format("{}/lra-proc-{}-{}", std::filesystem::temp_directory_path().string(), getpid(), started++);
    out_file_ = base + ".out";
    err_file_ = base + ".err";
    const std::string cmd =
        fmt::format("exec env -u LRA_DATA_DIR {} {} >{} 2>{}", LRA_BIN, args, out_file_, err_file_);
    pid_ = fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
  }
  LraProcess(const LraProcess&) = delete;
  LraProcess& operator=(const LraProcess&) = delete;
  ~LraProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    std::remove(out_file_.c_str());
    std::remove(err_file_.c_str());
  }
  void signal(int signo) const { REQUIRE(kill(pid_, signo) == 0); }
  // Its exit code, or 128 + the signal that killed it.
  int wait() {
    int status = 0;
    REQUIRE(waitpid(pid_, &status, 0) == pid_);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  // What it has written so far ("" before its shell has made the file).
  std::string out() const { return std::filesystem::exists(out_file_) ? read_file(out_file_) : ""; }
  std::string err() const { return std::filesystem::exists(err_file_) ? read_file(err_file_) : ""; }

 private:
  pid_t pid_ = -1;
  std::string out_file_, err_file_;
};

// `lra reproduce` of a tiny ListOps grid in folder `dir` (runs/, report/, cache/): the `attns` variants x
// `seeds` seeds, each `steps` steps of a 16-wide, one-layer model on 64-token documents, one thread.
inline std::string tiny_grid(const std::string& dir, int steps, const std::string& attns = "softmax,linear,cosformer",
                             int seeds = 2) {
  std::string s = fmt::format("reproduce --tasks listops --attn {} --seeds {} --threads 1 -q --out {}/runs "
                              "--report-dir {}/report --cache-dir {}/cache",
                              attns, seeds, dir, dir, dir);
  for (const char* k : {"n_train=48", "n_val=12", "n_test=12", "emb_dim=16", "qkv_dim=16", "mlp_dim=16", "num_heads=2",
                        "num_layers=1", "batch_size=8", "warmup=2", "eval_frequency=50", "max_length=64"})
    s += fmt::format(" --set {}", k);
  return s + fmt::format(" --set num_train_steps={}", steps);
}

// The first *.ckpt file in `dir` ("" if none), waiting up to `seconds` for one to appear.
inline std::string wait_for_checkpoint(const std::string& dir, double seconds = 120) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < until) {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec))
      if (e.path().extension() == ".ckpt") return e.path().string();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return "";
}

}  // namespace lra::test

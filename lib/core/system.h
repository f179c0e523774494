// This process and machine: facts for run records, thread settings, timing and interruptions.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <utility>

namespace lra {

std::string cpu_model_name();
size_t peak_rss_bytes();     // the process's high-water resident set (VmHWM)
std::string compiler_id();
std::string now_iso8601();   // UTC, second resolution
bool stderr_is_terminal();
std::string host_name();     // gethostname; "unknown-host" when it fails

// Runs `cmd` with /bin/sh and returns its exit status (-1 when it did not exit normally) and its stdout;
// stderr goes wherever `cmd` redirects it. Throws when no shell can be started.
std::pair<int, std::string> run_command(const std::string& cmd);

// `s` quoted for a POSIX shell (as is when it needs no quoting).
std::string shell_quote(const std::string& s);

class Timer {
 public:
  Timer() : t0_(std::chrono::steady_clock::now()) {}
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  }
  double ms() const { return seconds() * 1e3; }
  void reset() { t0_ = std::chrono::steady_clock::now(); }

 private:
  std::chrono::steady_clock::time_point t0_;
};

// Interruptions: SIGINT (Ctrl-C), SIGTERM (scancel, a time limit, a shutdown) and SIGUSR1 (Slurm's
// --signal warning) are handled alike. The first sets a flag the trainer polls between steps (it then
// writes a checkpoint and a record with status "interrupted" before stopping, and the process exits
// with interrupt_exit_code()); a second one, of any of the three, exits at once with 128 + its number,
// leaving the last checkpoint as it was (checkpoints are written to a temporary file and renamed).
void install_interrupt_handler();
bool interrupt_requested();
int interrupt_signal();       // the first signal received (0: none)
int interrupt_exit_code();    // 128 + interrupt_signal(): 130 SIGINT, 143 SIGTERM, 138 SIGUSR1
std::string signal_name(int signo);  // "SIGTERM"; "signal N" for others

// Thread settings: one place sets OpenMP's and Eigen's thread counts. 0 = all cores this process may use
// (its affinity mask), shared out among `sharing` processes of one machine when they may all use all of
// them (ranks of one run started without binding).
void set_threads(int threads, int sharing = 1);
int get_threads();

}  // namespace lra

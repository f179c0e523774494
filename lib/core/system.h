// This process and machine: facts for run records, thread settings, timing and Ctrl-C.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

namespace lra {

std::string cpu_model_name();
size_t peak_rss_bytes();     // the process's high-water resident set (VmHWM)
std::string compiler_id();
std::string now_iso8601();   // UTC, second resolution
bool stderr_is_terminal();

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

// Ctrl-C handling: the first SIGINT sets a flag the trainer polls between steps (it then writes a
// checkpoint and a record before stopping); a second one terminates at once.
void install_interrupt_handler();
bool interrupt_requested();

// Thread settings: one place sets OpenMP's and Eigen's thread counts. 0 = all cores.
void set_threads(int threads);
int get_threads();

}  // namespace lra

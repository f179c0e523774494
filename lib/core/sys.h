// Facts about this process and machine for run records, and small I/O helpers.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

namespace lra {

std::string cpu_model_name();
size_t peak_rss_bytes();     // the process's high-water resident set (VmHWM)
std::string compiler_id();
std::string now_iso8601();   // UTC, second resolution
bool stderr_is_terminal();

// A file written through a temporary in the same folder and renamed into place by commit(), so a
// reader never sees a half-written file and an existing file survives a failed write (full disk,
// interruption): without commit() the temporary is removed and `path` is left as it was.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  void write(const void* data, size_t bytes);
  void commit();

 private:
  [[noreturn]] void fail(int err);
  std::string path_, tmp_;
  FILE* f_ = nullptr;
};

void write_file_atomic(const std::string& path, const std::string& content);
std::string read_file(const std::string& path);
// Creates a folder and its parents; throws with the path and the reason on failure.
void make_dirs(const std::string& path);

// FNV-1a 64-bit over a file's bytes, as 16 hex digits (a fast, dependency-free checksum for records).
std::string file_checksum(const std::string& path);

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

#include "core/sys.h"

#include <omp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <Eigen/Core>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/check.h"

namespace lra {

std::string cpu_model_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) {
        std::string v = line.substr(colon + 1);
        v.erase(0, v.find_first_not_of(' '));
        return v;
      }
    }
  }
  return "unknown";
}

size_t peak_rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return static_cast<size_t>(std::stoull(line.substr(6))) * 1024;
  }
  return 0;
}

std::string compiler_id() {
#if defined(__clang__)
  return fmt::format("clang {}.{}.{}", __clang_major__, __clang_minor__, __clang_patchlevel__);
#elif defined(__GNUC__)
  return fmt::format("gcc {}.{}.{}", __GNUC__, __GNUC_MINOR__, __GNUC_PATCHLEVEL__);
#else
  return "unknown";
#endif
}

std::string now_iso8601() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

bool stderr_is_terminal() { return isatty(STDERR_FILENO) != 0; }

void make_dirs(const std::string& path) {
  if (path.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  LRA_CHECK(!ec, "cannot create folder '{}': {}; choose another location", path, ec.message());
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  const std::filesystem::path p(path_);
  if (p.has_parent_path()) make_dirs(p.parent_path().string());
  tmp_ = fmt::format("{}.tmp.{}", path_, static_cast<long>(getpid()));
  f_ = std::fopen(tmp_.c_str(), "wb");
  LRA_CHECK(f_ != nullptr, "cannot open '{}' for writing: {}; check the folder's permissions or choose another "
            "output folder", tmp_, std::strerror(errno));
}

AtomicFile::~AtomicFile() {
  if (f_ != nullptr) {
    std::fclose(f_);
    std::remove(tmp_.c_str());
  }
}

void AtomicFile::fail(int err) {
  std::fclose(f_);
  f_ = nullptr;
  std::remove(tmp_.c_str());
  LRA_FAIL("could not write '{}': {}; '{}' was left as it was. Free some space or choose another output folder",
           tmp_, std::strerror(err), path_);
}

void AtomicFile::write(const void* data, size_t bytes) {
  LRA_CHECK(f_ != nullptr, "write to '{}' after commit", path_);
  if (std::fwrite(data, 1, bytes, f_) != bytes) fail(errno);
}

void AtomicFile::commit() {
  LRA_CHECK(f_ != nullptr, "'{}' committed twice", path_);
  if (std::fflush(f_) != 0 || fsync(fileno(f_)) != 0) fail(errno);
  const int rc = std::fclose(f_);
  f_ = nullptr;
  if (rc != 0) {
    const int err = errno;
    std::remove(tmp_.c_str());
    LRA_FAIL("could not write '{}': {}; '{}' was left as it was", tmp_, std::strerror(err), path_);
  }
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp_.c_str());
    LRA_FAIL("could not rename '{}' to '{}': {}", tmp_, path_, std::strerror(err));
  }
}

void write_file_atomic(const std::string& path, const std::string& content) {
  AtomicFile f(path);
  f.write(content.data(), content.size());
  f.commit();
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  LRA_CHECK(f.good(), "cannot read '{}': {}", path, std::strerror(errno));
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string file_checksum(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  LRA_CHECK(f.good(), "cannot read '{}' to checksum it: {}", path, std::strerror(errno));
  uint64_t h = 1469598103934665603ull;
  char buf[1 << 16];
  while (f) {
    f.read(buf, sizeof buf);
    const std::streamsize got = f.gcount();
    for (std::streamsize i = 0; i < got; ++i) {
      h ^= static_cast<unsigned char>(buf[i]);
      h *= 1099511628211ull;
    }
  }
  return fmt::format("fnv1a64:{:016x}", h);
}

namespace {
volatile std::sig_atomic_t g_interrupts = 0;
void on_sigint(int) {
  g_interrupts = g_interrupts + 1;
  if (g_interrupts > 1) std::_Exit(130);
}
}  // namespace

void install_interrupt_handler() { std::signal(SIGINT, on_sigint); }
bool interrupt_requested() { return g_interrupts > 0; }

void set_threads(int threads) {
  if (threads <= 0) threads = omp_get_num_procs();
  omp_set_num_threads(threads);
  Eigen::setNbThreads(threads);
}

int get_threads() { return omp_get_max_threads(); }

}  // namespace lra

#include "core/system.h"

#include <omp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <Eigen/Core>
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
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

std::string host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "unknown-host";
  return name;
}

std::pair<int, std::string> run_command(const std::string& cmd) {
  FILE* p = popen(cmd.c_str(), "r");
  LRA_CHECK(p != nullptr, "cannot start `{}`: {}", cmd, std::strerror(errno));
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

std::string shell_quote(const std::string& s) {
  const bool plain = !s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                                       "_./=:,@+-%") == std::string::npos;
  if (plain) return s;
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}


namespace {
constexpr int kInterrupts[] = {SIGINT, SIGTERM, SIGUSR1};
volatile std::sig_atomic_t g_interrupts = 0;
volatile std::sig_atomic_t g_first_signal = 0;
void on_interrupt(int signo) {  // the three signals are blocked while it runs: one handler at a time
  if (g_interrupts > 0) std::_Exit(128 + signo);
  g_first_signal = signo;
  g_interrupts = 1;
}
}  // namespace

void install_interrupt_handler() {
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  for (int signo : kInterrupts) sigaddset(&sa.sa_mask, signo);
  sa.sa_flags = SA_RESTART;  // a read or write under way goes on instead of failing with EINTR
  for (int signo : kInterrupts) sigaction(signo, &sa, nullptr);
}
bool interrupt_requested() { return g_interrupts > 0; }
int interrupt_signal() { return g_first_signal; }
int interrupt_exit_code() { return 128 + g_first_signal; }

std::string signal_name(int signo) {
  switch (signo) {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    case SIGUSR1:
      return "SIGUSR1";
  }
  return fmt::format("signal {}", signo);
}

void set_threads(int threads, int sharing) {
  if (threads <= 0) {
    threads = omp_get_num_procs();
    const long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (sharing > 1 && online > 0 && threads >= online) threads = std::max(1, threads / sharing);
  }
  omp_set_num_threads(threads);
  Eigen::setNbThreads(threads);
}

int get_threads() { return omp_get_max_threads(); }

}  // namespace lra

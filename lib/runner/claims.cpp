#include "runner/claims.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <random>

#include "core/check.h"
#include "core/files.h"
#include "core/system.h"

namespace lra {

namespace {

std::string read_file_or_empty(const char* path) {
  try {
    return read_file(path);
  } catch (const std::exception&) {
    return "";
  }
}

double mtime_seconds(const struct stat& st) {
  return static_cast<double>(st.st_mtim.tv_sec) + 1e-9 * static_cast<double>(st.st_mtim.tv_nsec);
}

double system_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// "KEY.N" -> (KEY, N); N < 0 for names that are not claim files (temporaries and clocks start with '.').
std::pair<std::string, int64_t> split_name(const std::string& name) {
  const size_t dot = name.rfind('.');
  if (name.empty() || name[0] == '.' || dot == std::string::npos || dot + 1 == name.size()) return {"", -1};
  for (size_t i = dot + 1; i < name.size(); ++i)
    if (name[i] < '0' || name[i] > '9') return {"", -1};
  return {name.substr(0, dot), std::stoll(name.substr(dot + 1))};
}

// This kernel's boot and this process's pid namespace: two processes with the same id see each other's pids.
const std::string& this_machine() {
  static const std::string id = [] {
    std::string boot = read_file_or_empty("/proc/sys/kernel/random/boot_id");
    boot.erase(boot.find_last_not_of("\n ") + 1);
    std::error_code ec;
    const std::string ns = std::filesystem::read_symlink("/proc/self/ns/pid", ec).string();
    return boot.empty() || ns.empty() ? std::string() : boot + " " + ns;
  }();
  return id;
}

// The state in claim file `path`; gen stays -1 when the file vanished before it was opened.
ClaimInfo read_claim_file(const std::string& path, int64_t gen, double now, double timeout_s) {
  ClaimInfo info;
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) return info;
  struct stat st {};
  std::string text;
  if (fd >= 0 && fstat(fd, &st) == 0) {
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
  }
  if (fd >= 0) close(fd);
  info.gen = gen;
  info.age_s = now - mtime_seconds(st);
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    info.claimed = j.at("state").get<std::string>() == "claimed";
    info.host = j.value("host", "");
    info.pid = j.value("pid", int64_t{0});
    info.since = j.value("since", "");
    info.job = j.value("job", "");
    info.machine = j.value("machine", "");
  } catch (const std::exception&) {
    // Not a claim this code wrote: treated as a claim without a heartbeat, so that it is taken over.
    info.claimed = true;
    info.host = "(unreadable claim file)";
    info.age_s = timeout_s + 1;
  }
  info.gone = info.claimed && !info.machine.empty() && info.machine == this_machine() && info.pid > 0 &&
              kill(static_cast<pid_t>(info.pid), 0) != 0 && errno == ESRCH;
  info.stale = info.claimed && (info.gone || info.age_s > timeout_s);
  return info;
}

std::string random_token() {
  std::random_device rd;
  const uint64_t t = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  return fmt::format("{:08x}{:08x}{:x}", rd(), rd(), t ^ static_cast<uint64_t>(getpid()));
}

std::string slurm_job() {
  const char* array = std::getenv("SLURM_ARRAY_JOB_ID");
  const char* task = std::getenv("SLURM_ARRAY_TASK_ID");
  if (array != nullptr && task != nullptr) return fmt::format("{}_{}", array, task);
  const char* job = std::getenv("SLURM_JOB_ID");
  return job != nullptr ? job : "";
}

}  // namespace

std::string ClaimInfo::owner() const { return fmt::format("{} pid {}", host, pid); }

ClaimFolder::ClaimFolder(const std::string& out_dir, double timeout_s)
    : dir_(out_dir + "/claims"),
      clock_file_(fmt::format("{}/.clock.{}.{}", dir_, host_name(), getpid())),
      timeout_s_(timeout_s) {
  LRA_CHECK(timeout_s > 0, "the claim timeout must be positive, got {} s", timeout_s);
}

ClaimFolder::~ClaimFolder() { unlink(clock_file_.c_str()); }

double ClaimFolder::heartbeat_interval() const { return std::max(0.1, timeout_s_ / 10); }

double ClaimFolder::now() const {
  const int fd = open(clock_file_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return system_now();  // a folder this process cannot write: its own clock will do
  struct stat st {};
  const bool ok = futimens(fd, nullptr) == 0 && fstat(fd, &st) == 0;
  close(fd);
  return ok ? mtime_seconds(st) : system_now();
}

std::string ClaimFolder::path(const std::string& key, int64_t gen) const {
  return fmt::format("{}/{}.{}", dir_, key, gen);
}

std::map<std::string, ClaimInfo> ClaimFolder::scan() const {
  std::map<std::string, int64_t> latest;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir_, ec)) {
    const auto [key, gen] = split_name(e.path().filename().string());
    if (gen < 0) continue;
    auto it = latest.find(key);
    if (it == latest.end() || gen > it->second) latest[key] = gen;
  }
  std::map<std::string, ClaimInfo> out;
  if (latest.empty()) return out;
  const double t = now();
  for (const auto& [key, gen] : latest) {
    ClaimInfo info = read_claim_file(path(key, gen), gen, t, timeout_s_);
    if (info.gen >= 0) out[key] = info;
  }
  return out;
}

ClaimInfo ClaimFolder::read(const std::string& key) const {
  int64_t gen = -1;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir_, ec)) {
    const auto [k, g] = split_name(e.path().filename().string());
    if (k == key && g > gen) gen = g;
  }
  if (gen < 0) return {};
  ClaimInfo info = read_claim_file(path(key, gen), gen, now(), timeout_s_);
  // Vanished while being read: only its holder's cleanup removes a file, after writing a higher one.
  return info.gen >= 0 ? info : read(key);
}

bool ClaimFolder::create(const std::string& key, int64_t gen, const std::string& content) const {
  const std::string tmp = fmt::format("{}/.tmp.{}.{}.{}", dir_, host_name(), getpid(), random_token());
  write_file_atomic(tmp, content);
  const std::string target = path(key, gen);
  const int rc = link(tmp.c_str(), target.c_str());
  const int err = errno;
  struct stat st {};
  // Over NFS a link can succeed with its reply lost; the temporary then has two names.
  const bool made = rc == 0 || (stat(tmp.c_str(), &st) == 0 && st.st_nlink == 2);
  unlink(tmp.c_str());
  LRA_CHECK(made || err == EEXIST, "cannot create the claim file '{}': {} (is the folder writable?)", target,
            std::strerror(err));
  return made;
}

std::unique_ptr<Claim> ClaimFolder::try_claim(const std::string& key, std::function<void()> on_lost) {
  LRA_CHECK(!key.empty() && key.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") ==
                                std::string::npos,
            "claim key '{}' has characters other than letters, digits, '.', '_' and '-'", key);
  make_dirs(dir_);
  const nlohmann::json mine = {{"state", "claimed"}, {"host", host_name()}, {"pid", static_cast<int64_t>(getpid())},
                               {"since", now_iso8601()}, {"job", slurm_job()}, {"machine", this_machine()}};
  for (;;) {
    const ClaimInfo cur = read(key);
    if (cur.live()) return nullptr;
    const int64_t gen = cur.gen + 1;
    if (!create(key, gen, mine.dump() + "\n")) continue;  // another worker changed the cell first: look again
    // A number below the highest can be free again (cleaned up): then this claim is not the cell's state.
    if (read(key).gen != gen) {
      unlink(path(key, gen).c_str());
      continue;
    }
    for (int64_t g = 0; g < gen; ++g) unlink(path(key, g).c_str());
    return std::unique_ptr<Claim>(new Claim(*this, key, gen, std::move(on_lost)));
  }
}

Claim::Claim(const ClaimFolder& folder, std::string key, int64_t gen, std::function<void()> on_lost)
    : folder_(folder), key_(std::move(key)), gen_(gen), on_lost_(std::move(on_lost)) {
  thread_ = std::thread([this] { heartbeat(); });
}

Claim::~Claim() { release(); }

bool Claim::held() const {
  struct stat st {};
  return stat(folder_.path(key_, gen_).c_str(), &st) == 0 && stat(folder_.path(key_, gen_ + 1).c_str(), &st) != 0;
}

void Claim::heartbeat() {
  const auto interval = std::chrono::duration<double>(folder_.heartbeat_interval());
  std::unique_lock<std::mutex> lock(mutex_);
  while (!wake_.wait_for(lock, interval, [this] { return stop_; })) {
    const bool touched = utimensat(AT_FDCWD, folder_.path(key_, gen_).c_str(), nullptr, 0) == 0;
    if (!touched || !held()) {
      if (on_lost_) on_lost_();
      return;
    }
  }
}

void Claim::release() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (released_) return;
    released_ = true;
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (!held()) return;
  const nlohmann::json done = {{"state", "released"}, {"host", host_name()}, {"pid", static_cast<int64_t>(getpid())},
                               {"since", now_iso8601()}};
  try {
    if (folder_.create(key_, gen_ + 1, done.dump() + "\n")) unlink(folder_.path(key_, gen_).c_str());
  } catch (const std::exception& e) {
    // The claim stays until its heartbeat goes stale, and then another worker takes the cell over.
    std::fprintf(stderr, "lra: could not release the claim on %s: %s\n", key_.c_str(), e.what());
  }
}

}  // namespace lra

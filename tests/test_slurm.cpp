// `lra reproduce --slurm --submit` on a real one-node Slurm cluster that the test starts on localhost from a
// temporary folder (munged, slurmctld and slurmd on ports of their own) and stops by pid: a 2-worker array
// runs a 4-cell grid to its table, and a worker told to stop mid-cell (USR1, as --signal sends before a time
// limit) checkpoints, is requeued, and its cell ends with the numbers of an uninterrupted run.
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fmt/format.h>
#include <map>
#include <regex>
#include <thread>

#include "cli_util.h"
#include "core/files.h"
#include "core/system.h"
#include "results/collection.h"
#include "runner/claims.h"
#include "test_util.h"

using namespace lra;
using lra::test::run_lra;
using lra::test::TempDir;

namespace {

// Two TCP ports no one listens on now (the kernel's choice for port 0), for slurmctld and slurmd.
std::pair<int, int> free_ports() {
  int fds[2], ports[2];
  for (int i = 0; i < 2; ++i) {
    fds[i] = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fds[i] >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(fds[i], reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    REQUIRE(getsockname(fds[i], reinterpret_cast<sockaddr*>(&a), &len) == 0);
    ports[i] = ntohs(a.sin_port);
  }
  close(fds[0]);
  close(fds[1]);
  return {ports[0], ports[1]};
}

bool alive(pid_t pid) { return pid > 0 && kill(pid, 0) == 0; }

// A one-node cluster: munged, slurmctld and slurmd from `dir`, as the current user. SLURM_CONF points the
// Slurm commands of this process (and of the jobs, which inherit it) at it while it lives.
class SlurmCluster {
 public:
  explicit SlurmCluster(const std::string& dir) : dir_(dir) {
    const std::string user = getpwuid(getuid())->pw_name;
    node_ = host_name().substr(0, host_name().find('.'));
    std::filesystem::create_directories(dir_ + "/spool");
    std::filesystem::create_directories(dir_ + "/state");
    REQUIRE(run_command(fmt::format("dd if=/dev/urandom of={0}/munge.key bs=1024 count=1 2>/dev/null && "
                                    "chmod 400 {0}/munge.key",
                                    dir_))
                .first == 0);
    start(fmt::format("munged --key-file {0}/munge.key --socket {0}/munge.socket --pid-file {0}/munged.pid "
                      "--log-file {0}/munged.log --seed-file {0}/munge.seed --force",
                      dir_),
          "munged.pid", "munged.log");
    const auto [ctld_port, d_port] = free_ports();
    write_file_atomic(dir_ + "/slurm.conf", fmt::format(R"(ClusterName=lratest
SlurmctldHost={node}(127.0.0.1)
SlurmUser={user}
SlurmdUser={user}
SlurmctldPort={ctld}
SlurmdPort={slurmd}
AuthType=auth/munge
AuthInfo=socket={dir}/munge.socket
CredType=cred/munge
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=300
KillWait=10
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=test Nodes={node} Default=YES MaxTime=INFINITE State=UP
)",
                                                        fmt::arg("node", node_), fmt::arg("user", user),
                                                        fmt::arg("ctld", ctld_port), fmt::arg("slurmd", d_port),
                                                        fmt::arg("dir", dir_),
                                                        fmt::arg("cpus", std::thread::hardware_concurrency())));
    setenv("SLURM_CONF", (dir_ + "/slurm.conf").c_str(), 1);
    start(fmt::format("slurmctld -f {}/slurm.conf", dir_), "slurmctld.pid", "slurmctld.log");
    start(fmt::format("slurmd -f {}/slurm.conf -N {}", dir_, node_), "slurmd.pid", "slurmd.log");
    for (int i = 0; i < 300 && run_command("sinfo -h -o %t 2>&1").second != "idle\n"; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    INFO(logs());
    REQUIRE(run_command("sinfo -h -o %t 2>&1").second == "idle\n");
  }
  SlurmCluster(const SlurmCluster&) = delete;
  SlurmCluster& operator=(const SlurmCluster&) = delete;
  // Cancels what still runs, then stops every daemon it started, by pid, the way it started them.
  ~SlurmCluster() {
    run_command("scancel --full --quiet --user=$(id -un) 2>/dev/null");
    for (int i = 0; i < 150 && !jobs().empty(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    for (auto it = pids_.rbegin(); it != pids_.rend(); ++it) {
      kill(*it, SIGTERM);
      for (int i = 0; i < 100 && alive(*it); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (alive(*it)) kill(*it, SIGKILL);
    }
    unsetenv("SLURM_CONF");
  }
  // The jobs squeue shows, one "id state" per line.
  std::string jobs() const { return run_command("squeue -h -o '%i %T' 2>&1").second; }
  std::string logs() const {
    std::string s;
    for (const char* f : {"munged.log", "slurmctld.log", "slurmd.log"})
      if (std::filesystem::exists(dir_ + "/" + f)) s += fmt::format("--- {}\n{}", f, read_file(dir_ + "/" + f));
    return s;
  }
  const std::vector<pid_t>& pids() const { return pids_; }

 private:
  // Runs a daemon (it forks into the background) and waits for the pid file it writes.
  void start(const std::string& cmd, const std::string& pid_file, const std::string& log) {
    const auto [rc, out] = run_command(cmd + " 2>&1");
    INFO(cmd << ": " << out);
    REQUIRE(rc == 0);
    const std::string path = dir_ + "/" + pid_file;
    for (int i = 0; i < 100 && (!std::filesystem::exists(path) || read_file(path).empty()); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    INFO((std::filesystem::exists(dir_ + "/" + log) ? read_file(dir_ + "/" + log) : "no log"));
    REQUIRE(std::filesystem::exists(path));
    const pid_t pid = std::stoi(read_file(path));
    REQUIRE(alive(pid));
    pids_.push_back(pid);
  }
  std::string dir_, node_;
  std::vector<pid_t> pids_;
};

// What the test needs that Debian's slurm-wlm and munge install ("" when all is there).
std::string missing_slurm() {
  for (const char* cmd : {"munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "scancel"})
    if (run_command(fmt::format("command -v {} >/dev/null 2>&1", cmd)).first != 0) return cmd;
  return "";
}

}  // namespace

TEST_CASE("slurm: a 2-worker array runs a 4-cell grid to its table, and a worker stopped mid-cell is requeued "
          "and its cell resumed",
          "[slurm][workers][signals]") {
  const std::string missing = missing_slurm();
  if (!missing.empty())
    LRA_SKIP(missing << " is not installed: this test starts a one-node Slurm cluster; install slurm-wlm and munge "
                        "(scripts/setup.sh does)");
  constexpr int kSteps = 3000;
  TempDir d("slurm");
  std::vector<pid_t> daemons;
  {
    SlurmCluster cluster(d / "cluster");
    daemons = cluster.pids();
    const std::string grid = lra::test::tiny_grid(d.path, kSteps, "softmax,linear", 2);
    auto sub = run_lra(grid + " --slurm --submit --workers 2 --cpus-per-task 1");
    INFO(sub.out << sub.err);
    REQUIRE(sub.rc == 0);
    std::smatch m;
    REQUIRE(std::regex_search(sub.out, m, std::regex("submitted: workers job array (\\d+), report job (\\d+)")));
    const std::string array = m[1], report = m[2];

    // The first checkpoint: its cell is mid-run in one of the workers; the claim says which task holds it.
    const std::string ckpt = lra::test::wait_for_checkpoint(d / "runs");
    INFO(cluster.jobs() << cluster.logs());
    REQUIRE(!ckpt.empty());
    const std::string name = std::filesystem::path(ckpt).filename().string();
    REQUIRE(std::regex_search(name, m, std::regex("^listops_([a-z]+)_.*_seed(\\d+)_")));
    const std::string attn = m[1], seed = m[2];
    std::string task;
    for (const auto& [key, info] : ClaimFolder(d / "runs", 600).scan())
      if (info.live() && key.rfind("listops." + attn + ".", 0) == 0 && key.find(".seed" + seed + ".") != std::string::npos)
        task = info.job;
    REQUIRE(task.rfind(array + "_", 0) == 0);
    REQUIRE(run_command(fmt::format("scancel --signal=USR1 --batch {} 2>&1", task)).first == 0);

    // Requeued, the task waits out Slurm's requeue delay; it is told to start now.
    bool restarted = false;
    for (int i = 0; i < 600 && !restarted; ++i) {
      const auto [rc, state] = run_command(fmt::format("squeue -h -j {} -o '%T %r' 2>/dev/null", task));
      if (state.rfind("PENDING BeginTime", 0) == 0)
        restarted = run_command(fmt::format("scontrol update JobId={} StartTime=now 2>&1", task)).first == 0;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    CHECK(restarted);
    // The report job ends last (afterany the array).
    for (int i = 0; i < 3000 && !cluster.jobs().empty(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    REQUIRE(cluster.jobs().empty());

    std::string dir;  // the one folder --slurm wrote
    for (const auto& e : std::filesystem::directory_iterator(d / "runs/slurm")) dir = e.path().string();
    std::string all_logs;  // every job's log, for a failure's message
    for (const auto& e : std::filesystem::directory_iterator(dir + "/logs"))
      all_logs += fmt::format("--- {}\n{}", e.path().filename().string(), read_file(e.path().string()));
    INFO(all_logs);
    const std::string task_log = read_file(fmt::format("{}/logs/worker-{}.log", dir, task));
    CHECK(task_log.find("checkpointed on USR1; requeueing " + task) != std::string::npos);
    CHECK(task_log.find("lra worker " + task + " (restart 1)") != std::string::npos);
    const std::string report_log = read_file(fmt::format("{}/logs/report-{}.log", dir, report));
    CHECK(report_log.find("4 done, 0 running, 0 to resume, 0 failed, 0 to retry, 0 to run") != std::string::npos);
    CHECK(report_log.find("| linear | ours | ") != std::string::npos);

    // Each cell ran once to an ok record; the preempted one resumed from its checkpoint.
    const RecordSet runs = load_records({d / "runs"});
    std::map<std::string, int> ok;
    nlohmann::json preempted;
    std::string statuses;
    for (const auto& e : runs.runs) statuses += fmt::format("{}/{}: {}\n", e.attn, e.seed, e.status);
    INFO(statuses);
    for (const auto& e : runs.runs) {
      if (!e.ok()) continue;
      ok[fmt::format("{}/{}", e.attn, e.seed)] += 1;
      if (e.attn == attn && std::to_string(e.seed) == seed) preempted = e.record;
    }
    CHECK(ok.size() == 4);
    for (const auto& [cell, n] : ok) {
      INFO(cell);
      CHECK(n == 1);
    }
    REQUIRE(preempted.is_object());
    CHECK(preempted["resumed_from_step"].get<int64_t>() > 0);
    CHECK(std::filesystem::exists(d / "report/report.md"));
    for (const auto& [key, info] : ClaimFolder(d / "runs", 600).scan()) {
      INFO(key);
      CHECK(!info.claimed);
    }

    // The same cell run in one go here has the same numbers.
    TempDir whole("slurm-whole");
    REQUIRE(run_lra(lra::test::tiny_grid(whole.path, kSteps, attn, std::stoi(seed) + 1)).rc == 0);
    for (const auto& e : load_records({whole / "runs"}).runs)
      if (std::to_string(e.seed) == seed) lra::test::check_same_numbers(e.record, preempted);
  }
  for (pid_t p : daemons) CHECK(!alive(p));
}

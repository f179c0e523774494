// Workers sharing a grid's folder: claims (one holder per cell, stale takeover, a lost claim noticed),
// shards, several `lra reproduce` processes on one grid, a killed worker's cell taken over, and the
// Slurm scripts --slurm writes (tests/test_slurm.cpp runs them on a real one-node cluster).
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fmt/format.h>
#include <map>
#include <thread>

#include "cli_util.h"
#include "core/files.h"
#include "results/collection.h"
#include "core/system.h"
#include "runner/claims.h"
#include "runner/reproduce.h"
#include "test_util.h"

using namespace lra;
using lra::test::run_lra;
using lra::test::tiny_grid;
using lra::test::TempDir;

namespace {

// Makes claim file `path` look `seconds` old, as a dead worker's is.
void age(const std::string& path, double seconds) {
  struct stat st {};
  REQUIRE(stat(path.c_str(), &st) == 0);
  struct timespec t[2];
  t[0].tv_sec = t[1].tv_sec = st.st_mtim.tv_sec - static_cast<time_t>(seconds);
  t[0].tv_nsec = t[1].tv_nsec = 0;
  REQUIRE(utimensat(AT_FDCWD, path.c_str(), t, 0) == 0);
}

}  // namespace

TEST_CASE("claims: one holder per cell, released, taken over when stale, a lost claim noticed", "[workers]") {
  TempDir d("claims");
  ClaimFolder folder(d.path, 5.0);
  CHECK(folder.scan().empty());
  CHECK(folder.read("a.b").gen == -1);
  CHECK_THROWS_WITH(folder.try_claim("a/b", nullptr), Catch::Contains("has characters other than"));

  auto c = folder.try_claim("cell.x", nullptr);
  REQUIRE(c);
  CHECK(c->held());
  ClaimInfo info = folder.read("cell.x");
  CHECK(info.gen == 0);
  CHECK(info.live());
  CHECK(info.host == host_name());
  CHECK(info.pid == getpid());
  CHECK(info.age_s < 5);
  CHECK(folder.try_claim("cell.x", nullptr) == nullptr);  // a live claim holds it

  c->release();
  info = folder.read("cell.x");
  CHECK(info.gen == 1);
  CHECK(!info.claimed);
  CHECK(!std::filesystem::exists(d / "claims/cell.x.0"));  // only the latest state is kept

  // Released: the next claim takes it, one number on.
  c = folder.try_claim("cell.x", nullptr);
  REQUIRE(c);
  CHECK(folder.read("cell.x").gen == 2);

  // No heartbeat for longer than the timeout: stale, and another worker takes it over; the first holder
  // finds out at its next heartbeat.
  std::atomic<bool> lost{false};
  ClaimFolder slow(d.path, 60.0);  // a heartbeat a minute: this test ages the file itself
  auto held = slow.try_claim("cell.y", [&] { lost = true; });
  REQUIRE(held);
  age(d / "claims/cell.y.0", 61);
  info = slow.read("cell.y");
  CHECK(info.stale);
  CHECK(!info.live());
  CHECK(info.age_s > 60);
  auto taker = slow.try_claim("cell.y", nullptr);
  REQUIRE(taker);
  CHECK(!held->held());
  CHECK(taker->held());
  CHECK(slow.read("cell.y").gen == 1);
  held->release();  // taken over: releasing changes nothing
  CHECK(slow.read("cell.y").claimed);
  CHECK(slow.read("cell.y").gen == 1);

  // The heartbeat of a claim taken over calls on_lost.
  ClaimFolder quick(d.path, 1.0);  // heartbeats every 0.1 s
  auto victim = quick.try_claim("cell.z", [&] { lost = true; });
  REQUIRE(victim);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(quick.read("cell.z").age_s < 1.0);  // its heartbeat keeps it fresh
  CHECK(!lost);
  write_file_atomic(d / "claims/cell.z.1", "{\"state\": \"claimed\", \"host\": \"other\", \"pid\": 1}\n");
  for (int i = 0; i < 50 && !lost; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK(lost);
  CHECK(!victim->held());

  // A claim file this code did not write is taken over.
  write_file_atomic(d / "claims/cell.w.0", "garbage");
  info = quick.read("cell.w");
  CHECK(info.stale);
  CHECK(quick.try_claim("cell.w", nullptr) != nullptr);

  const auto all = folder.scan();
  CHECK(all.size() == 4);
  CHECK(all.count("cell.x") == 1);
}

TEST_CASE("claims: of many processes racing for one cell, exactly one gets it", "[workers]") {
  TempDir d("race");
  constexpr int kProcs = 8, kRounds = 20;
  // Each child tries to claim every round's cell once and writes "1" beside the cell if it got it.
  std::vector<pid_t> kids;
  for (int p = 0; p < kProcs; ++p) {
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      int rc = 0;
      try {
        ClaimFolder folder(d.path, 60.0);
        std::vector<std::unique_ptr<Claim>> held;  // never released: _exit leaves them as a dead worker would
        for (int r = 0; r < kRounds; ++r) {
          auto c = folder.try_claim(fmt::format("round.{}", r), nullptr);
          if (c) write_file_atomic(d / fmt::format("won.{}.{}", r, getpid()), "1");
          held.push_back(std::move(c));
        }
        // Live until every child has tried every round: the claims of an exited process are dead, and a
        // slower child would rightly take them over.
        write_file_atomic(d / fmt::format("done.{}", getpid()), "1");
        for (int waited = 0; waited < 6000; ++waited) {
          int done = 0;
          for (const auto& e : std::filesystem::directory_iterator(d.path))
            done += e.path().filename().string().rfind("done.", 0) == 0;
          if (done == kProcs) break;
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        _exit(0);
      } catch (...) {
        rc = 1;
      }
      _exit(rc);
    }
    kids.push_back(pid);
  }
  for (pid_t k : kids) {
    int status = 0;
    REQUIRE(waitpid(k, &status, 0) == k);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }
  std::map<int, int> winners;
  for (const auto& e : std::filesystem::directory_iterator(d.path)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("won.", 0) == 0) winners[std::stoi(name.substr(4))] += 1;
  }
  for (int r = 0; r < kRounds; ++r) {
    INFO("round " << r);
    CHECK(winners[r] == 1);
  }
}

TEST_CASE("shards: K/N takes every Nth cell, and a Slurm array task's shard comes from its environment", "[workers]") {
  const Shard s = parse_shard("1/3");
  CHECK(s.index == 1);
  CHECK(s.count == 3);
  CHECK(!s.holds(0));
  CHECK(s.holds(1));
  CHECK(s.holds(4));
  for (const char* bad : {"3/3", "-1/2", "1", "a/b", "1/0", "1/2x"})
    CHECK_THROWS_WITH(parse_shard(bad), Catch::Contains("expected K/N with 0 <= K < N"));

  unsetenv("SLURM_ARRAY_TASK_ID");
  CHECK(shard_from_slurm_env().count == 1);
  setenv("SLURM_ARRAY_TASK_ID", "5", 1);
  setenv("SLURM_ARRAY_TASK_COUNT", "4", 1);
  setenv("SLURM_ARRAY_TASK_MIN", "3", 1);  // --array=3-6
  CHECK(shard_from_slurm_env().index == 2);
  CHECK(shard_from_slurm_env().count == 4);
  setenv("SLURM_ARRAY_TASK_ID", "9", 1);  // --array=3-9:2 has 4 tasks too
  CHECK_THROWS_WITH(shard_from_slurm_env(), Catch::Contains("use --shard K/N"));
  unsetenv("SLURM_ARRAY_TASK_ID");
  unsetenv("SLURM_ARRAY_TASK_COUNT");
  unsetenv("SLURM_ARRAY_TASK_MIN");
}

TEST_CASE("workers: three lra reproduce processes on one grid run each cell once", "[workers]") {
  TempDir d("three");
  const std::string grid = tiny_grid(d.path, 30);
  {
    lra::test::LraProcess a(grid), b(grid), c(grid);
    CHECK(a.wait() == 0);
    CHECK(b.wait() == 0);
    CHECK(c.wait() == 0);
    INFO(a.out() << b.out() << c.out());
    // Every worker ends with the whole table.
    for (const std::string& out : {a.out(), b.out(), c.out()}) CHECK(out.find("| cosformer | ours | ") != std::string::npos);
  }
  const RecordSet runs = load_records({d / "runs"});
  CHECK(runs.runs.size() == 6);
  std::map<std::string, int> per_cell;
  for (const auto& e : runs.runs) {
    CHECK(e.ok());
    per_cell[fmt::format("{}/{}", e.attn, e.seed)] += 1;
  }
  CHECK(per_cell.size() == 6);
  for (const auto& [cell, n] : per_cell) {
    INFO(cell);
    CHECK(n == 1);
  }
  // A late worker finds nothing to do.
  const auto late = run_lra(grid);
  CHECK(late.rc == 0);
  CHECK(late.out.find("6 done, 0 running") != std::string::npos);
  CHECK(load_records({d / "runs"}).runs.size() == 6);
}

TEST_CASE("workers: a killed worker's cell is resumed by another at once, a stopped one's after the claim timeout",
          "[workers][signals]") {
  // One cell of 2000 steps on short documents: checkpoints from step 3, seconds before the end.
  TempDir whole("takeover-whole");
  REQUIRE(run_lra(tiny_grid(whole.path, 2000, "softmax", 1)).rc == 0);
  const RecordSet ref = load_records({whole / "runs"});
  REQUIRE(ref.runs.size() == 1);
  auto check_resumed = [&](const TempDir& d) {
    const RecordSet runs = load_records({d / "runs"});
    REQUIRE(runs.runs.size() == 1);
    const nlohmann::json& rec = runs.runs[0].record;
    CHECK(rec["status"] == "ok");
    CHECK(rec["resumed_from_step"].get<int64_t>() > 0);
    lra::test::check_same_numbers(ref.runs[0].record, rec);  // as if no worker had died
  };

  SECTION("SIGKILL: the process is gone, so its claim is dead at once") {
    TempDir d("takeover-kill");
    const std::string grid = tiny_grid(d.path, 2000, "softmax", 1);
    lra::test::LraProcess first(grid);
    REQUIRE(!lra::test::wait_for_checkpoint(d / "runs").empty());
    lra::test::LraProcess second(grid);  // finds the cell claimed, and waits
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    const auto dry = run_lra(grid + " --dry-run");
    CHECK(dry.out.find("0 done, 1 running") != std::string::npos);
    CHECK(dry.out.find(fmt::format("claimed by {} pid", host_name())) != std::string::npos);
    first.signal(SIGKILL);
    CHECK(first.wait() == 128 + SIGKILL);
    CHECK(second.wait() == 0);
    INFO(second.out());
    CHECK(second.out().find("waiting for 1 cell(s) other workers hold") != std::string::npos);
    CHECK(second.out().find("[1/1] listops / softmax seed 0: resuming") != std::string::npos);
    check_resumed(d);
  }
  SECTION("SIGSTOP: no heartbeat for --claim-timeout, taken over; the stopped worker, continued, writes nothing") {
    TempDir d("takeover-stop");
    const std::string grid = tiny_grid(d.path, 2000, "softmax", 1) + " --claim-timeout 2";
    lra::test::LraProcess first(grid);
    REQUIRE(!lra::test::wait_for_checkpoint(d / "runs").empty());
    lra::test::LraProcess second(grid);
    first.signal(SIGSTOP);
    for (int i = 0; i < 200 && second.out().find("resuming") == std::string::npos; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    INFO(second.out());
    CHECK(second.out().find("[1/1] listops / softmax seed 0: resuming") != std::string::npos);
    first.signal(SIGCONT);
    CHECK(first.wait() == 3);
    CHECK(first.err().find("this worker's claim on its cell was taken over by another worker") != std::string::npos);
    CHECK(second.wait() == 0);
    check_resumed(d);
  }
}

TEST_CASE("workers: a cell that fails in this grid's run is not retried by its workers, only by a later run",
          "[workers]") {
  TempDir d("failed");
  const std::string grid = tiny_grid(d.path, 10, "softmax,local", 1) + " --set block=0";
  auto r = run_lra(grid + " --worker");
  INFO(r.out);
  CHECK(r.rc == 1);
  CHECK(r.out.find("failed: local attention needs block >= 1") != std::string::npos);
  CHECK(r.out.find("# LRA report") == std::string::npos);  // a worker writes no table
  // Another worker of the same array (planned before the failure) leaves it.
  r = run_lra(grid + " --worker --retry-failed-before 2000-01-01T00:00:00Z");
  CHECK(r.rc == 0);
  CHECK(r.out.find("1 done, 0 running, 0 to resume, 1 failed, 0 to retry, 0 to run") != std::string::npos);
  CHECK(r.out.find("running\n") == std::string::npos);
  // The report job writes the table and runs nothing.
  r = run_lra(grid + " --report-only");
  CHECK(r.rc == 0);
  CHECK(r.out.find("| local [attn_params.block=0] | ours | failed [1] |") != std::string::npos);
  // A later lra reproduce retries it.
  r = run_lra(grid + " --dry-run");
  CHECK(r.out.find("1 done, 0 running, 0 to resume, 0 failed, 1 to retry, 0 to run") != std::string::npos);
}

TEST_CASE("slurm: --slurm writes a job array of workers and a report job that run a copy of this binary",
          "[workers][slurm]") {
  TempDir d("slurm-script");
  const std::string grid = tiny_grid(d.path, 10, "softmax,linear", 1);
  auto r = run_lra(grid + " --slurm --workers 3 --partition gpu --time 12:00:00 --gpus-per-task 1 --cpus-per-task 8 "
                          "--mem 32G --account lab --sbatch-arg=--qos=high --signal-before 120");
  INFO(r.out);
  INFO(r.err);
  REQUIRE(r.rc == 0);
  std::string dir;
  for (const auto& e : std::filesystem::directory_iterator(d / "runs/slurm")) dir = e.path().string();
  REQUIRE(!dir.empty());
  CHECK(r.out.find("wrote " + dir + "/workers.sbatch (3 worker(s) for 2 cell(s) to run)") != std::string::npos);
  CHECK(r.out.find("sbatch --dependency=afterany:$array " + dir + "/report.sbatch") != std::string::npos);
  const std::string w = read_file(dir + "/workers.sbatch");
  for (const std::string& line :
       {std::string("#SBATCH --array=0-2\n"), std::string("#SBATCH --requeue\n"),
        std::string("#SBATCH --signal=B:USR1@120\n"), std::string("#SBATCH --open-mode=append\n"),
        "#SBATCH --output=" + dir + "/logs/worker-%A_%a.log\n", std::string("#SBATCH --partition=gpu\n"),
        std::string("#SBATCH --time=12:00:00\n"), std::string("#SBATCH --gpus-per-task=1\n"),
        std::string("#SBATCH --cpus-per-task=8\n"), std::string("#SBATCH --mem=32G\n"),
        std::string("#SBATCH --account=lab\n"), std::string("#SBATCH --qos=high\n"), "LRA=" + dir + "/lra\n",
        std::string("scontrol requeue \"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\"")})
    CHECK(w.find(line) != std::string::npos);
  CHECK(w.find("--out " + d / "runs") != std::string::npos);
  CHECK(w.find("--published " + dir + "/published") != std::string::npos);
  CHECK(w.find("--worker --retry-failed-before 20") != std::string::npos);
  const std::string rep = read_file(dir + "/report.sbatch");
  CHECK(rep.find("--report-only") != std::string::npos);
  CHECK(rep.find("#SBATCH --time") == std::string::npos);  // the workers' limits are not the report's
  CHECK(rep.find("#SBATCH --account=lab\n") != std::string::npos);
  // The copy of the binary runs, and the published tables came with it.
  CHECK(lra::run_command(dir + "/lra --version").first == 0);
  CHECK(std::filesystem::exists(dir + "/published"));
  CHECK(!std::filesystem::is_empty(dir + "/published"));
  // The scripts are valid bash.
  CHECK(lra::run_command("bash -n " + dir + "/workers.sbatch && bash -n " + dir + "/report.sbatch").first == 0);

  CHECK(run_lra(grid + " --workers 2").err.find("--workers is for the job array --slurm writes") != std::string::npos);
  CHECK(run_lra(grid + " --submit").err.find("--submit submits the --slurm job array") != std::string::npos);
  CHECK(run_lra("reproduce --table lra-efficiency --slurm").err.find("lra-efficiency runs in one process") !=
        std::string::npos);
}

// One run over two processes, for real: `mpirun -np 2 --oversubscribe lra run ...` against the same run in
// one process with the same global batch. The records' numbers and the final parameters agree up to the
// order of summation (two ranks' gradients are summed, not accumulated over one batch); a stop and resume
// under two ranks ends like the uninterrupted two-rank run; a rank that fails brings both down, named.
// CI runs as root: the test (not the user's environment) sets Open MPI's allow-run-as-root variables.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/collective.h"
#include "mpi_util.h"
#include "test_util.h"

using namespace lra;
using namespace lra::test;

TEST_CASE("mpi: two ranks train like one process with the same global batch", "[mpi]") {
  if (const std::string why = mpi_missing(); !why.empty()) LRA_SKIP(why);
  TempDir d("mpi-same");
  struct Case {
    const char* task;
    const char* attn;
    int batch;
  };
  // Softmax and a kernelised variant; the dual encoder's pairs; an odd global batch (shares of 4 and 3).
  for (const Case& c : {Case{"listops", "softmax", 8}, Case{"listops", "cosformer", 8}, Case{"retrieval", "cosformer", 6},
                        Case{"listops", "linear", 7}}) {
    INFO(c.task << " " << c.attn << " batch " << c.batch);
    const std::string name = fmt::format("{}-{}-{}", c.task, c.attn, c.batch);
    const nlohmann::json one = record_of(run_lra(tiny_run(d.path, c.task, c.attn, c.batch, name + "-one")));
    const nlohmann::json two =
        record_of(run_mpi("-np 2 " + std::string(LRA_BIN) + " " + tiny_run(d.path, c.task, c.attn, c.batch, name + "-two")));
    CHECK(two["status"] == "ok");
    check_like_one_process(one, two);
    // The final parameters, after 9 AdamW steps.
    const std::vector<float> p1 = params_of(one), p2 = params_of(two);
    REQUIRE(p1.size() == p2.size());
    double worst = 0.0, scale = 0.0;
    for (size_t i = 0; i < p1.size(); ++i) {
      worst = std::max(worst, static_cast<double>(std::fabs(p1[i] - p2[i])));
      scale = std::max(scale, static_cast<double>(std::fabs(p1[i])));
    }
    CHECK(worst <= 1e-4 * scale);
    // What the record says about the world.
    REQUIRE(two.contains("world"));
    CHECK(two["world"]["size"] == 2);
    CHECK(two["world"]["collective"].get<std::string>().find("MPI") != std::string::npos);
    REQUIRE(two["world"]["ranks"].size() == 2);
    CHECK(two["world"]["ranks"][0]["examples_per_step"].get<int>() + two["world"]["ranks"][1]["examples_per_step"].get<int>() ==
          c.batch);
    CHECK(two["world"]["ranks"][1]["threads"] == 1);
    CHECK(two["speed"]["comm_share"].get<double>() >= 0.0);
    CHECK(two["speed"]["comm_share"].get<double>() < 1.0);
    CHECK(!one.contains("world"));
  }
}

TEST_CASE("mpi: a run stopped and resumed under two ranks ends like the uninterrupted one", "[mpi]") {
  if (const std::string why = mpi_missing(); !why.empty()) LRA_SKIP(why);
  TempDir d("mpi-resume");
  const std::string lra = " " + std::string(LRA_BIN) + " ";
  const nlohmann::json whole = record_of(run_mpi("-np 2" + lra + tiny_run(d.path, "listops", "cosformer", 8, "whole")));
  const CliResult stopped = run_mpi("-np 2" + lra + tiny_run(d.path, "listops", "cosformer", 8, "part") + " --stop-after 4");
  const nlohmann::json part = record_of(stopped);
  CHECK(part["status"] == "interrupted");
  CHECK(part["interrupted_by"] == "--stop-after");
  const std::string ckpt = part["checkpoint"].get<std::string>();
  REQUIRE(std::filesystem::exists(ckpt));
  CHECK(load_checkpoint_meta(ckpt)["world_size"] == 2);
  const std::string copy = d.path + "/one-process.ckpt";
  std::filesystem::copy_file(ckpt, copy);
  const nlohmann::json resumed = record_of(run_mpi("-np 2" + lra + "run -q --keep-checkpoint --cache-dir " + d.path + "/cache --resume " + ckpt));
  CHECK(resumed["status"] == "ok");
  CHECK(resumed["resumed_from_step"] == 4);
  CHECK(!resumed.contains("resumed_from_world_size"));
  check_same_numbers(whole, resumed);  // the same world size: the same sums, bit for bit
  CHECK(params_of(resumed) == params_of(whole));
  // The data order and dropout depend on the global batch alone: one process may go on from it.
  const nlohmann::json alone = record_of(run_lra("run -q --keep-checkpoint --cache-dir " + d.path + "/cache --resume " + copy));
  CHECK(alone["resumed_from_world_size"] == 2);
  check_like_one_process(whole, alone);
}

TEST_CASE("mpi: a rank that fails stops both, and the record names it", "[mpi]") {
  if (const std::string why = mpi_missing(); !why.empty()) LRA_SKIP(why);
  TempDir d("mpi-fail");
  const std::string args = tiny_run(d.path, "listops", "softmax", 8, "runs");
  // Rank 1 alone is pointed at a folder without the official files.
  const CliResult r = run_mpi(fmt::format("-np 1 {0} {1} : -np 1 {0} {1} --data-dir {2}/nowhere", LRA_BIN, args, d.path));
  INFO(r.err);
  CHECK(r.rc == 1);  // not 124: no rank was left waiting for the other until the timeout
  CHECK(r.err.find("rank 1 of 2 failed") != std::string::npos);
  CHECK(r.err.find("nowhere") != std::string::npos);
  const auto rec = nlohmann::json::parse(read_file(last_line(r.out)));
  CHECK(rec["status"] == "failed");
  CHECK(rec["failed_rank"] == 1);
  CHECK(rec["error"].get<std::string>().find("nowhere") != std::string::npos);
}

TEST_CASE("mpi: commands of one process refuse to run as several", "[mpi]") {
  // The launcher's variables are read before MPI starts, so this runs with or without MPI.
  const CliResult list = run_lra_with("SLURM_STEP_NUM_TASKS=3", "list attn");
  CHECK(list.rc == 1);
  CHECK(list.err.find("started as one of 3 (SLURM_STEP_NUM_TASKS)") != std::string::npos);
  CHECK(run_lra_with("SLURM_STEP_NUM_TASKS=1", "list attn").rc == 0);
}

TEST_CASE("mpi: the launcher's environment says how many ranks it started", "[mpi]") {
  unsetenv("OMPI_COMM_WORLD_SIZE");
  unsetenv("PMI_SIZE");
  unsetenv("PMIX_SIZE");
  unsetenv("SLURM_STEP_NUM_TASKS");
  std::string var;
  CHECK(launched_ranks(&var) == 1);
  CHECK(var.empty());
  setenv("SLURM_STEP_NUM_TASKS", "4", 1);
  CHECK(launched_ranks(&var) == 4);
  CHECK(var == "SLURM_STEP_NUM_TASKS");
  setenv("PMI_SIZE", "x", 1);  // not a number: ignored
  CHECK(launched_ranks(&var) == 4);
  unsetenv("SLURM_STEP_NUM_TASKS");
  unsetenv("PMI_SIZE");
  for (int parts : {10, 3, 2, 1}) {  // shares of 7 examples: contiguous, all of them, sizes within one
    CHECK(share_begin(7, parts, 0) == 0);
    CHECK(share_begin(7, parts, parts) == 7);
    for (int r = 0; r < parts; ++r) {
      const int64_t size = share_begin(7, parts, r + 1) - share_begin(7, parts, r);
      CHECK(size >= 7 / parts);
      CHECK(size <= 7 / parts + 1);
    }
  }
}

TEST_CASE("mpi: a signal to the launcher stops both ranks at one step and rank 0 checkpoints", "[mpi]") {
  if (const std::string why = mpi_missing(); !why.empty()) LRA_SKIP(why);
  TempDir d("mpi-signal");
  std::string args = tiny_run(d.path, "listops", "softmax", 8, "runs");
  args.replace(args.find("--steps 9 "), 10, "--steps 1000000 ");
  const std::string out = d.path + "/mpirun.out", err = d.path + "/mpirun.err";
  const std::string cmd = fmt::format(
      "exec env -u LRA_DATA_DIR OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 {} --oversubscribe "
      "--bind-to none -np 2 {} {} >{} 2>{}",
      LRA_TEST_MPIEXEC, LRA_BIN, args, out, err);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  const std::string first = wait_for_checkpoint(d.path + "/runs");  // the run is past its first evaluation
  kill(pid, SIGTERM);  // what Ctrl-C or scancel does to the launcher: it passes SIGTERM to every rank
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  INFO(read_file(err));
  REQUIRE(!first.empty());
  const auto rec = nlohmann::json::parse(read_file(last_line(read_file(out))));
  CHECK(rec["status"] == "interrupted");
  CHECK(rec["interrupted_by"] == "SIGTERM");
  const int64_t steps = rec["metrics"]["steps_done"].get<int64_t>();
  CHECK(steps < 1000000);
  CHECK(load_checkpoint_meta(rec["checkpoint"].get<std::string>())["step"] == steps);
}

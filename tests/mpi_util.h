// Running lra under `mpirun` from a test (tests/test_mpi.cpp, and the NCCL test of tests/cuda): the
// launcher CMake found (LRA_TEST_MPIEXEC), allowed to run as root here rather than in the user's
// environment, and the checks that a run over two ranks is the one-process run.
#pragma once

#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli_util.h"
#include "core/files.h"
#include "train/checkpoint.h"

namespace lra::test {

inline std::string last_line(const std::string& s) {
  std::string t = s;
  while (!t.empty() && t.back() == '\n') t.pop_back();
  const auto nl = t.rfind('\n');
  return nl == std::string::npos ? t : t.substr(nl + 1);
}

// Why these tests cannot run here ("" when they can).
inline std::string mpi_missing() {
  if (!LRA_TEST_HAVE_MPI) return "lra was built without MPI (install libopenmpi-dev and reconfigure)";
  if (std::string(LRA_TEST_MPIEXEC).empty() || !std::filesystem::exists(LRA_TEST_MPIEXEC))
    return "no mpirun was found (install openmpi-bin)";
  return "";
}

// `mpirun` with `spec` (-np N lra ARGS, or an MPMD list of them: "-np 1 A : -np 1 B"), allowed to run as
// root, on two cores whatever else runs, killed after 5 minutes rather than hang the suite.
inline CliResult run_mpi(const std::string& spec) {
  static int calls = 0;
  const std::string err_file =
      fmt::format("{}/lra-mpi-{}-{}.err", std::filesystem::temp_directory_path().string(), getpid(), calls++);
  auto [rc, out] = run_command(fmt::format(
      "env -u LRA_DATA_DIR OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 300 {} --oversubscribe "
      "--bind-to none {} 2>{}",
      LRA_TEST_MPIEXEC, spec, err_file));
  CliResult r{rc, std::move(out), read_file(err_file)};
  std::remove(err_file.c_str());
  return r;
}

// A tiny run: 16-wide, one layer, dropout and attention dropout on, 9 steps with evaluations at 3, 6, 9.
inline std::string tiny_run(const std::string& dir, const std::string& task, const std::string& attn, int batch,
                     const std::string& out) {
  return fmt::format(
      "run --task {} --attn {} --steps 9 --eval-every 3 --threads 1 --out {}/{} --cache-dir {}/cache -q "
      "--keep-checkpoint --set n_train=40 --set n_val=12 --set n_test=12 --set emb_dim=16 --set qkv_dim=16 "
      "--set mlp_dim=16 --set num_heads=2 --set num_layers=1 --set batch_size={} --set warmup=2 "
      "--set dropout_rate=0.1 --set attention_dropout_rate=0.1 --set max_length=64",
      task, attn, dir, out, dir, batch);
}

// The record a run printed the path of, with that path as "path".
inline nlohmann::json record_of(const CliResult& r) {
  INFO(r.err);
  REQUIRE(r.rc == 0);
  const std::string path = last_line(r.out);
  nlohmann::json rec = nlohmann::json::parse(read_file(path));
  rec["path"] = path;
  return rec;
}

// The parameters in the checkpoint beside a record (kept with --keep-checkpoint).
inline std::vector<float> params_of(const nlohmann::json& rec) {
  std::string ckpt = rec["path"].get<std::string>();
  ckpt.replace(ckpt.size() - 5, 5, ".ckpt");
  return load_checkpoint(ckpt).params;
}

// `lra <args>` with `env` set (VAR=value ...), its exit code and stderr.
inline CliResult run_lra_with(const std::string& env, const std::string& args) {
  const std::string err_file = fmt::format("{}/lra-mpi-env-{}.err", std::filesystem::temp_directory_path().string(), getpid());
  auto [rc, out] = run_command(fmt::format("env -u LRA_DATA_DIR {} {} {} 2>{}", env, LRA_BIN, args, err_file));
  CliResult r{rc, std::move(out), read_file(err_file)};
  std::remove(err_file.c_str());
  return r;
}

// The numbers of `two` (two ranks) are those of `one` (one process) up to the rounding of the sum.
inline void check_like_one_process(const nlohmann::json& one, const nlohmann::json& two) {
  REQUIRE(two["curve"].size() == one["curve"].size());
  for (size_t i = 0; i < one["curve"].size(); ++i) {
    INFO("curve point " << i);
    CHECK(two["curve"][i]["loss"].get<double>() == Approx(one["curve"][i]["loss"].get<double>()).epsilon(1e-5));
    CHECK(two["curve"][i]["val_loss"].get<double>() ==
          Approx(one["curve"][i]["val_loss"].get<double>()).epsilon(1e-5));
    CHECK(two["curve"][i]["val_accuracy"] == one["curve"][i]["val_accuracy"]);
  }
  CHECK(two["metrics"]["test_accuracy"] == one["metrics"]["test_accuracy"]);
  CHECK(two["metrics"]["test_loss"].get<double>() == Approx(one["metrics"]["test_loss"].get<double>()).epsilon(1e-5));
  for (const char* key : {"source", "n_train", "n_val", "n_test"}) CHECK(two["dataset"][key] == one["dataset"][key]);
  REQUIRE(two["dataset"]["files"].size() == one["dataset"]["files"].size());
  for (size_t i = 0; i < one["dataset"]["files"].size(); ++i)  // the same bytes (a resumed run may read another cache)
    CHECK(two["dataset"]["files"][i]["checksum"] == one["dataset"]["files"][i]["checksum"]);
}

}  // namespace lra::test

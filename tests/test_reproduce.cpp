// `lra reproduce`: the grid it plans, what it finds already done (same task, variant, preset, seed and
// config), resumed (interrupted with a checkpoint, or killed leaving only its checkpoint) or to run again
// (failed), --dry-run through the binary, and real tiny grids: two cells, one resumed, then the table; one
// cell killed with SIGKILL mid-run and resumed to the uninterrupted numbers.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "attn/attention.h"
#include "core/files.h"
#include "core/system.h"
#include "tasks/task.h"
#include "results/collection.h"
#include "runner/reproduce.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "cli_util.h"
#include "record_fixtures.h"
#include "test_util.h"

using namespace lra;
using lra::test::run_lra;
using lra::test::RunSpec;
using lra::test::TempDir;
using lra::test::write_run;

namespace {

// Tiny models on a tiny generated ListOps set: a cell takes about a second on one core.
const std::vector<std::string> kTiny = {"n_train=48",   "n_val=12",   "n_test=12",         "emb_dim=16",
                                        "qkv_dim=16",   "mlp_dim=16", "num_heads=2",       "num_layers=1",
                                        "batch_size=8", "warmup=2",   "num_train_steps=8", "eval_frequency=3"};

std::string tiny_flags() {
  std::string s;
  for (const auto& k : kTiny) s += " --set " + k;
  return s;
}

// The config a cell of the tiny grid runs with.
nlohmann::json cell_config(const std::string& task, const std::string& attn, uint64_t seed,
                           const std::vector<std::string>& sets = kTiny) {
  RunConfig c = resolve_config(task, attn, "cpu", "", sets);
  c.seed = seed;
  return c.to_json();
}

RunSpec spec(const std::string& task, const std::string& attn, uint64_t seed, const std::string& status,
             nlohmann::json config) {
  return RunSpec(task, attn)
      .seed(seed)
      .ended(status)
      .config(std::move(config))
      .started(fmt::format("2026-01-01T00:00:0{}Z", seed));
}

// Existing records for a 2 tasks x 2 variants x 2 seeds grid (see the test for what each one means).
void write_existing(const TempDir& d) {
  nlohmann::json threads7 = cell_config("listops", "softmax", 0);
  threads7["threads"] = 7;  // threads change speed, not results: still the same cell
  write_run(d.path, spec("listops", "softmax", 0, "ok", threads7));
  nlohmann::json longer = cell_config("listops", "softmax", 1);
  longer["num_train_steps"] = 99;
  write_run(d.path, spec("listops", "softmax", 1, "ok", longer));
  RunSpec interrupted = spec("listops", "cosformer", 0, "interrupted", cell_config("listops", "cosformer", 0));
  write_run(d.path, interrupted);
  auto rec = nlohmann::json::parse(
      read_file(d.path + "/" + lra::test::run_record(interrupted)["run_id"].get<std::string>() + ".json"));
  rec["checkpoint"] = d / "cosformer.ckpt";
  write_file_atomic(d / "cosformer.ckpt", "checkpoint");
  write_record(d.path + "/" + rec["run_id"].get<std::string>() + ".json", rec);
  write_run(d.path, spec("listops", "cosformer", 1, "interrupted", cell_config("listops", "cosformer", 1)));
  write_run(d.path, spec("text", "softmax", 0, "failed", cell_config("text", "softmax", 0)));
  write_run(d.path, spec("text", "cosformer", 0, "ok", cell_config("text", "cosformer", 0)).on("paper"));
}

}  // namespace

TEST_CASE("reproduce: the accuracy grid and what already exists", "[reproduce]") {
  TempDir d("grid");
  write_existing(d);
  GridRequest req;
  req.tasks = {"listops", "text"};
  req.attns = {"softmax", "cosformer"};
  req.seeds = 2;
  req.sets = kTiny;
  const auto plan = plan_accuracy_grid(req, load_records({d.path}));
  REQUIRE(plan.size() == 8);
  auto at = [&](size_t i) {
    return fmt::format("{} {} {} {}", plan[i].task, plan[i].attn, plan[i].seed, cell_state_name(plan[i].state));
  };
  CHECK(at(0) == "listops softmax 0 done");
  CHECK(at(1) == "listops softmax 1 run");  // its record ran 99 steps, not the grid's 8
  CHECK(plan[1].note.find("num_train_steps: 99 vs 8") != std::string::npos);
  CHECK(at(2) == "listops cosformer 0 resume");
  CHECK(plan[2].existing == d / "cosformer.ckpt");
  CHECK(plan[2].note == "from step 40");
  CHECK(at(3) == "listops cosformer 1 retry");  // interrupted, but its checkpoint is gone
  CHECK(at(4) == "text softmax 0 retry");
  CHECK(plan[4].note.find("nan at step 7") != std::string::npos);
  CHECK(at(5) == "text softmax 1 run");
  CHECK(at(6) == "text cosformer 0 run");  // the paper-preset run is another table's cell
  CHECK(at(7) == "text cosformer 1 run");
  CHECK(plan[7].config.num_train_steps == 8);
  CHECK(plan[7].config.seed == 1);

  // An attention hyperparameter goes to the variants that have it; a key no cell takes is refused.
  req.sets = {"eps=1e-5"};
  const auto eps = plan_accuracy_grid(req, {});
  CHECK(eps[0].config.model.attn_params.count("eps") == 0);
  CHECK(eps[2].config.model.attn_params["eps"] == 1e-5);
  req.sets = {"nosuch=1"};
  CHECK_THROWS_WITH(plan_accuracy_grid(req, {}), Catch::Contains("no cell takes 'nosuch'"));
  req.sets = {};
  req.seeds = 0;
  CHECK_THROWS_WITH(plan_accuracy_grid(req, {}), Catch::Contains("--seeds"));
  // By default: every task and every variant.
  req.seeds = 1;
  req.tasks = {};
  req.attns = {};
  CHECK(plan_accuracy_grid(req, {}).size() == task_names().size() * attention_names().size());
}

TEST_CASE("reproduce: a cell that failed after the grid was planned is failed, not retried, even if resumed",
          "[reproduce]") {
  TempDir d("failed-when");
  write_run(d.path, spec("text", "softmax", 0, "failed", cell_config("text", "softmax", 0)));  // 2026-01-01
  // Started before the plan, resumed by a worker of this grid, failed after it.
  const RunSpec resumed = spec("text", "softmax", 1, "failed", cell_config("text", "softmax", 1));
  write_run(d.path, resumed);
  const std::string path = d.path + "/" + lra::test::run_record(resumed)["run_id"].get<std::string>() + ".json";
  auto rec = nlohmann::json::parse(read_file(path));
  rec["ended_at"] = "2026-06-01T00:00:00Z";
  write_record(path, rec);
  GridRequest req;
  req.tasks = {"text"};
  req.attns = {"softmax"};
  req.seeds = 2;
  req.sets = kTiny;
  GridActivity activity;
  activity.retry_failed_before = "2026-03-01T00:00:00Z";
  const auto plan = plan_accuracy_grid(req, load_records({d.path}), activity);
  REQUIRE(plan.size() == 2);
  CHECK(plan[0].state == CellState::Retry);
  CHECK(plan[1].state == CellState::Failed);
}

TEST_CASE("reproduce: --dry-run lists the grid and runs nothing", "[reproduce]") {
  TempDir d("dry");
  write_existing(d);
  const size_t files = std::distance(std::filesystem::directory_iterator(d.path), {});
  const auto r =
      run_lra(fmt::format("reproduce --tasks listops,text --attn softmax,cosformer --seeds 2{} --out {} "
                          "--dry-run",
                          tiny_flags(), d.path));
  INFO(r.err);
  REQUIRE(r.rc == 0);
  CHECK(r.out.find("preset cpu, 2 task(s) x 2 variant(s) x 2 seed(s) = 8 cells in " + d.path +
                   ": 1 done, 0 running, 1 to resume, 0 failed, 2 to retry, 4 to run") != std::string::npos);
  CHECK(r.out.find("  done    listops     softmax         seed 0    " + d.path) != std::string::npos);
  CHECK(r.out.find("  resume  listops     cosformer       seed 0    " + d / "cosformer.ckpt" + "  from step 40") !=
        std::string::npos);
  CHECK(r.out.find("--dry-run: nothing was run") != std::string::npos);
  CHECK(static_cast<size_t>(std::distance(std::filesystem::directory_iterator(d.path), {})) == files);

  const auto e = run_lra(fmt::format("reproduce --table lra-efficiency --attn linear --out {} --dry-run", d.path));
  INFO(e.err);
  REQUIRE(e.rc == 0);
  CHECK(e.out.find("2 variant(s) at lengths 1024,2048,3072,4096 (B=8 H=4 D=128, fwdbwd, cpu)") != std::string::npos);
  CHECK(e.out.find("  run     softmax") != std::string::npos);  // the reference of every ratio comes first
  CHECK(e.out.find("  run     linear") != std::string::npos);
  const auto bad = run_lra(fmt::format("reproduce --table lra-efficiency --tasks listops --out {} --dry-run", d.path));
  CHECK(bad.rc != 0);
  CHECK(bad.err.find("--tasks and --seeds are for lra-accuracy") != std::string::npos);
}

TEST_CASE("reproduce: the efficiency grid and the bench records that already hold it", "[reproduce]") {
  TempDir d("eff");
  GridRequest req;
  req.attns = {"linear", "cosformer"};
  req.threads = 1;
  auto plan = plan_efficiency_grid(req, {});
  REQUIRE(plan.size() == 3);
  CHECK(plan[0].attn == "softmax");
  CHECK(plan[1].attn == "linear");
  CHECK(plan[0].bench.names == std::vector<std::string>{"softmax"});
  CHECK(plan[0].bench.lengths == std::vector<int>{1024, 2048, 3072, 4096});
  CHECK(plan[0].bench.req.batch == 8);
  // A bench record of this machine and these settings holds softmax and linear at every length: done.
  nlohmann::json rec = {{"kind", "bench_attn"},
                        {"created", "2026-01-01T00:00:00Z"},
                        {"env", {{"cpu", cpu_model_name()}, {"threads", 1}}},
                        {"rows", nlohmann::json::array()}};
  for (size_t v = 0; v < 2; ++v)
    for (int L : {1024, 2048, 3072, 4096})
      rec["rows"].push_back({{"attn", plan[v].attn},
                             {"len", L},
                             {"batch", 8},
                             {"heads", 4},
                             {"dim", 128},
                             {"mode", "fwdbwd"},
                             {"device", "cpu"},
                             {"causal", false},
                             {"threads", 1},
                             {"steps", 5},
                             {"warmup", 1},
                             {"seed", 0},
                             {"ms_median", 10.0},
                             {"peak_arena_bytes", 1000},
                             {"attn_params", plan[v].bench.hps[0]}});
  rec["rows"].erase(rec["rows"].size() - 1);  // linear lacks 4096
  write_record(d / "bench.json", rec);
  plan = plan_efficiency_grid(req, load_records({d.path}));
  CHECK(cell_state_name(plan[0].state) == std::string("done"));
  CHECK(plan[0].existing == d / "bench.json");
  CHECK(cell_state_name(plan[1].state) == std::string("run"));
  req.threads = 2;  // measured with another thread count: not the same cell
  CHECK(cell_state_name(plan_efficiency_grid(req, load_records({d.path}))[0].state) == std::string("run"));

  req.preset = "paper";
  CHECK(efficiency_request(req).batch == 32);
  CHECK(efficiency_request(req).dim == 256);
  req.preset = "tiny";
  CHECK_THROWS_WITH(efficiency_request(req), Catch::Contains("cpu (B 8, H 4, D 128) or paper"));
}

TEST_CASE("reproduce: a tiny grid runs, resumes a stopped cell, records a failed one and writes its table",
          "[reproduce]") {
  TempDir d("tiny-grid");
  const std::string common = fmt::format("--threads 1 --out {0}/runs --cache-dir {0}/cache{1}", d.path, tiny_flags());
  // The softmax cell, stopped after 4 of its 8 steps as Ctrl-C would stop it.
  auto r = run_lra(fmt::format("run --task listops --attn softmax --quiet --stop-after 4 {}", common));
  INFO(r.err);
  REQUIRE(r.rc == 0);
  const std::string grid = fmt::format("reproduce --tasks listops {} --report-dir {}/report -q", common, d.path);
  // block=0 is a hyperparameter of local only, which rejects it: that cell fails, the others run.
  const std::string with_local = grid + " --attn softmax,local,cosformer --set block=0";
  r = run_lra(with_local);
  INFO(r.out);
  INFO(r.err);
  CHECK(r.rc == 1);  // a cell failed; the grid went on and the table was written
  CHECK(r.out.find("0 done, 0 running, 1 to resume, 0 failed, 0 to retry, 2 to run") != std::string::npos);
  CHECK(r.out.find("[1/3] listops / softmax seed 0: resuming") != std::string::npos);
  CHECK(r.out.find("[2/3] listops / local seed 0: running\n  failed: local attention needs block >= 1") !=
        std::string::npos);
  CHECK(r.out.find("[3/3] listops / cosformer seed 0: running\n  ok: test accuracy") != std::string::npos);
  CHECK(r.out.find("3 cell(s) run, 1 failed") != std::string::npos);
  const RecordSet runs = load_records({d / "runs"});
  REQUIRE(runs.runs.size() == 3);
  for (const auto& e : runs.runs) {
    CHECK(e.status == (e.attn == "local" ? "failed" : "ok"));
    if (e.attn == "softmax") CHECK(e.record["resumed_from_step"] == 4);
  }
  // The table: written in every format, printed as Markdown, the failed cell with its error.
  for (const char* f : {"report.md", "accuracy.csv", "report.tex", "report.html"})
    CHECK(std::filesystem::exists(d / "report" + "/" + f));
  CHECK(r.out.find("## Accuracy (test %), preset cpu") != std::string::npos);
  CHECK(r.out.find("| softmax | ours | ") != std::string::npos);
  CHECK(r.out.find("| cosformer | ours | ") != std::string::npos);
  // Only local takes block: its config is not the others', so it is named in its row.
  CHECK(r.out.find("| local [attn_params.block=0] | ours | failed [1] |") != std::string::npos);
  CHECK(r.out.find("[1] listops / local [attn_params.block=0]: seed 0: failed: local attention needs block >= 1") !=
        std::string::npos);
  CHECK(r.out.find("Config: every run changes the preset's batch_size=8, emb_dim=16") != std::string::npos);
  CHECK(r.out.find("LRA Table 1: Transformer | 36.37 |") != std::string::npos);
  const std::string csv = read_file(d / "report/accuracy.csv");
  const std::string changes = "\"batch_size=8, emb_dim=16, eval_frequency=3, mlp_dim=16, n_test=12, n_train=48, n_val=12, "
                              "num_train_steps=8, qkv_dim=16, warmup=2";
  CHECK(csv.find("cpu,listops,softmax," + changes + "\",ok,1,0,") != std::string::npos);
  CHECK(csv.find("cpu,listops,local," + changes + ", attn_params.block=0\",failed,0,") != std::string::npos);
  CHECK(csv.find("cpu,listops,cosformer," + changes + "\",ok,1,0,") != std::string::npos);

  // The failed cell is run again next time; the others are done.
  r = run_lra(with_local + " --dry-run");
  CHECK(r.out.find("2 done, 0 running, 0 to resume, 0 failed, 1 to retry, 0 to run") != std::string::npos);
  r = run_lra(grid + " --attn softmax,cosformer");
  REQUIRE(r.rc == 0);
  CHECK(r.out.find("2 done, 0 running, 0 to resume, 0 failed, 0 to retry, 0 to run") != std::string::npos);
  CHECK(r.out.find(": running\n") == std::string::npos);
  CHECK(r.out.find("| local |") == std::string::npos);  // the table holds the grid asked for
}

TEST_CASE("reproduce: a cell killed before it wrote a record resumes from its checkpoint", "[reproduce][signals]") {
  TempDir d("killed");
  // One cell of 2000 steps on short documents: the first checkpoint comes at step 3, seconds before the end.
  const std::string common = fmt::format("--threads 1 --cache-dir {0}/cache{1} --set num_train_steps=2000 --set max_length=64", d.path,
                                         tiny_flags());
  const std::string grid =
      fmt::format("reproduce --tasks listops --attn softmax {} --out {}/runs --report-dir {}/report -q", common,
                  d.path, d.path);
  {
    lra::test::LraProcess p(grid);
    REQUIRE(!lra::test::wait_for_checkpoint(d / "runs").empty());
    p.signal(SIGKILL);
    CHECK(p.wait() == 128 + SIGKILL);
  }
  write_file_atomic(d / "runs/broken.ckpt", "not a checkpoint");  // named and passed over
  auto r = run_lra(grid + " --dry-run");
  INFO(r.out);
  INFO(r.err);
  CHECK(r.out.find("0 done, 0 running, 1 to resume, 0 failed, 0 to retry, 0 to run") != std::string::npos);
  CHECK(r.out.find("(its run stopped without a record)") != std::string::npos);
  CHECK(r.err.find("skipped " + d / "runs/broken.ckpt") != std::string::npos);
  r = run_lra(grid);
  INFO(r.out);
  REQUIRE(r.rc == 0);
  CHECK(r.out.find("[1/1] listops / softmax seed 0: resuming") != std::string::npos);
  const RecordSet runs = load_records({d / "runs"});
  REQUIRE(runs.runs.size() == 1);
  const nlohmann::json& rec = runs.runs[0].record;
  CHECK(rec["status"] == "ok");
  CHECK(rec["resumed_from_step"].get<int64_t>() > 0);
  // The same numbers as the cell run without interruption.
  r = run_lra(fmt::format("run --task listops --attn softmax --quiet {} --out {}/whole", common, d.path));
  REQUIRE(r.rc == 0);
  const auto whole = nlohmann::json::parse(read_file(r.out.substr(0, r.out.find('\n'))));
  lra::test::check_same_numbers(whole, rec);
}

TEST_CASE("reproduce: a checkpoint whose metadata lacks what the plan reads is skipped, not planned", "[reproduce]") {
  // The orphan's config and started_at are read by plan_accuracy_grid: a missing config was a JSON exception
  // (fuzz/regressions/checkpoint).
  TempDir d("orphans");
  save_checkpoint(d / "a.ckpt", {{"run_id", "x"}}, nullptr, nullptr, nullptr, 0);
  save_checkpoint(d / "b.ckpt", {{"run_id", "y"}, {"config", nlohmann::json::object()}, {"started_at", 5}}, nullptr,
                  nullptr, nullptr, 0);
  const OrphanScan scan = find_orphan_checkpoints(d.path, RecordSet{});
  CHECK(scan.orphans.empty());
  REQUIRE(scan.skipped.size() == 2);
  CHECK_THAT(scan.skipped[0], Catch::Contains("a.ckpt") && Catch::Contains("not written by lra run"));
  CHECK_THAT(scan.skipped[1], Catch::Contains("b.ckpt"));
  GridRequest req;
  req.tasks = {"listops"};
  req.attns = {"softmax"};
  GridActivity activity;
  activity.orphans = scan.orphans;
  CHECK(plan_accuracy_grid(req, RecordSet{}, activity).size() == 1);
}

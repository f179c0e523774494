// The CLI end to end, through the built `lra` binary: a tiny run writes a complete record; a run
// stopped and resumed ends with the numbers of the uninterrupted run; bad input fails clearly.
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <tuple>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "attn/attention.h"
#include "core/files.h"
#include "core/system.h"
#include "results/record.h"
#include "cli_util.h"
#include "test_util.h"

using namespace lra;
using lra::test::CliResult;
using lra::test::run_lra;
using lra::test::TempDir;

namespace {

std::string last_line(const std::string& s) {
  std::string t = s;
  while (!t.empty() && t.back() == '\n') t.pop_back();
  const auto nl = t.rfind('\n');
  return nl == std::string::npos ? t : t.substr(nl + 1);
}

// A tiny model on a tiny generated ListOps set: seconds on one core.
std::string tiny(const TempDir& d, int threads = 1, int steps = 8) {
  return fmt::format(
      "run --task listops --attn {{}} --steps {2} --eval-every 3 --threads {1} --out {0}/runs --cache-dir {0}/cache "
      "--set n_train=48 --set n_val=12 --set n_test=12 --set emb_dim=16 --set qkv_dim=16 --set mlp_dim=16 "
      "--set num_heads=2 --set num_layers=1 --set batch_size=8 --set warmup=2",
      d.path, threads, steps);
}


}  // namespace

TEST_CASE("cli: a tiny run writes a record with every key", "[cli]") {
  TempDir d("tiny");
  for (const char* attn : {"softmax", "cosformer"}) {
    const CliResult r = run_lra(fmt::format(fmt::runtime(tiny(d)), attn));
    INFO(r.err);
    REQUIRE(r.rc == 0);
    const std::string path = last_line(r.out);
    CHECK(path.rfind(d.path + "/runs/listops_" + attn, 0) == 0);
    const auto rec = nlohmann::json::parse(read_file(path));
    CHECK(missing_record_keys(rec).empty());
    auto incomplete = rec;
    incomplete["speed"].erase("ms_per_step_p90");
    CHECK(missing_record_keys(incomplete) == std::vector<std::string>{"speed.ms_per_step_p90"});
    CHECK(rec["status"] == "ok");
    CHECK(rec["attn"] == attn);
    CHECK(rec["dataset"]["source"] == "generated");
    CHECK(rec["dataset"]["n_train"] == 48);
    CHECK(rec["curve"].size() == 3);  // steps 3, 6 and the last, 8
    CHECK(rec["metrics"]["test_accuracy"].get<double>() >= 0.0);
    CHECK(rec["memory"]["peak_arena_bytes"].get<double>() > 0);
    CHECK(rec["config"]["emb_dim"] == 16);
    CHECK(!std::filesystem::exists(rec["run_id"].get<std::string>() + ".ckpt"));
  }
}

TEST_CASE("cli: a stopped and resumed run ends with the uninterrupted run's numbers", "[cli]") {
  // Performer redraws its features every 3 steps: the resumed run must draw the same ones.
  for (const char* attn : {"softmax", "performer --set features=8 --set redraw=interval:3"}) {
    INFO(attn);
    TempDir d("resume");
    const CliResult full = run_lra(fmt::format(fmt::runtime(tiny(d)), attn) + " --seed 5");
    REQUIRE(full.rc == 0);
    const CliResult part = run_lra(fmt::format(fmt::runtime(tiny(d)), attn) + " --seed 5 --stop-after 4");
    REQUIRE(part.rc == 0);
    const auto stopped = nlohmann::json::parse(read_file(last_line(part.out)));
    REQUIRE(stopped["status"] == "interrupted");
    const std::string ckpt = stopped["checkpoint"];
    REQUIRE(std::filesystem::exists(ckpt));
    const CliResult resumed = run_lra(fmt::format("run --resume {} --threads 1 --out {}/runs --cache-dir {}/cache", ckpt, d.path, d.path));
    INFO(resumed.err);
    REQUIRE(resumed.rc == 0);
    const auto a = nlohmann::json::parse(read_file(last_line(full.out)));
    const auto b = nlohmann::json::parse(read_file(last_line(resumed.out)));
    CHECK(b["status"] == "ok");
    CHECK(b["resumed_from_step"] == 4);
    lra::test::check_same_numbers(a, b);
    CHECK(run_lra(fmt::format("run --resume {} --steps 3", ckpt)).err.find("cannot be combined with --resume") != std::string::npos);
    CHECK(run_lra(fmt::format("run --resume {} --out {}", ckpt, d.path)).err.find("beside its checkpoint") != std::string::npos);
  }
}

TEST_CASE("cli: SIGTERM and SIGUSR1 stop a run like Ctrl-C, and --resume ends with the uninterrupted numbers",
          "[cli][signals]") {
  // Long enough that the signal lands mid-run (the first checkpoint is written at step 3 of 2000), short
  // documents so that the whole run takes seconds.
  TempDir d("signals");
  const std::string run = fmt::format(fmt::runtime(tiny(d, 1, 2000)), "softmax") + " --seed 3 --quiet --set max_length=64";
  const CliResult full = run_lra(run);
  REQUIRE(full.rc == 0);
  const auto uninterrupted = nlohmann::json::parse(read_file(last_line(full.out)));
  for (const int signo : {SIGTERM, SIGUSR1}) {
    INFO(signal_name(signo));
    TempDir w("signalled");
    lra::test::LraProcess p(fmt::format(fmt::runtime(tiny(w, 1, 2000)), "softmax") + " --seed 3 --quiet --set max_length=64");
    REQUIRE(!lra::test::wait_for_checkpoint(w / "runs").empty());
    p.signal(signo);
    CHECK(p.wait() == 128 + signo);
    INFO(p.err());
    const auto stopped = nlohmann::json::parse(read_file(last_line(p.out())));
    CHECK(stopped["status"] == "interrupted");
    CHECK(stopped["interrupted_by"] == signal_name(signo));
    CHECK(stopped["metrics"]["steps_done"].get<int64_t>() < 2000);
    const std::string ckpt = stopped["checkpoint"];
    REQUIRE(std::filesystem::exists(ckpt));
    // No --out: the record goes beside the checkpoint, and the checkpoint goes when the run ends ok.
    const CliResult resumed = run_lra(fmt::format("run --resume {} --threads 1 --quiet --cache-dir {}/cache", ckpt, w.path));
    INFO(resumed.err);
    REQUIRE(resumed.rc == 0);
    const std::string path = last_line(resumed.out);
    CHECK(std::filesystem::path(path).parent_path() == std::filesystem::path(ckpt).parent_path());
    const auto b = nlohmann::json::parse(read_file(path));
    CHECK(b["status"] == "ok");
    CHECK(b["resumed_from_step"] == stopped["metrics"]["steps_done"]);
    lra::test::check_same_numbers(uninterrupted, b);
    CHECK(!std::filesystem::exists(ckpt));
  }
}

TEST_CASE("cli: a second signal exits at once and leaves the last checkpoint whole", "[cli][signals]") {
  TempDir d("twice");
  lra::test::LraProcess p(fmt::format(fmt::runtime(tiny(d, 1, 2000)), "softmax") + " --quiet --set max_length=64");
  const std::string ckpt = lra::test::wait_for_checkpoint(d / "runs");
  REQUIRE(!ckpt.empty());
  p.signal(SIGTERM);
  p.signal(SIGUSR1);  // another signal, so the two cannot merge into one pending signal
  const int rc = p.wait();
  CHECK((rc == 128 + SIGTERM || rc == 128 + SIGUSR1));
  CHECK(p.out().empty());  // no record was written
  const CliResult resumed = run_lra(fmt::format("run --resume {} --threads 1 --quiet --cache-dir {}/cache", ckpt, d.path));
  INFO(resumed.err);
  CHECK(resumed.rc == 0);
}

TEST_CASE("cli: every task trains a tiny run end to end on its built-in data", "[cli][tasks]") {
  TempDir d("tasks");
  // (task, its built-in source, extra settings): tiny models, a few steps, a few examples of short documents.
  const std::vector<std::tuple<std::string, std::string, std::string>> tasks = {
      {"listops", "generated", "--set max_length=300"},
      {"text", "stand-in", "--set max_length=128"},
      {"retrieval", "stand-in", "--set max_length=128"},
      {"retrieval", "stand-in", "--set max_length=128 --set interaction=concat"},
      {"image", "files", ""},  // Fashion-MNIST from Debian's dataset-fashion-mnist, read from its IDX files
      {"pathfinder", "generated", ""},
      {"pathx", "generated", "--set num_heads=1 --set batch_size=2"},
  };
  for (const auto& [task, source, extra] : tasks) {
    INFO(task << " " << extra);
    const CliResult r = run_lra(fmt::format(
        "run --task {} --attn cosformer --steps 3 --eval-every 2 --threads 1 --out {}/runs --cache-dir {}/cache "
        "--set n_train=12 --set n_val=6 --set n_test=6 --set emb_dim=16 --set qkv_dim=16 --set mlp_dim=16 "
        "--set num_heads=2 --set num_layers=1 --set batch_size=4 --set warmup=1 {}",
        task, d.path, d.path, extra));
    INFO(r.err);
    REQUIRE(r.rc == 0);
    const auto rec = nlohmann::json::parse(read_file(last_line(r.out)));
    CHECK(rec["status"] == "ok");
    CHECK(rec["task"] == task);
    CHECK(rec["dataset"]["source"] == source);
    CHECK(rec["dataset"]["n_train"] == 12);
    CHECK(rec["dataset"]["n_test"] == 6);
    CHECK(rec["metrics"]["test_accuracy"].get<double>() >= 0.0);
    CHECK(missing_record_keys(rec).empty());
    if (source == "stand-in") CHECK(r.err.find("stand-in") != std::string::npos);  // said on screen too
    if (task == "retrieval")
      CHECK(rec["config"]["task_params"]["interaction"] == (extra.find("concat") != std::string::npos ? "concat" : "nli"));
  }
}

TEST_CASE("cli: every attention variant trains, bidirectional and causal", "[cli]") {
  TempDir d("variants");
  for (const auto& attn : attention_names())
    for (const char* causal : {"false", "true"}) {
      INFO(attn << " causal=" << causal);
      // Causal runs pool by mean: the CLS row, first, would see only itself.
      const std::string pool = std::string(causal) == "true" ? " --set classifier_pool=MEAN" : "";
      const CliResult r = run_lra(fmt::format(fmt::runtime(tiny(d)), attn) + " --set causal=" + causal + pool);
      INFO(r.err);
      if (!has_hyperparam(find_attention(attn), "causal")) {  // a variant without a causal mode says so
        if (std::string(causal) == "true") {
          CHECK(r.rc != 0);
          CHECK(r.err.find("has no causal mode") != std::string::npos);
          continue;
        }
        REQUIRE(r.rc == 0);
        CHECK(!nlohmann::json::parse(read_file(last_line(r.out)))["config"]["attn_params"].contains("causal"));
        continue;
      }
      REQUIRE(r.rc == 0);
      const auto rec = nlohmann::json::parse(read_file(last_line(r.out)));
      CHECK(rec["status"] == "ok");
      CHECK(rec["config"]["attn_params"]["causal"] == (std::string(causal) == "true"));
      CHECK(std::isfinite(rec["metrics"]["test_loss"].get<double>()));
    }
  // Causal attention with CLS pooling is a model whose classifier never sees the input: an error that says so.
  const CliResult r = run_lra(fmt::format(fmt::runtime(tiny(d)), "softmax") + " --set causal=true");
  CHECK(r.rc != 0);
  CHECK(r.err.find("classifier_pool=MEAN") != std::string::npos);
}

TEST_CASE("cli: the same seed and thread count give the same numbers run after run", "[cli]") {
  TempDir d("repeat");
  std::vector<nlohmann::json> records;
  for (int i = 0; i < 2; ++i) {
    const CliResult r = run_lra(fmt::format(fmt::runtime(tiny(d, 2)), "cosformer") + " --seed 3");
    REQUIRE(r.rc == 0);
    records.push_back(nlohmann::json::parse(read_file(last_line(r.out))));
  }
  CHECK(records[0]["curve"].size() == records[1]["curve"].size());
  for (size_t i = 0; i < records[0]["curve"].size(); ++i) {
    CHECK(records[0]["curve"][i]["loss"] == records[1]["curve"][i]["loss"]);
    CHECK(records[0]["curve"][i]["val_loss"] == records[1]["curve"][i]["val_loss"]);
  }
  CHECK(records[0]["metrics"]["test_loss"] == records[1]["metrics"]["test_loss"]);
}

TEST_CASE("cli: bad input fails with a clear message", "[cli]") {
  TempDir d("bad");
  CliResult r = run_lra("run --attn flash");
  CHECK(r.rc != 0);
  CHECK(r.err.find("softmax") != std::string::npos);
  r = run_lra(fmt::format("run --out {}/runs --set no_such_key=1", d.path));
  CHECK(r.rc != 0);
  CHECK(r.err.find("unknown config key 'no_such_key'") != std::string::npos);
  // Written for people: the message, not the internal check and its source file, unless debugging.
  CHECK(r.err.find("check `") == std::string::npos);
  CHECK(r.err.find(".cpp:") == std::string::npos);
  const std::string bin = LRA_BIN;
  for (const std::string& debug : {"env LRA_DEBUG=1 " + bin + " run", bin + " --debug run"}) {
    const auto [rc, err] =
        run_command(fmt::format("{} --out {}/runs --set no_such_key=1 2>&1 >/dev/null", debug, d.path));
    CHECK(rc == 1);
    CHECK(err.find("unknown config key 'no_such_key'") != std::string::npos);
    CHECK(err.find("failed at ") != std::string::npos);
    CHECK(err.find(".cpp:") != std::string::npos);
  }
  r = run_lra(fmt::format("run --data-dir {}/nowhere --out {}/runs --cache-dir {}/cache --steps 1", d.path, d.path, d.path));
  CHECK(r.rc == 1);
  CHECK(r.err.find("nowhere") != std::string::npos);
  const auto rec = nlohmann::json::parse(read_file(last_line(r.out)));  // the failed run has a record
  CHECK(rec["status"] == "failed");
  CHECK(rec["error"].get<std::string>().find("nowhere") != std::string::npos);
  CHECK(rec["error"].get<std::string>().find("check `") == std::string::npos);
  r = run_lra("run --resume /nonexistent/run.ckpt");
  CHECK(r.rc != 0);
  CHECK(r.err.find("/nonexistent/run.ckpt") != std::string::npos);
}

TEST_CASE("cli: a run that goes non-finite stops, naming the step, the cause and the last good checkpoint",
          "[cli][nonfinite]") {
  TempDir d("nonfinite");
  // A learning rate of 1e30 blows the weights up at the first update; an evaluation (and a checkpoint)
  // after every step.
  std::string args = fmt::format(fmt::runtime(tiny(d)), "softmax") + " --lr 1e30";
  args.replace(args.find("--eval-every 3"), 14, "--eval-every 1");
  const CliResult r = run_lra(args);
  CHECK(r.rc == 1);
  CHECK_THAT(r.err, Catch::Matchers::Contains("lower learning_rate (--lr)"));
  const auto rec = nlohmann::json::parse(read_file(last_line(r.out)));
  CHECK(rec["status"] == "failed");
  const auto& nf = rec.at("non_finite");
  INFO(nf.dump());
  const int64_t step = nf.at("step").get<int64_t>();
  CHECK(step >= 1);
  CHECK(nf.at("checkpoint_step") == step);  // checkpointed after every evaluation: the last good step
  const std::string ckpt = nf.at("checkpoint").get<std::string>();
  CHECK(std::filesystem::exists(ckpt));
  CHECK_THAT(r.err, Catch::Matchers::Contains(fmt::format("The last good checkpoint is '{}' (step {})", ckpt, step)));
  if (nf["what"] == "loss") {
    CHECK_THAT(r.err, Catch::Matchers::Contains(fmt::format("the training loss became {} at step {}",
                                                            nf["value"].get<std::string>(), step)));
  } else {
    REQUIRE(nf["what"] == "gradient");
    CHECK_THAT(r.err, Catch::Matchers::Contains("the first parameter the backward pass left non-finite is " +
                                                nf["parameter"].get<std::string>()));
  }
}

TEST_CASE("cli: lra list and lra bench train", "[cli]") {
  CliResult r = run_lra("list attn");
  CHECK(r.rc == 0);
  CHECK(r.out.find("softmax") != std::string::npos);
  CHECK(r.out.find("cosformer") != std::string::npos);
  CHECK(r.out.find("--set eps=") != std::string::npos);
  CHECK(r.out.find("runs on: cpu") != std::string::npos);
  // Which devices each variant runs on comes from the device registry: every variant runs on the CPU.
  r = run_lra("list attn --json");
  REQUIRE(r.rc == 0);
  for (const auto& a : nlohmann::json::parse(r.out)) {
    const auto devices = a.at("devices").get<std::vector<std::string>>();
    CHECK(std::find(devices.begin(), devices.end(), "cpu") != devices.end());
  }
  r = run_lra("list tasks --json");
  CHECK(r.rc == 0);
  CHECK(nlohmann::json::parse(r.out)[0]["name"] == "listops");
  r = run_lra("bench train --attn cosformer --len 64 --batch 2 --dim 16 --heads 2 --layers 1 --mlp 16 --steps 2 --warmup 1 --threads 1 --json");
  REQUIRE(r.rc == 0);
  const auto j = nlohmann::json::parse(r.out);
  for (const char* key : {"attn", "len", "batch", "ms_per_step_median", "ms_per_step_min", "ms_per_step_max",
                          "peak_arena_bytes", "peak_rss_bytes", "attn_params"})
    CHECK(j.contains(key));
  CHECK_FALSE(j.contains("breakdown"));
  // --breakdown: every phase of the step, which with the optimizer and the rest add up to the mean step.
  r = run_lra("bench train --attn softmax --len 64 --batch 2 --dim 16 --heads 2 --layers 1 --mlp 16 --steps 2 "
              "--warmup 1 --threads 1 --json --breakdown");
  REQUIRE(r.rc == 0);
  const auto b = nlohmann::json::parse(r.out).at("breakdown");
  REQUIRE(b.at("phases").size() == 8);
  double sum = b.at("optimizer").get<double>() + b.at("other").get<double>();
  for (const auto& [name, ms] : b.at("phases").items()) {
    INFO(name);
    CHECK(ms.get<double>() >= 0.0);
    sum += ms.get<double>();
  }
  CHECK(b.at("phases").at("attention bwd").get<double>() > 0.0);
  CHECK(sum == Approx(b.at("ms_per_step_mean").get<double>()));
  r = run_lra("bench train --attn softmax --len 64 --batch 2 --dim 16 --heads 2 --layers 1 --mlp 16 --steps 1 "
              "--warmup 0 --threads 1 --breakdown");
  REQUIRE(r.rc == 0);
  CHECK_THAT(r.out, Catch::Matchers::Contains("attention fwd") && Catch::Matchers::Contains("optimizer"));
}

TEST_CASE("cli: lra bench attn", "[cli]") {
  const std::string small = "bench attn --lengths 64,128 --batch 2 --heads 2 --dim 16 --steps 1 --warmup 0 --threads 1";
  auto json_lines = [](const std::string& out) {
    std::vector<nlohmann::json> rows;
    size_t start = 0;
    while (start < out.size()) {
      const size_t nl = std::min(out.find('\n', start), out.size());
      if (nl > start) rows.push_back(nlohmann::json::parse(out.substr(start, nl - start)));
      start = nl + 1;
    }
    return rows;
  };
  CliResult r = run_lra(small + " --attn softmax,linear,cosformer --json");
  INFO(r.err);
  REQUIRE(r.rc == 0);
  auto rows = json_lines(r.out);
  REQUIRE(rows.size() == 6);
  for (const auto& j : rows) {
    for (const char* key : {"attn", "len", "batch", "heads", "dim", "mode", "causal", "threads", "steps", "ms_median",
                            "ms_min", "ms_max", "peak_arena_bytes", "max_rel_err", "mean_rel_err", "attn_params",
                            "speed_vs_softmax", "memory_vs_softmax"})
      CHECK(j.contains(key));
    CHECK(j["mode"] == "fwdbwd");
    CHECK(j["causal"] == false);
    CHECK(j["peak_arena_bytes"].get<double>() > 0);
    CHECK(j["ms_min"].get<double>() <= j["ms_median"].get<double>());
    CHECK(j["ms_median"].get<double>() <= j["ms_max"].get<double>());
    CHECK(j["speed_vs_softmax"].get<double>() > 0);
    const double mx = j["max_rel_err"], mean = j["mean_rel_err"];
    if (j["attn"] == "softmax") {
      CHECK(mx == 0.0);
      CHECK(mean == 0.0);
      CHECK(j["memory_vs_softmax"].get<double>() == 1.0);
    } else {
      CHECK(std::isfinite(mx));
      CHECK(mean > 0.0);
      CHECK(mean <= mx);
    }
    CHECK(j["attn_params"].contains("causal"));
    // The roofline: the attention alone, read against the ceilings' times for its least work.
    CHECK(j["attn_ms_median"].get<double>() > 0);
    CHECK(j["attn_ms"].size() == 1);
    CHECK(j["gemm_bound_ms"].get<double>() > 0);
    CHECK(j["bandwidth_bound_ms"].get<double>() > 0);
    CHECK(j["attn_vs_gemm_bound"].get<double>() ==
          Approx(j["attn_ms_median"].get<double>() / j["gemm_bound_ms"].get<double>()));
    CHECK(j["attn_vs_bandwidth_bound"].get<double>() ==
          Approx(j["attn_ms_median"].get<double>() / j["bandwidth_bound_ms"].get<double>()));
  }
  CHECK(rows[0]["attn"] == "softmax");
  CHECK(rows[0]["len"] == 64);
  CHECK(rows[5]["attn"] == "cosformer");
  CHECK(rows[5]["len"] == 128);
  CHECK(rows[2]["attn_params"].contains("eps"));

  // Forward only, causal, no softmax among the variants: no ratios, errors still against causal softmax.
  // Without the roofline: no attention-alone times.
  r = run_lra(small + " --attn linear --mode fwd --causal --json --no-roofline");
  REQUIRE(r.rc == 0);
  rows = json_lines(r.out);
  REQUIRE(rows.size() == 2);
  for (const auto& j : rows) {
    CHECK(j["mode"] == "fwd");
    CHECK(j["causal"] == true);
    CHECK(j["attn_params"]["causal"] == true);
    CHECK(j["speed_vs_softmax"].is_null());
    CHECK(j["memory_vs_softmax"].is_null());
    CHECK(j["peak_arena_bytes"].get<double>() > 0);
    CHECK(j["mean_rel_err"].get<double>() > 0);
    CHECK(j["attn_ms_median"].is_null());
    CHECK(j["attn_vs_gemm_bound"].is_null());
  }

  // A bench record, and the table on stdout.
  TempDir d("bench-attn");
  const std::string path = d / "attn.json";
  r = run_lra(small + " --attn softmax,cosformer --set eps=1e-5 --out " + path);
  REQUIRE(r.rc == 0);
  CHECK(r.out.find("x faster than softmax") != std::string::npos);
  CHECK(r.out.find("x less than softmax") != std::string::npos);
  const auto rec = nlohmann::json::parse(read_file(path));
  CHECK(rec["kind"] == "bench_attn");
  CHECK(rec["schema_version"] == kRecordSchemaVersion);
  CHECK(rec["rows"].size() == 4);
  CHECK(rec["env"].contains("cpu"));
  CHECK(rec["config"]["lengths"] == nlohmann::json{64, 128});
  CHECK(rec["rows"][1]["attn_params"]["eps"] == 1e-5);  // cosformer at L=64
  CHECK(!rec["rows"][0]["attn_params"].contains("eps"));  // softmax has no eps: the key skips it
  CHECK(r.out.find("ceilings: GEMM 1024^3") != std::string::npos);
  CHECK(r.out.find("attention alone") != std::string::npos);
  // The ceilings, and the bounds they give: 12 B L^2 D flops and 12 B L D floats for fwdbwd at B 2, D 16.
  const auto& rf = rec["roofline"];
  CHECK(rf["gemm_n"] == 1024);
  CHECK(rf["stream_floats"] == (1 << 24));
  for (const auto& row : rec["rows"]) {
    const double L = row["len"].get<double>();
    CHECK(row["gemm_bound_ms"].get<double>() * 1e-3 * rf["gemm_tflops"].get<double>() * 1e12 ==
          Approx(12.0 * 2 * L * L * 16));
    CHECK(row["bandwidth_bound_ms"].get<double>() * 1e-3 * rf["stream_gb_per_s"].get<double>() * 1e9 ==
          Approx(12.0 * 2 * L * 16 * 4));
  }

  // Bad input.
  r = run_lra(small + " --attn nosuch");
  CHECK(r.rc != 0);
  CHECK(r.err.find("nosuch") != std::string::npos);
  CHECK(r.err.find("softmax") != std::string::npos);
  r = run_lra(small + " --attn softmax,linear --set nosuch=1");
  CHECK(r.rc != 0);
  CHECK(r.err.find("'nosuch'") != std::string::npos);
  CHECK(r.err.find("linear") != std::string::npos);
  r = run_lra(small + " --mode backward");
  CHECK(r.rc != 0);
  CHECK(r.err.find("--mode") != std::string::npos);
  r = run_lra("bench attn --lengths 64,0 --dim 16 --heads 2");
  CHECK(r.rc != 0);
  CHECK(r.err.find("--lengths") != std::string::npos);
  r = run_lra("bench attn --lengths 64 --dim 18 --heads 4");
  CHECK(r.rc != 0);
  CHECK(r.err.find("divisible") != std::string::npos);
  r = run_lra(small + " --attn softmax --out " + d.path + "/no/such/dir/x.json");
  CHECK(r.rc != 0);
  CHECK(r.err.find("no/such/dir") != std::string::npos);
}

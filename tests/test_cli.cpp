// The CLI end to end, through the built `lra` binary: a tiny run writes a complete record; a run
// stopped and resumed ends with the numbers of the uninterrupted run; bad input fails clearly.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "attn/attention.h"
#include "core/sys.h"
#include "results/record.h"
#include "test_util.h"

using namespace lra;
using lra::test::TempDir;

namespace {

struct Result {
  int rc;
  std::string out;  // stdout
  std::string err;  // stderr
};

Result run(const std::string& args) {
  const std::string err_file = fmt::format("{}/lra-cli-{}.err", std::filesystem::temp_directory_path().string(), getpid());
  const std::string cmd = fmt::format("{} {} 2>{}", LRA_BIN, args, err_file);
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  Result r{WIFEXITED(status) ? WEXITSTATUS(status) : -1, out, read_file(err_file)};
  std::remove(err_file.c_str());
  return r;
}

std::string last_line(const std::string& s) {
  std::string t = s;
  while (!t.empty() && t.back() == '\n') t.pop_back();
  const auto nl = t.rfind('\n');
  return nl == std::string::npos ? t : t.substr(nl + 1);
}

// A tiny model on a tiny generated ListOps set: seconds on one core.
std::string tiny(const TempDir& d, int threads = 1) {
  return fmt::format(
      "run --task listops --attn {{}} --steps 8 --eval-every 3 --threads {1} --out {0}/runs --cache-dir {0}/cache "
      "--set n_train=48 --set n_val=12 --set n_test=12 --set emb_dim=16 --set qkv_dim=16 --set mlp_dim=16 "
      "--set num_heads=2 --set num_layers=1 --set batch_size=8 --set warmup=2",
      d.path, threads);
}

}  // namespace

TEST_CASE("cli: a tiny run writes a record with every key", "[cli]") {
  TempDir d("tiny");
  for (const char* attn : {"softmax", "cosformer"}) {
    const Result r = run(fmt::format(fmt::runtime(tiny(d)), attn));
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
    const Result full = run(fmt::format(fmt::runtime(tiny(d)), attn) + " --seed 5");
    REQUIRE(full.rc == 0);
    const Result part = run(fmt::format(fmt::runtime(tiny(d)), attn) + " --seed 5 --stop-after 4");
    REQUIRE(part.rc == 0);
    const auto stopped = nlohmann::json::parse(read_file(last_line(part.out)));
    REQUIRE(stopped["status"] == "interrupted");
    const std::string ckpt = stopped["checkpoint"];
    REQUIRE(std::filesystem::exists(ckpt));
    const Result resumed = run(fmt::format("run --resume {} --threads 1 --out {}/runs --cache-dir {}/cache", ckpt, d.path, d.path));
    INFO(resumed.err);
    REQUIRE(resumed.rc == 0);
    const auto a = nlohmann::json::parse(read_file(last_line(full.out)));
    const auto b = nlohmann::json::parse(read_file(last_line(resumed.out)));
    CHECK(b["status"] == "ok");
    CHECK(b["resumed_from_step"] == 4);
    CHECK(b["metrics"]["test_accuracy"] == a["metrics"]["test_accuracy"]);
    CHECK(b["metrics"]["test_loss"] == a["metrics"]["test_loss"]);
    REQUIRE(b["curve"].size() == a["curve"].size());
    for (size_t i = 0; i < a["curve"].size(); ++i) {
      CHECK(b["curve"][i]["loss"] == a["curve"][i]["loss"]);
      CHECK(b["curve"][i]["val_accuracy"] == a["curve"][i]["val_accuracy"]);
    }
    CHECK(run(fmt::format("run --resume {} --steps 3", ckpt)).err.find("cannot be combined with --resume") != std::string::npos);
  }
}

TEST_CASE("cli: every attention variant trains, bidirectional and causal", "[cli]") {
  TempDir d("variants");
  for (const auto& attn : attention_names())
    for (const char* causal : {"false", "true"}) {
      INFO(attn << " causal=" << causal);
      const Result r = run(fmt::format(fmt::runtime(tiny(d)), attn) + " --set causal=" + causal);
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
}

TEST_CASE("cli: the same seed and thread count give the same numbers run after run", "[cli]") {
  TempDir d("repeat");
  std::vector<nlohmann::json> records;
  for (int i = 0; i < 2; ++i) {
    const Result r = run(fmt::format(fmt::runtime(tiny(d, 2)), "cosformer") + " --seed 3");
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
  Result r = run("run --attn flash");
  CHECK(r.rc != 0);
  CHECK(r.err.find("softmax") != std::string::npos);
  r = run(fmt::format("run --out {}/runs --set no_such_key=1", d.path));
  CHECK(r.rc != 0);
  CHECK(r.err.find("unknown config key 'no_such_key'") != std::string::npos);
  r = run(fmt::format("run --data-dir {}/nowhere --out {}/runs --cache-dir {}/cache --steps 1", d.path, d.path, d.path));
  CHECK(r.rc == 1);
  CHECK(r.err.find("nowhere") != std::string::npos);
  const auto rec = nlohmann::json::parse(read_file(last_line(r.out)));  // the failed run has a record
  CHECK(rec["status"] == "failed");
  CHECK(rec["error"].get<std::string>().find("nowhere") != std::string::npos);
  r = run("run --resume /nonexistent/run.ckpt");
  CHECK(r.rc != 0);
  CHECK(r.err.find("/nonexistent/run.ckpt") != std::string::npos);
}

TEST_CASE("cli: lra list and lra bench train", "[cli]") {
  Result r = run("list attn");
  CHECK(r.rc == 0);
  CHECK(r.out.find("softmax") != std::string::npos);
  CHECK(r.out.find("cosformer") != std::string::npos);
  CHECK(r.out.find("--set eps=") != std::string::npos);
  r = run("list tasks --json");
  CHECK(r.rc == 0);
  CHECK(nlohmann::json::parse(r.out)[0]["name"] == "listops");
  r = run("bench train --attn cosformer --len 64 --batch 2 --dim 16 --heads 2 --layers 1 --mlp 16 --steps 2 --warmup 1 --threads 1 --json");
  REQUIRE(r.rc == 0);
  const auto j = nlohmann::json::parse(r.out);
  for (const char* key : {"attn", "len", "batch", "ms_per_step_median", "ms_per_step_min", "ms_per_step_max",
                          "peak_arena_bytes", "peak_rss_bytes"})
    CHECK(j.contains(key));
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
  Result r = run(small + " --attn softmax,linear,cosformer --json");
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
  }
  CHECK(rows[0]["attn"] == "softmax");
  CHECK(rows[0]["len"] == 64);
  CHECK(rows[5]["attn"] == "cosformer");
  CHECK(rows[5]["len"] == 128);
  CHECK(rows[2]["attn_params"].contains("eps"));

  // Forward only, causal, no softmax among the variants: no ratios, errors still against causal softmax.
  r = run(small + " --attn linear --mode fwd --causal --json");
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
  }

  // A bench record, and the table on stdout.
  TempDir d("bench-attn");
  const std::string path = d / "attn.json";
  r = run(small + " --attn softmax,cosformer --set eps=1e-5 --out " + path);
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

  // Bad input.
  r = run(small + " --attn nosuch");
  CHECK(r.rc != 0);
  CHECK(r.err.find("nosuch") != std::string::npos);
  CHECK(r.err.find("softmax") != std::string::npos);
  r = run(small + " --attn softmax,linear --set nosuch=1");
  CHECK(r.rc != 0);
  CHECK(r.err.find("'nosuch'") != std::string::npos);
  CHECK(r.err.find("linear") != std::string::npos);
  r = run(small + " --mode backward");
  CHECK(r.rc != 0);
  CHECK(r.err.find("--mode") != std::string::npos);
  r = run("bench attn --lengths 64,0 --dim 16 --heads 2");
  CHECK(r.rc != 0);
  CHECK(r.err.find("--lengths") != std::string::npos);
  r = run("bench attn --lengths 64 --dim 18 --heads 4");
  CHECK(r.rc != 0);
  CHECK(r.err.find("divisible") != std::string::npos);
  r = run(small + " --attn softmax --out " + d.path + "/no/such/dir/x.json");
  CHECK(r.rc != 0);
  CHECK(r.err.find("no/such/dir") != std::string::npos);
}

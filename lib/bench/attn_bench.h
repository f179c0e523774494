// The measurement behind `lra bench attn`, shared with `lra reproduce --table lra-efficiency`: one attention
// layer (qkv projection, attention, output projection), forward or forward + backward, per variant and
// sequence length, on the same random inputs, with the peak of its planned arenas and the error of its
// attention output against exact softmax. The result is the bench record `lra report` reads.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace lra {

// What to measure, as the command line gives it (comma-separated lists, key=value settings).
struct AttnBenchRequest {
  std::string attn = "all";                     // comma-separated registry names, or all
  std::string lengths = "1024,2048,3072,4096";  // comma-separated sequence lengths L
  int batch = 8;
  int heads = 4;
  int dim = 128;                // D = qkv_dim; head size D / H
  std::string mode = "fwdbwd";  // fwd or fwdbwd
  std::string device = "cpu";
  bool causal = false;
  int threads = 0;
  int steps = 5;
  int warmup = 1;
  std::vector<std::string> sets;
  uint64_t seed = 0;
};

// A request checked and resolved: the variants, each one's hyperparameters, the lengths.
struct AttnBenchPlan {
  AttnBenchRequest req;
  std::vector<std::string> names;
  std::vector<nlohmann::json> hps;  // per variant, resolved
  std::vector<int> lengths;
  bool causal = false;
  nlohmann::json sets = nlohmann::json::object();  // the --set values that applied (causal included)
};

// Validates everything before anything is measured; throws naming the option at fault and what to give.
AttnBenchPlan plan_attn_bench(const AttnBenchRequest& req);

struct AttnBenchRow {
  std::string attn;
  int len = 0;
  nlohmann::json hp;
  std::vector<double> ms;
  double median = 0, lo = 0, hi = 0;
  size_t peak = 0;
  nlohmann::json memory;
  double max_err = 0, mean_err = 0;
};

struct AttnBenchResult {
  nlohmann::json env;  // env_json plus the GPU, where there is one
  int threads = 0;
  std::vector<std::vector<AttnBenchRow>> table;   // [length][variant]
  nlohmann::json rows = nlohmann::json::array();  // the record's rows, length-major
};

// Measures every (length, variant) of the plan. `progress` (may be empty) gets a short note before each
// measurement; `on_row` (may be empty) gets each row's JSON as soon as its length is done.
AttnBenchResult run_attn_bench(const AttnBenchPlan& plan, const std::function<void(const std::string&)>& progress,
                               const std::function<void(const nlohmann::json&)>& on_row);

// The bench record (kind "bench_attn"); `extra_config` adds keys to its config (the CLI's own options).
nlohmann::json attn_bench_record(const AttnBenchPlan& plan, const AttnBenchResult& result,
                                 const nlohmann::json& extra_config);

}  // namespace lra

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
  // Also measure the device's ceilings (Roofline) and time the attention alone against them.
  bool roofline = true;
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

// The device's ceilings, measured once per run through the backend's own ops, each the median of the
// run's warm-up + steps repetitions: an n x n x n fp32 GEMM (linear_forward: cuBLAS or Eigen, 2 n^3 flops)
// and a streaming element-wise op over `stream_floats` floats (relu_forward: one read and one write each).
struct Roofline {
  int gemm_n = 0;
  double gemm_ms = 0, gemm_flops_per_s = 0;
  int64_t stream_floats = 0;
  double stream_ms = 0, stream_bytes_per_s = 0;
};

// The least work any attention call does on B x L rows of width D (no projections), the measure the
// Roofline reads a time against:
//   flops: exact softmax attention's matrix products, 2 B P D each, P = L^2 (causal: L (L+1) / 2) key-query
//          pairs: Q K^T and P V forward (4 B P D), dV, dP, dQ, dK backward (8 B P D more);
//   bytes: its inputs and outputs once, 4-byte floats: q, k, v, out forward (4 B L D floats); q, k, v, out,
//          dout, dq, dk, dv backward (8 B L D more).
double attention_flops(int B, int L, int D, bool causal, bool backward);
double attention_bytes(int B, int L, int D, bool backward);

struct AttnBenchRow {
  std::string attn;
  int len = 0;
  nlohmann::json hp;
  std::vector<double> ms;
  double median = 0, lo = 0, hi = 0;
  size_t peak = 0;
  nlohmann::json memory;
  double max_err = 0, mean_err = 0;
  // With the roofline: the attention alone (no projections), and the times the ceilings allow its work.
  std::vector<double> attn_ms;
  double attn_median = 0;
  double gemm_bound_ms = 0;       // attention_flops at the GEMM's rate
  double bandwidth_bound_ms = 0;  // attention_bytes at the stream's rate
};

struct AttnBenchResult {
  nlohmann::json env;  // env_json plus the GPU, where there is one
  bool has_roofline = false;
  Roofline roofline;
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

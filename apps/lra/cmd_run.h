// `lra run`: train one model on one task and write its run record.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace lra {

struct RunOptions {
  std::string task = "listops";
  std::string attn = "softmax";
  std::string preset = "cpu";
  std::string device = "cpu";
  std::string config_file;
  std::vector<std::string> sets;
  int64_t steps = 0;
  int batch = 0;
  double lr = 0.0;
  uint64_t seed = 0;
  int threads = 0;
  int64_t eval_every = 0;
  std::string data_dir;
  std::string cache_dir;
  std::string out = "results/runs";
  std::string resume;
  int64_t stop_after = 0;
  bool keep_checkpoint = false;
  bool quiet = false;
};

void setup_run(CLI::App& app, RunOptions& opt);
int run_run(const RunOptions& opt, const CLI::App& sub);

}  // namespace lra

// `lra reproduce --table lra-accuracy|lra-efficiency`: plans the grid of one of the paper's tables, lists
// what --out already holds and what will run (--dry-run stops there), runs the missing cells one after
// another (each a normal run or bench record; a failed cell is recorded and the grid goes on; Ctrl-C
// stops after the current cell's checkpoint), and ends by writing the table with the paper's beside it.
// Exit status: 0, 1 when a cell failed (the table is written all the same), 130 when interrupted.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace lra {

struct ReproduceOptions {
  std::string table = "lra-accuracy";
  std::string preset = "cpu";
  int seeds = 1;
  std::vector<std::string> tasks;
  std::vector<std::string> attns;
  std::vector<std::string> sets;
  std::string device = "cpu";
  int threads = 0;
  std::string out = "results/runs";
  std::string report_dir = "results/report";
  std::string data_dir;
  std::string cache_dir;
  std::string published;
  bool dry_run = false;
  bool quiet = false;
};

void setup_reproduce(CLI::App& app, ReproduceOptions& opt);
int run_reproduce(const ReproduceOptions& opt, const CLI::App& sub);

}  // namespace lra

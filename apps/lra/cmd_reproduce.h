// `lra reproduce --table lra-accuracy|lra-efficiency`: plans the grid of one of the paper's tables, lists
// what --out already holds and what will run (--dry-run stops there), runs the missing cells (each a
// normal run or bench record; a failed cell is recorded and the grid goes on; a stop signal stops after
// the current cell's checkpoint), and ends by writing the table with the paper's beside it. Accuracy
// cells are claimed in --out (runner/claims.h), so any number of lra reproduce processes, here or on
// other machines, share one grid; --shard splits it without claims' help; --slurm writes (and --submit
// submits) a Slurm job array of --workers workers and a report job (runner/slurm.h).
// Exit status: 0, 1 when a cell failed (the table is written all the same), 128 + the signal when stopped
// by one (130 SIGINT, 143 SIGTERM, 138 SIGUSR1), 3 when a worker's claim was taken over.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "runner/slurm.h"

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
  // Workers and clusters.
  bool worker = false;       // pull cells until none is free, write no table (a Slurm array's task)
  bool report_only = false;  // write the table from what --out holds, run nothing (the report job)
  std::string shard;         // "K/N"
  double claim_timeout = 600;
  std::string retry_failed_before;
  bool slurm = false, submit = false;
  SlurmOptions job;  // --workers and the resources of --slurm's job array
};

// The exit status of a worker whose claim on a cell was taken over by another worker.
constexpr int kClaimLostExitCode = 3;

void setup_reproduce(CLI::App& app, ReproduceOptions& opt);
int run_reproduce(const ReproduceOptions& opt, const CLI::App& sub);

}  // namespace lra

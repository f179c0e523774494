// A worker of an accuracy grid: it plans the grid from its records folder, claims a cell that is left
// (runner/claims.h), plans that cell again now that it holds it (another worker may have finished it),
// runs or resumes it, writes its record, releases it, and goes on until no cell is left to it. Any
// number of workers, started together or late, on one machine or many, run each cell once. A stop
// signal ends the current cell with its checkpoint and an interrupted record (train/trainer.h), which
// the next worker resumes.
#pragma once

#include <functional>
#include <string>

#include "runner/reproduce.h"

namespace lra {

struct WorkerOptions {
  std::string out, data_dir, cache_dir;  // --out, --data-dir, --cache-dir
  int threads = 0;
  bool progress = true;
  double claim_timeout_s = 600;
  Shard shard;  // the cells this worker may take
  // true: while other workers hold cells it waits for them (taking over any whose worker dies) before
  // it returns; false (a Slurm array's workers, whose dead tasks Slurm requeues): returns once nothing
  // is free to claim.
  bool wait_for_others = true;
  // Failed runs started at or after this time are not retried (GridActivity); "" = when the worker starts.
  std::string retry_failed_before;
  // Called when a claim of this worker is found taken over (it was stopped for longer than the claim
  // timeout and the cell is another worker's now): it must end the process without writing anything.
  std::function<void()> on_lost_claim;
};

struct WorkerResult {
  int ran = 0, failed = 0;
  bool interrupted = false;
  int left = 0;  // when interrupted: the cells of its shard not done
};

// Runs cells of `req` until none is left to this worker (or a stop signal). Prints each cell's start and
// result to stdout.
WorkerResult run_accuracy_worker(const GridRequest& req, const WorkerOptions& opt);

// What --out holds for the grid now: records, orphan checkpoints and claims (but the claim on `own_key`,
// the caller's), planned. print_skipped: name the records and checkpoints that cannot be read.
std::vector<AccuracyCellPlan> plan_from_folder(const GridRequest& req, const std::string& out,
                                               const ClaimFolder& claims, const std::string& retry_failed_before,
                                               bool print_skipped, const std::string& own_key = "");

}  // namespace lra

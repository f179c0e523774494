// `lra reproduce`: the grid of cells behind one of the paper's tables, what of it already exists in a
// folder of records, and how each missing cell is run. Accuracy cells are (task, variant, seed) training
// runs; efficiency cells are one variant's `lra bench attn` measurement at LRA's lengths (1K-4K).
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/attn_bench.h"
#include "results/collection.h"
#include "runner/claims.h"
#include "train/config.h"

namespace lra {

struct GridRequest {
  std::string preset = "cpu";
  int seeds = 1;
  std::vector<std::string> tasks;  // empty = every registered task (accuracy only)
  std::vector<std::string> attns;  // empty = every registered variant
  std::vector<std::string> sets;   // key=value, applied to every cell where the key is valid
  std::string device = "cpu";
  int threads = 0;
};

// Done: an ok record holds it. Running: a live claim of some worker holds it. Resume: an interrupted
// record's or an orphan's checkpoint continues it. Failed: it failed in this grid's run (after
// retry_failed_before) and is not run again until a later lra reproduce. Retry: it failed before and
// runs again. Run: nothing of it exists.
enum class CellState { Done, Running, Resume, Failed, Retry, Run };
const char* cell_state_name(CellState s);  // "done", "running", "resume", "failed", "retry", "run"
bool cell_to_run(CellState s);            // Resume, Retry and Run: what a worker takes

struct AccuracyCellPlan {
  std::string task, attn;
  uint64_t seed = 0;
  RunConfig config;  // what the cell runs (threads not included)
  CellState state = CellState::Run;
  std::string existing;  // Done: the ok record; Resume: the checkpoint; Failed, Retry: the failed record
  std::string note;      // e.g. the earlier error, the claim's holder, records of the cell with other settings
  std::string key;       // the cell's name in the claims folder: task.attn.preset.seedN.<hash of the config>
};

// A checkpoint under the records folder whose run left no record: what a run killed without the chance to
// write one leaves (SIGKILL, the OOM killer, a node failure).
struct OrphanCheckpoint {
  std::string path;
  nlohmann::json meta;  // load_checkpoint_meta: run_id, config, step, started_at, ...
};
struct OrphanScan {
  std::vector<OrphanCheckpoint> orphans;
  std::vector<std::string> skipped;  // "PATH: why", for .ckpt files that cannot be read
};
// The *.ckpt files under `dir` (recursively) whose run_id no record in `records` has.
OrphanScan find_orphan_checkpoints(const std::string& dir, const RecordSet& records);

// Besides the records, what the workers of a grid are doing or left behind in --out.
struct GridActivity {
  std::vector<OrphanCheckpoint> orphans;
  std::map<std::string, ClaimInfo> claims;  // by cell key (ClaimFolder::scan)
  // Failed runs that ended at or after this time (ISO 8601, UTC; their start where a record has no end)
  // failed in this grid's run: Failed, not retried. "" retries every failed cell.
  std::string retry_failed_before;
};

// Every (task, variant, seed) cell in that order, each with what --out already holds for it. A cell is
// done when an ok record of the same task, variant, preset and seed has the cell's config
// (config_matches); running while a live claim holds it; resumed from the latest checkpoint of that
// config, when an interrupted record's checkpoint exists or an orphan checkpoint is there; failed or run
// again when its records failed. A --set key that no cell takes throws.
std::vector<AccuracyCellPlan> plan_accuracy_grid(const GridRequest& req, const RecordSet& existing,
                                                 const GridActivity& activity = {});

// The cells a worker of shard `index` of `count` takes: cell i of the grid when i % count == index.
struct Shard {
  int index = 0, count = 1;
  bool holds(size_t cell) const { return static_cast<int>(cell % static_cast<size_t>(count)) == index; }
};
// "K/N" with 0 <= K < N; throws naming the flag otherwise.
Shard parse_shard(const std::string& s);
// The shard of a Slurm array task (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN of SLURM_ARRAY_TASK_COUNT),
// or the whole grid outside an array.
Shard shard_from_slurm_env();

struct EfficiencyCellPlan {
  std::string attn;
  AttnBenchPlan bench;  // what the cell measures (this variant alone)
  CellState state = CellState::Run;
  std::string existing;  // Done: the bench record holding it
};

// The bench settings of a preset: cpu = B 8, H 4, D 128 (one layer in seconds on a laptop); paper = B 32,
// H 4, D 256 (LRA's Text config, which its Table 2 measured); both forward + backward at 1K, 2K, 3K, 4K.
AttnBenchRequest efficiency_request(const GridRequest& req);

// One cell per variant, softmax first (the reference of every ratio). A cell is done when a bench record
// measured on this CPU with the same settings has the variant at every length.
std::vector<EfficiencyCellPlan> plan_efficiency_grid(const GridRequest& req, const RecordSet& existing);

// Whether bench row `row` (with its record's env) is the measurement of the plan's variant `variant` on this
// CPU with `threads` threads.
bool bench_row_matches(const nlohmann::json& row, const nlohmann::json& env, const AttnBenchPlan& plan, size_t variant,
                       int threads);

}  // namespace lra

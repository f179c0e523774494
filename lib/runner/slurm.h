// A grid as a Slurm job array: one batch script whose every task runs `lra reproduce ... --worker` (the
// workers claim cells in the shared --out folder until none is free), and one report job that runs after
// the whole array (afterany) and writes the table. The scripts run a copy of the lra binary and of the
// published tables made when the grid was planned, so a rebuild or an edit cannot change a running grid.
#pragma once

#include <string>
#include <vector>

namespace lra {

struct SlurmOptions {
  int workers = 1;  // array tasks
  std::string partition, time, account, mem;
  int cpus_per_task = 0, gpus_per_task = 0;  // 0: not asked for (the cluster's default)
  std::vector<std::string> sbatch_args;      // anything else, e.g. "--qos=high", into both scripts
  int signal_before_s = 300;                 // USR1 this long before the time limit: lra checkpoints
};

struct SlurmGrid {
  std::string dir;            // <out>/slurm/<table>-<time>/
  std::string lra;            // the copy of the binary the scripts run
  std::string published;      // the copy of the published tables
  std::string worker_script;  // workers.sbatch
  std::string report_script;  // report.sbatch
};

// The folder, the copies (of this running binary and of the folder `published`) and both scripts.
// `worker_args` are the `lra reproduce` arguments every worker and the report job share (the grid,
// --out, --report-dir, ...: absolute paths); `planned_at` (ISO 8601) goes to --retry-failed-before, so
// the array does not retry what fails in it.
SlurmGrid write_slurm_grid(const SlurmOptions& opt, const std::string& out, const std::string& table,
                           const std::string& published, const std::vector<std::string>& worker_args,
                           const std::string& planned_at);

struct SlurmSubmission {
  std::string array_job, report_job;
};
// sbatch of the workers, then of the report with --dependency=afterany:<array>. Throws with sbatch's
// own message when it fails (no Slurm, a bad partition, ...).
SlurmSubmission submit_slurm_grid(const SlurmGrid& grid);

}  // namespace lra

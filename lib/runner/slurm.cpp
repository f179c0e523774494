#include "runner/slurm.h"

#include <algorithm>
#include <filesystem>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/check.h"
#include "core/files.h"
#include "core/system.h"
#include "runner/claims.h"

namespace lra {

namespace fs = std::filesystem;

namespace {

std::string quoted(const std::vector<std::string>& args) {
  std::vector<std::string> q;
  for (const auto& a : args) q.push_back(shell_quote(a));
  return fmt::format("{}", fmt::join(q, " "));
}

// The #SBATCH lines both scripts share: the cluster's resources and the user's extra arguments.
std::string resource_lines(const SlurmOptions& opt, bool workers) {
  std::string s;
  if (!opt.partition.empty()) s += fmt::format("#SBATCH --partition={}\n", opt.partition);
  if (!opt.account.empty()) s += fmt::format("#SBATCH --account={}\n", opt.account);
  if (workers) {
    if (!opt.time.empty()) s += fmt::format("#SBATCH --time={}\n", opt.time);
    if (opt.cpus_per_task > 0) s += fmt::format("#SBATCH --cpus-per-task={}\n", opt.cpus_per_task);
    if (opt.gpus_per_task > 0) s += fmt::format("#SBATCH --gpus-per-task={}\n", opt.gpus_per_task);
    if (!opt.mem.empty()) s += fmt::format("#SBATCH --mem={}\n", opt.mem);
  }
  for (const auto& a : opt.sbatch_args) s += fmt::format("#SBATCH {}\n", a);
  return s;
}

std::string sbatch(const std::string& args) {
  const std::string cmd = "sbatch --parsable " + args;
  auto [rc, out] = run_command(cmd + " 2>&1");
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  LRA_CHECK(rc == 0, "`{}` failed (exit {}): {}", cmd, rc,
            rc == 127 ? "sbatch is not installed here; submit from a Slurm login node" : out);
  // --parsable prints "jobid" or "jobid;cluster" (after any warnings, on the last line).
  std::string id = out.substr(out.rfind('\n') == std::string::npos ? 0 : out.rfind('\n') + 1);
  id = id.substr(0, id.find(';'));
  LRA_CHECK(!id.empty() && id.find_first_not_of("0123456789") == std::string::npos,
            "`{}` printed '{}', not a job id", cmd, out);
  return id;
}

}  // namespace

SlurmGrid write_slurm_grid(const SlurmOptions& opt, const std::string& out, const std::string& table,
                           const std::string& published, const std::vector<std::string>& worker_args,
                           const std::string& planned_at) {
  LRA_CHECK(opt.workers >= 1, "--workers must be at least 1, got {}", opt.workers);
  LRA_CHECK(opt.signal_before_s >= 1, "--signal-before must be at least 1 second, got {}", opt.signal_before_s);
  std::string stamp = planned_at;
  stamp.erase(std::remove_if(stamp.begin(), stamp.end(), [](char c) { return c == '-' || c == ':'; }), stamp.end());
  SlurmGrid g;
  g.dir = fs::absolute(fs::path(out) / "slurm" / fmt::format("{}-{}", table, stamp)).lexically_normal().string();
  make_dirs(g.dir + "/logs");
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  LRA_CHECK(!ec, "cannot find this lra binary (/proc/self/exe): {}", ec.message());
  g.lra = g.dir + "/lra";
  fs::copy_file(self, g.lra, fs::copy_options::overwrite_existing, ec);
  LRA_CHECK(!ec, "cannot copy {} to {}: {}", self.string(), g.lra, ec.message());
  g.published = g.dir + "/published";
  fs::copy(published, g.published, fs::copy_options::recursive | fs::copy_options::overwrite_existing, ec);
  LRA_CHECK(!ec, "cannot copy the published tables {} to {}: {}", published, g.published, ec.message());

  std::vector<std::string> args = worker_args;
  args.insert(args.end(), {"--published", g.published});
  const std::string job = fmt::format("lra-{}-{}", table, stamp);
  g.worker_script = g.dir + "/workers.sbatch";
  write_file_atomic(
      g.worker_script,
      fmt::format(R"SH(#!/bin/bash
# lra reproduce {table}, planned {planned} on {host}: {workers} worker(s) over the cells in {out}.
#SBATCH --job-name={job}
#SBATCH --array=0-{last}
#SBATCH --requeue
#SBATCH --signal=B:USR1@{signal}
#SBATCH --open-mode=append
#SBATCH --output={dir}/logs/worker-%A_%a.log
{resources}
# Every task is one worker: it claims a free cell in {out}/claims, runs or resumes it, and goes on until no
# cell is free. USR1 (Slurm's warning, {signal} s before the time limit) goes on to lra, which checkpoints
# its cell, records it interrupted, releases it and exits 138; the task then requeues itself, and the cell
# resumes in whichever worker claims it next. SIGTERM (scancel, preemption) reaches lra from Slurm itself;
# this shell only waits for it to finish its checkpoint.
set -u
LRA={lra}
lra_pid=
trap '[ -n "$lra_pid" ] && kill -USR1 "$lra_pid"' USR1
trap ':' TERM
echo "lra worker ${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}} (restart ${{SLURM_RESTART_COUNT:-0}}) on $(hostname) at $(date -u +%FT%TZ)"
"$LRA" reproduce {args} --worker --retry-failed-before {planned} &
lra_pid=$!
while :; do
  wait "$lra_pid"
  rc=$?
  kill -0 "$lra_pid" 2>/dev/null || break
done
if [ "$rc" -eq 138 ]; then
  echo "lra worker: checkpointed on USR1; requeueing ${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}"
  scontrol requeue "${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}"
fi
exit "$rc"
)SH",
                  fmt::arg("table", table), fmt::arg("planned", planned_at), fmt::arg("host", host_name()),
                  fmt::arg("workers", opt.workers), fmt::arg("out", out), fmt::arg("job", job),
                  fmt::arg("last", opt.workers - 1), fmt::arg("signal", opt.signal_before_s), fmt::arg("dir", g.dir),
                  fmt::arg("resources", resource_lines(opt, true)), fmt::arg("lra", shell_quote(g.lra)),
                  fmt::arg("args", quoted(args))));
  g.report_script = g.dir + "/report.sbatch";
  write_file_atomic(g.report_script, fmt::format(R"SH(#!/bin/bash
# lra reproduce {table}: the table, once every worker of the array has ended.
#SBATCH --job-name={job}-report
#SBATCH --output={dir}/logs/report-%j.log
#SBATCH --ntasks=1
{resources}
exec {lra} reproduce {args} --report-only
)SH",
                                                 fmt::arg("table", table), fmt::arg("job", job), fmt::arg("dir", g.dir),
                                                 fmt::arg("resources", resource_lines(opt, false)),
                                                 fmt::arg("lra", shell_quote(g.lra)), fmt::arg("args", quoted(args))));
  fs::permissions(g.worker_script, fs::perms::owner_exec | fs::perms::group_exec, fs::perm_options::add, ec);
  fs::permissions(g.report_script, fs::perms::owner_exec | fs::perms::group_exec, fs::perm_options::add, ec);
  return g;
}

SlurmSubmission submit_slurm_grid(const SlurmGrid& grid) {
  SlurmSubmission s;
  s.array_job = sbatch(shell_quote(grid.worker_script));
  s.report_job = sbatch(fmt::format("--dependency=afterany:{} {}", s.array_job, shell_quote(grid.report_script)));
  return s;
}

}  // namespace lra

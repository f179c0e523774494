#include "cmd_reproduce.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>

#include "attn/attention.h"
#include "backend/backend.h"
#include "bench/attn_bench.h"
#include "core/check.h"
#include "core/files.h"
#include "core/system.h"
#include "results/collection.h"
#include "results/published.h"
#include "results/record.h"
#include "results/report_formats.h"
#include "runner/reproduce.h"
#include "runner/slurm.h"
#include "runner/worker.h"
#include "tasks/task.h"
#include "train/config.h"
#include "train/trainer.h"

namespace lra {

void setup_reproduce(CLI::App& app, ReproduceOptions& opt) {
  app.add_option("--table", opt.table, "lra-accuracy (LRA Table 1) or lra-efficiency (LRA Table 2)")
      ->check(CLI::IsMember({"lra-accuracy", "lra-efficiency"}))
      ->capture_default_str();
  app.add_option("--preset", opt.preset, "cpu (small, minutes per cell) or paper (LRA's configs)")
      ->capture_default_str();
  app.add_option("--seeds", opt.seeds, "lra-accuracy: seeds 0..N-1 per (task, variant)")->capture_default_str();
  app.add_option("--tasks", opt.tasks, "lra-accuracy: tasks, comma-separated (default: all)")
      ->delimiter(',')
      ->check(CLI::IsMember(task_names()));
  app.add_option("--attn", opt.attns, "variants, comma-separated (default: all)")
      ->delimiter(',')
      ->check(CLI::IsMember(attention_names()));
  app.add_option("--set", opt.sets,
                 "override a config key, task option or attention hyperparameter in every cell that has it; "
                 "repeatable")
      ->type_name("KEY=VALUE");
  app.add_option("--device", opt.device, "cpu or cuda")->capture_default_str();
  app.add_option("--threads", opt.threads, "CPU threads (0 = all cores)")->capture_default_str();
  app.add_option("--out", opt.out, "folder of the cells' records (read to skip existing cells, then written)")
      ->capture_default_str();
  app.add_option("--report-dir", opt.report_dir, "where the table is written (all formats)")->capture_default_str();
  app.add_option("--data-dir", opt.data_dir, "folder with the official LRA files (default: built-in data)")
      ->envname("LRA_DATA_DIR");
  app.add_option("--cache-dir", opt.cache_dir,
                 "where generated data is kept (default: $LRA_CACHE_DIR or ~/.cache/lra)");
  app.add_option("--published", opt.published, "folder of published tables (default: results/published)");
  app.add_flag("--dry-run", opt.dry_run, "list the grid, what exists and what would run; run nothing");
  app.add_flag("-q,--quiet", opt.quiet, "no training progress (the plan and each cell's result are still printed)");

  const std::string workers = "Workers and clusters (lra-accuracy)";
  app.add_flag("--worker", opt.worker,
               "take free cells from --out until none is left, then exit without writing the table (what each "
               "task of a --slurm array runs)")
      ->group(workers);
  app.add_flag("--report-only", opt.report_only, "write the table from what --out holds; run nothing")->group(workers);
  app.add_option("--shard", opt.shard,
                 "take only cells K, K+N, K+2N, ... of the grid (0 <= K < N), for an array index of any scheduler; "
                 "default inside a Slurm array without --worker: SLURM_ARRAY_TASK_ID of SLURM_ARRAY_TASK_COUNT")
      ->type_name("K/N")
      ->group(workers);
  app.add_option("--claim-timeout", opt.claim_timeout,
                 "seconds without a heartbeat after which a worker's claim on a cell is dead and another worker "
                 "takes the cell over (heartbeats come every tenth of it)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->group(workers);
  app.add_option("--retry-failed-before", opt.retry_failed_before,
                 "retry only the cells whose failed run started before this UTC time (default: when this process "
                 "started, so workers do not retry each other's failures)")
      ->type_name("YYYY-MM-DDTHH:MM:SSZ")
      ->group(workers);
  app.add_flag("--slurm", opt.slurm,
               "write a Slurm job array of --workers workers and a report job that runs after it, under "
               "OUT/slurm/; print how to submit them")
      ->group(workers);
  app.add_flag("--submit", opt.submit, "with --slurm: submit both with sbatch and print the job ids")->group(workers);
  app.add_option("--workers", opt.job.workers, "with --slurm: tasks in the array")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->group(workers);
  app.add_option("--partition", opt.job.partition, "with --slurm: sbatch --partition")->group(workers);
  app.add_option("--time", opt.job.time, "with --slurm: each worker's sbatch --time")->group(workers);
  app.add_option("--account", opt.job.account, "with --slurm: sbatch --account")->group(workers);
  app.add_option("--mem", opt.job.mem, "with --slurm: each worker's sbatch --mem")->group(workers);
  app.add_option("--cpus-per-task", opt.job.cpus_per_task, "with --slurm: each worker's sbatch --cpus-per-task")
      ->group(workers);
  app.add_option("--gpus-per-task", opt.job.gpus_per_task, "with --slurm: each worker's sbatch --gpus-per-task")
      ->group(workers);
  app.add_option("--sbatch-arg", opt.job.sbatch_args, "with --slurm: any other sbatch option, e.g. --qos=high; repeatable")
      ->type_name("ARG")
      ->allow_extra_args(false)
      ->group(workers);
  app.add_option("--signal-before", opt.job.signal_before_s,
                 "with --slurm: seconds before the time limit at which Slurm sends USR1 (the worker checkpoints its "
                 "cell and requeues itself)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->group(workers);
}

namespace {

RecordSet existing_records(const std::string& out) {
  std::error_code ec;
  if (!std::filesystem::exists(out, ec)) return {};
  RecordSet set = load_records({out});
  for (const auto& s : set.skipped) std::fprintf(stderr, "lra reproduce: skipped %s\n", s.c_str());
  return set;
}

std::string trimmed(std::string s) {
  s.erase(s.find_last_not_of(' ') + 1);
  return s;
}

std::string plan_summary(const std::map<CellState, int>& n) {
  auto at = [&](CellState s) { return n.count(s) ? n.at(s) : 0; };
  return fmt::format("{} done, {} running, {} to resume, {} failed, {} to retry, {} to run", at(CellState::Done),
                     at(CellState::Running), at(CellState::Resume), at(CellState::Failed), at(CellState::Retry),
                     at(CellState::Run));
}

// Writes the table in every format and prints its Markdown.
void write_table(const ReproduceOptions& opt, const RecordSet& records, const ReportScope& scope) {
  const Report report = build_report(records, load_published(find_published_dir(opt.published)), scope);
  const auto written = write_report(report, opt.report_dir, "all");
  std::printf("\n%s", report_markdown(report).c_str());
  for (const auto& p : written) std::fprintf(stderr, "wrote %s\n", p.c_str());
}

void print_continue(const ReproduceOptions& opt, int left) {
  std::printf(
      "interrupted: %d cell(s) not finished. Run the same command again to continue (the interrupted cell "
      "resumes from its checkpoint; lra reproduce ... --dry-run lists what is left). Records: %s\n",
      left, opt.out.c_str());
}

// The arguments every worker of a --slurm array and its report job run with: this grid, in absolute paths.
std::vector<std::string> worker_args(const ReproduceOptions& opt) {
  namespace fs = std::filesystem;
  auto abs = [](const std::string& p) { return fs::absolute(p).lexically_normal().string(); };
  std::vector<std::string> a = {"--table", opt.table, "--preset", opt.preset, "--seeds", std::to_string(opt.seeds),
                                "--device", opt.device, "--threads", std::to_string(opt.threads),
                                "--out", abs(opt.out), "--report-dir", abs(opt.report_dir),
                                "--claim-timeout", fmt::format("{}", opt.claim_timeout)};
  if (!opt.tasks.empty()) a.insert(a.end(), {"--tasks", fmt::format("{}", fmt::join(opt.tasks, ","))});
  if (!opt.attns.empty()) a.insert(a.end(), {"--attn", fmt::format("{}", fmt::join(opt.attns, ","))});
  for (const auto& s : opt.sets) a.insert(a.end(), {"--set", s});
  if (!opt.data_dir.empty()) a.insert(a.end(), {"--data-dir", abs(opt.data_dir)});
  if (!opt.cache_dir.empty()) a.insert(a.end(), {"--cache-dir", abs(opt.cache_dir)});
  if (opt.quiet) a.push_back("-q");
  return a;
}

int plan_slurm(const ReproduceOptions& opt, size_t cells) {
  make_dirs(opt.out);
  const SlurmGrid g = write_slurm_grid(opt.job, opt.out, opt.table, find_published_dir(opt.published), worker_args(opt),
                                       now_iso8601());
  std::printf("wrote %s (%d worker(s) for %zu cell(s) to run) and %s, which run %s\n", g.worker_script.c_str(),
              opt.job.workers, cells, g.report_script.c_str(), g.lra.c_str());
  const std::string status = fmt::format("lra reproduce {} --dry-run", fmt::join(worker_args(opt), " "));
  if (!opt.submit) {
    std::printf("submit both with:\n  array=$(sbatch --parsable %s) && sbatch --dependency=afterany:$array %s\n"
                "(or run this command again with --submit)\n",
                shell_quote(g.worker_script).c_str(), shell_quote(g.report_script).c_str());
    return 0;
  }
  const SlurmSubmission sub = submit_slurm_grid(g);
  std::printf("submitted: workers job array %s, report job %s (after the array ends)\n"
              "watch:  squeue -j %s,%s\n"
              "cells:  %s\n"
              "logs:   %s/logs/\n"
              "table:  %s (when job %s has run)\n",
              sub.array_job.c_str(), sub.report_job.c_str(), sub.array_job.c_str(), sub.report_job.c_str(),
              status.c_str(), g.dir.c_str(), opt.report_dir.c_str(), sub.report_job.c_str());
  return 0;
}

// The table holds exactly the grid's cells: records with other settings in --out do not count.
void write_accuracy_table(const ReproduceOptions& opt, const GridRequest& req,
                          const std::vector<AccuracyCellPlan>& plan) {
  std::map<std::tuple<std::string, std::string, uint64_t>, nlohmann::json> want;
  for (const auto& c : plan) want[{c.task, c.attn, c.seed}] = c.config.to_json();
  ReportScope scope;
  scope.preset = req.preset;
  scope.tasks = req.tasks.empty() ? task_names() : req.tasks;
  scope.attns = req.attns.empty() ? report_attention_order() : req.attns;
  scope.efficiency = false;
  scope.preset_config = preset_config_json;
  scope.keep = [&](const RunEntry& e) {
    const auto it = want.find({e.task, e.attn, e.seed});
    return it != want.end() && config_matches(e.record.value("config", nlohmann::json::object()), it->second, nullptr);
  };
  std::error_code ec;
  write_table(opt, std::filesystem::exists(opt.out, ec) ? load_records({opt.out}) : RecordSet{}, scope);
}

int reproduce_accuracy(const ReproduceOptions& opt, const GridRequest& req) {
  Shard shard;
  if (!opt.shard.empty())
    shard = parse_shard(opt.shard);
  else if (!opt.worker && !opt.slurm)
    shard = shard_from_slurm_env();
  ClaimFolder claims(opt.out, opt.claim_timeout);
  const std::vector<AccuracyCellPlan> plan =
      plan_from_folder(req, opt.out, claims, opt.retry_failed_before, true);
  std::map<CellState, int> count;
  for (const auto& c : plan) ++count[c.state];
  const size_t task_n = req.tasks.empty() ? task_names().size() : req.tasks.size();
  const size_t attn_n = req.attns.empty() ? attention_names().size() : req.attns.size();
  std::printf(
      "lra reproduce lra-accuracy: preset %s, %zu task(s) x %zu variant(s) x %d seed(s) = %zu cells in %s: "
      "%s\n",
      req.preset.c_str(), task_n, attn_n, req.seeds, plan.size(), opt.out.c_str(), plan_summary(count).c_str());
  if (shard.count > 1) std::printf("shard %d/%d: cells %d, %d, ... of the grid\n", shard.index, shard.count,
                                   shard.index, shard.index + shard.count);
  for (size_t i = 0; i < plan.size(); ++i) {
    const auto& c = plan[i];
    std::string detail = c.existing;
    if (!c.note.empty()) detail += (detail.empty() ? "" : "  ") + c.note;
    std::printf("%s\n", trimmed(fmt::format("  {:<7} {:<10}  {:<14}  seed {:<3}  {}{}", cell_state_name(c.state),
                                            c.task, c.attn, c.seed, shard.holds(i) ? "" : "(another shard) ",
                                            detail))
                            .c_str());
  }
  if (opt.dry_run) {
    std::printf("--dry-run: nothing was run\n");
    return 0;
  }
  if (opt.slurm) {
    int left = 0;
    for (const auto& c : plan) left += c.state != CellState::Done;
    return plan_slurm(opt, static_cast<size_t>(left));
  }
  if (opt.report_only) {
    write_accuracy_table(opt, req, plan);
    return 0;
  }

  make_dirs(opt.out);
  install_interrupt_handler();
  WorkerOptions w;
  w.out = opt.out;
  w.data_dir = opt.data_dir;
  w.cache_dir = opt.cache_dir;
  w.threads = opt.threads;
  w.progress = !opt.quiet;
  w.claim_timeout_s = opt.claim_timeout;
  w.shard = shard;
  w.wait_for_others = !opt.worker;
  w.retry_failed_before = opt.retry_failed_before;
  w.on_lost_claim = [] {
    std::fprintf(stderr,
                 "lra reproduce: this worker's claim on its cell was taken over by another worker (this process was "
                 "stopped for longer than --claim-timeout); the cell is the other worker's now. Exiting.\n");
    std::_Exit(kClaimLostExitCode);
  };
  const WorkerResult r = run_accuracy_worker(req, w);
  if (r.interrupted)
    print_continue(opt, r.left);
  else if (r.ran > 0)
    std::printf("%d cell(s) run, %d failed (recorded in %s)\n", r.ran, r.failed, opt.out.c_str());
  if (!opt.worker) write_accuracy_table(opt, req, plan);
  return r.interrupted ? interrupt_exit_code() : r.failed > 0 ? 1 : 0;
}

int reproduce_efficiency(const ReproduceOptions& opt, const GridRequest& req) {
  const RecordSet existing = existing_records(opt.out);
  const std::vector<EfficiencyCellPlan> plan = plan_efficiency_grid(req, existing);
  const AttnBenchRequest& settings = plan.front().bench.req;
  std::map<CellState, int> count;
  for (const auto& c : plan) ++count[c.state];
  std::printf(
      "lra reproduce lra-efficiency: preset %s, %zu variant(s) at lengths %s (B=%d H=%d D=%d, %s, %s) in %s: "
      "%s\n",
      req.preset.c_str(), plan.size(), settings.lengths.c_str(), settings.batch, settings.heads, settings.dim,
      settings.mode.c_str(), settings.device.c_str(), opt.out.c_str(), plan_summary(count).c_str());
  for (const auto& c : plan)
    std::printf("%s\n",
                trimmed(fmt::format("  {:<6}  {:<14}  {}", cell_state_name(c.state), c.attn, c.existing)).c_str());
  if (opt.dry_run) {
    std::printf("--dry-run: nothing was run\n");
    return 0;
  }

  make_dirs(opt.out);
  install_interrupt_handler();
  set_threads(opt.threads);
  const int threads = get_threads();
  const int todo = count.count(CellState::Run) ? count.at(CellState::Run) : 0;
  int k = 0;
  bool interrupted = false;
  const bool progress = !opt.quiet && stderr_is_terminal();
  for (const auto& c : plan) {
    if (c.state == CellState::Done) continue;
    ++k;
    std::printf("[%d/%d] %s: measuring\n", k, todo, c.attn.c_str());
    std::fflush(stdout);
    std::string stamp = now_iso8601();
    stamp.erase(std::remove_if(stamp.begin(), stamp.end(), [](char ch) { return ch == '-' || ch == ':'; }),
                stamp.end());
    const std::string path = fmt::format("{}/bench_attn_{}_{}_{}.json", opt.out, req.preset, c.attn, stamp);
    const nlohmann::json extra = {{"preset", req.preset}, {"table", "lra-efficiency"}};
    try {
      const AttnBenchResult result = run_attn_bench(
          c.bench,
          [&](const std::string& note) {
            if (progress) std::fprintf(stderr, "  %s...\033[K\r", note.c_str());
          },
          nullptr);
      if (progress) std::fprintf(stderr, "\033[K");
      write_record(path, attn_bench_record(c.bench, result, extra));
      std::printf("  ok: %s\n", path.c_str());
    } catch (const std::exception& e) {
      // A bench record with no rows, so the cell stays missing and the error stays on file.
      AttnBenchResult none;
      none.env = env_json(threads);
      nlohmann::json rec = attn_bench_record(c.bench, none, extra);
      rec["status"] = "failed";
      rec["error"] = e.what();
      write_record(path, rec);
      std::printf("  failed: %s  %s\n", e.what(), path.c_str());
    }
    std::fflush(stdout);
    if (interrupt_requested()) {
      print_continue(opt, todo - k);
      interrupted = true;
      break;
    }
  }

  // The table holds exactly the grid's measurements: bench rows with other settings do not count.
  RecordSet records = load_records({opt.out});
  for (auto& b : records.benches) {
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& row : b.record["rows"])
      for (const auto& c : plan)
        if (bench_row_matches(row, b.record["env"], c.bench, 0, threads)) rows.push_back(row);
    b.record["rows"] = rows;
  }
  ReportScope scope;
  scope.accuracy = false;
  write_table(opt, records, scope);
  return interrupted ? interrupt_exit_code() : 0;
}

}  // namespace

int run_reproduce(const ReproduceOptions& opt, const CLI::App& sub) {
  GridRequest req;
  req.preset = opt.preset;
  req.seeds = opt.seeds;
  req.tasks = opt.tasks;
  req.attns = opt.attns;
  req.sets = opt.sets;
  req.device = opt.device;
  req.threads = opt.threads;
  parse_device(opt.device);
  LRA_CHECK(!opt.submit || opt.slurm, "--submit submits the --slurm job array: add --slurm");
  for (const char* flag : {"--partition", "--time", "--account", "--mem", "--cpus-per-task", "--gpus-per-task",
                           "--sbatch-arg", "--signal-before", "--workers"})
    LRA_CHECK(opt.slurm || sub.count(flag) == 0, "{} is for the job array --slurm writes: add --slurm", flag);
  LRA_CHECK(static_cast<int>(opt.dry_run) + opt.report_only + opt.slurm + opt.worker <= 1,
            "--dry-run, --report-only, --slurm and --worker are different jobs: give one");
  if (opt.table == "lra-efficiency") {
    LRA_CHECK(sub.count("--tasks") == 0 && sub.count("--seeds") == 0,
              "--tasks and --seeds are for lra-accuracy; lra-efficiency measures one attention layer per variant");
    LRA_CHECK(!opt.worker && !opt.slurm && opt.shard.empty() && !opt.report_only,
              "lra-efficiency runs in one process on one machine: its ratios compare variants measured on the "
              "same CPU or GPU, so --worker, --shard, --slurm and --report-only are for lra-accuracy only");
    return reproduce_efficiency(opt, req);
  }
  return reproduce_accuracy(opt, req);
}

}  // namespace lra

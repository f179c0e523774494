#include "cmd_reproduce.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdio>
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
#include "tasks/task.h"
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
  return fmt::format(
      "{} done, {} to resume, {} to retry, {} to run", n.count(CellState::Done) ? n.at(CellState::Done) : 0,
      n.count(CellState::Resume) ? n.at(CellState::Resume) : 0, n.count(CellState::Retry) ? n.at(CellState::Retry) : 0,
      n.count(CellState::Run) ? n.at(CellState::Run) : 0);
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

int reproduce_accuracy(const ReproduceOptions& opt, const GridRequest& req) {
  const RecordSet existing = existing_records(opt.out);
  const OrphanScan scan = find_orphan_checkpoints(opt.out, existing);
  for (const auto& s : scan.skipped) std::fprintf(stderr, "lra reproduce: skipped %s\n", s.c_str());
  const std::vector<AccuracyCellPlan> plan = plan_accuracy_grid(req, existing, scan.orphans);
  std::map<CellState, int> count;
  for (const auto& c : plan) ++count[c.state];
  const size_t task_n = req.tasks.empty() ? task_names().size() : req.tasks.size();
  const size_t attn_n = req.attns.empty() ? attention_names().size() : req.attns.size();
  std::printf(
      "lra reproduce lra-accuracy: preset %s, %zu task(s) x %zu variant(s) x %d seed(s) = %zu cells in %s: "
      "%s\n",
      req.preset.c_str(), task_n, attn_n, req.seeds, plan.size(), opt.out.c_str(), plan_summary(count).c_str());
  for (const auto& c : plan) {
    std::string detail = c.existing;
    if (!c.note.empty()) detail += (detail.empty() ? "" : "  ") + c.note;
    std::printf("%s\n", trimmed(fmt::format("  {:<6}  {:<10}  {:<14}  seed {:<3}  {}", cell_state_name(c.state), c.task,
                                            c.attn, c.seed, detail))
                            .c_str());
  }
  if (opt.dry_run) {
    std::printf("--dry-run: nothing was run\n");
    return 0;
  }

  make_dirs(opt.out);
  install_interrupt_handler();
  const int todo = static_cast<int>(plan.size()) - (count.count(CellState::Done) ? count.at(CellState::Done) : 0);
  int k = 0, failed = 0;
  bool interrupted = false;
  for (const auto& c : plan) {
    if (c.state == CellState::Done) continue;
    ++k;
    std::printf("[%d/%d] %s / %s seed %llu: %s\n", k, todo, c.task.c_str(), c.attn.c_str(),
                static_cast<unsigned long long>(c.seed), c.state == CellState::Resume ? "resuming" : "running");
    std::fflush(stdout);
    TrainOptions topt;
    topt.out_dir = opt.out;
    topt.data_dir = opt.data_dir;
    topt.cache_dir = opt.cache_dir;
    topt.progress = !opt.quiet;
    RunConfig cfg = c.config;
    if (c.state == CellState::Resume) {
      try {
        cfg = config_from_checkpoint(c.existing);
        topt.resume = c.existing;
      } catch (const std::exception& e) {
        std::printf("  the checkpoint cannot be read (%s): running the cell from the start\n", e.what());
      }
    }
    cfg.threads = opt.threads;
    Trainer trainer(cfg, topt);
    try {
      trainer.run();
    } catch (const std::exception& e) {
      trainer.fail(e.what());
    }
    const std::string path = trainer.write_record();
    const nlohmann::json& rec = trainer.record();
    const std::string status = rec["status"].get<std::string>();
    if (status == "ok")
      std::printf("  ok: test accuracy %.2f%%  %s\n", 100 * rec["metrics"]["test_accuracy"].get<double>(),
                  path.c_str());
    else
      std::printf("  %s%s%s  %s\n", status.c_str(), rec.contains("error") ? ": " : "",
                  rec.value("error", std::string()).c_str(), path.c_str());
    std::fflush(stdout);
    failed += status == "failed";
    if (interrupt_requested()) {
      print_continue(opt, todo - k + (status == "interrupted"));
      interrupted = true;
      break;
    }
  }
  if (!interrupted && todo > 0)
    std::printf("%d cell(s) run, %d failed (recorded in %s)\n", todo, failed, opt.out.c_str());

  // The table holds exactly the grid's cells: records with other settings in --out do not count.
  std::map<std::tuple<std::string, std::string, uint64_t>, nlohmann::json> want;
  for (const auto& c : plan) want[{c.task, c.attn, c.seed}] = c.config.to_json();
  ReportScope scope;
  scope.preset = req.preset;
  scope.tasks = req.tasks.empty() ? task_names() : req.tasks;
  scope.attns = req.attns.empty() ? report_attention_order() : req.attns;
  scope.efficiency = false;
  scope.keep = [&](const RunEntry& e) {
    const auto it = want.find({e.task, e.attn, e.seed});
    return it != want.end() && config_matches(e.record.value("config", nlohmann::json::object()), it->second, nullptr);
  };
  write_table(opt, load_records({opt.out}), scope);
  return interrupted ? interrupt_exit_code() : failed > 0 ? 1 : 0;
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
  if (opt.table == "lra-efficiency") {
    LRA_CHECK(sub.count("--tasks") == 0 && sub.count("--seeds") == 0,
              "--tasks and --seeds are for lra-accuracy; lra-efficiency measures one attention layer per variant");
    return reproduce_efficiency(opt, req);
  }
  return reproduce_accuracy(opt, req);
}

}  // namespace lra

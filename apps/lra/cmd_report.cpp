#include "cmd_report.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstdio>

#include "attn/attention.h"
#include "core/check.h"
#include "results/collection.h"
#include "results/published.h"
#include "results/report_formats.h"
#include "tasks/task.h"
#include "train/config.h"

namespace lra {

void setup_report(CLI::App& app, ReportOptions& opt) {
  app.add_option("paths", opt.paths, "run records, bench records, or folders of them (searched recursively)")
      ->capture_default_str();
  app.add_option("--format", opt.format, "md, csv, latex, html or all")
      ->check(CLI::IsMember({"md", "csv", "latex", "html", "all"}))
      ->capture_default_str();
  app.add_option("--out", opt.out, "folder for report.md, accuracy.csv, efficiency.csv, report.tex, report.html")
      ->capture_default_str();
  app.add_option("--preset", opt.preset, "only runs of this preset (default: one accuracy table per preset)");
  app.add_option("--tasks", opt.tasks, "the accuracy table's columns, comma-separated (default: the tasks found)")
      ->delimiter(',')
      ->check(CLI::IsMember(task_names()));
  app.add_option("--attn", opt.attns, "the rows, comma-separated (default: the variants found)")
      ->delimiter(',')
      ->check(CLI::IsMember(attention_names()));
  app.add_option("--published", opt.published, "folder of published tables (default: results/published)");
  app.add_flag("--latest", opt.latest,
               "one config per cell, its latest run's, listing the runs of other configs left out (default: a row "
               "per config of a variant, named by what it changes from the preset)");
  app.add_flag("-q,--quiet", opt.quiet, "do not print the Markdown report on stdout");
}

int run_report(const ReportOptions& opt) {
  const RecordSet records = load_records(opt.paths);
  for (const auto& s : records.skipped) std::fprintf(stderr, "lra report: skipped %s\n", s.c_str());
  LRA_CHECK(!records.runs.empty() || !records.benches.empty(),
            "no run or bench records in {}; `lra run` writes run records (to results/runs by default) and "
            "`lra bench attn --out FILE` a bench record",
            fmt::join(opt.paths, ", "));
  ReportScope scope;
  scope.preset = opt.preset;
  scope.tasks = opt.tasks;
  scope.attns = opt.attns;
  scope.preset_config = preset_config_json;
  scope.latest = opt.latest;
  const Report report = build_report(records, load_published(find_published_dir(opt.published)), scope);
  LRA_CHECK(!report.accuracy.empty() || !report.efficiency.empty(),
            "none of the {} run and {} bench records matches --preset/--tasks/--attn", records.runs.size(),
            records.benches.size());
  const auto written = write_report(report, opt.out, opt.format);
  if (!opt.quiet) std::printf("%s", report_markdown(report).c_str());
  for (const auto& p : written) std::fprintf(stderr, "wrote %s\n", p.c_str());
  return 0;
}

}  // namespace lra

#include "cmd_compare.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstdio>

#include "attn/attention.h"
#include "core/check.h"
#include "core/files.h"
#include "results/collection.h"
#include "results/compare.h"
#include "results/report_formats.h"
#include "tasks/task.h"
#include "train/config.h"

namespace lra {

void setup_compare(CLI::App& app, CompareOptions& opt) {
  app.add_option("paths", opt.paths,
                 "run records to put side by side; with --task, folders to search (default: results/runs)");
  app.add_option("--task", opt.task, "one column per variant of this task, each the runs of its seeds")
      ->check(CLI::IsMember(task_names()));
  app.add_option("--preset", opt.preset, "with --task: the preset (required when the runs have several)");
  app.add_option("--attn", opt.attns, "with --task: only these variants, comma-separated")
      ->delimiter(',')
      ->check(CLI::IsMember(attention_names()));
  app.add_option("--format", opt.format, "md or csv")->check(CLI::IsMember({"md", "csv"}))->capture_default_str();
  app.add_option("--out", opt.out, "write to this file instead of stdout")->type_name("FILE");
}

int run_compare(const CompareOptions& opt) {
  LRA_CHECK(!opt.task.empty() || !opt.paths.empty(),
            "give run records (lra compare RUN.json RUN.json ...) or a task (lra compare --task listops [DIR])");
  LRA_CHECK(!opt.task.empty() || (opt.preset.empty() && opt.attns.empty()),
            "--preset and --attn choose variants of one task: give --task too");
  const RecordSet records = load_records(opt.paths.empty() ? std::vector<std::string>{"results/runs"} : opt.paths);
  for (const auto& s : records.skipped) std::fprintf(stderr, "lra compare: skipped %s\n", s.c_str());
  std::vector<CompareColumn> columns;
  if (opt.task.empty()) {
    columns = columns_per_run(records);
    LRA_CHECK(!columns.empty(), "no run records in {}", fmt::join(opt.paths, ", "));
  } else {
    columns = columns_per_variant(records, opt.task, opt.preset, opt.attns, preset_config_json);
  }
  TableText table = compare_table(columns);
  if (!opt.task.empty())
    table.title = fmt::format("Comparison: {}, preset {}", opt.task, columns.front().runs.front()->preset);
  const std::string text = opt.format == "csv" ? table_csv(table) : table_markdown(table);
  if (opt.out.empty()) {
    std::printf("%s", text.c_str());
  } else {
    write_file_atomic(opt.out, text);
    std::fprintf(stderr, "wrote %s\n", opt.out.c_str());
  }
  return 0;
}

}  // namespace lra

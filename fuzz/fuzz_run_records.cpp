// Run and bench records, as `lra report`, `lra compare` and `lra reproduce` read them: the input split
// into up to six *.json files of one folder, loaded by load_records (which keeps what it can read and
// names the rest), then everything those commands do with what it kept: build_report (with each preset's
// config, and with --latest), every format of the report, compare's columns and table, and reproduce's
// accuracy and efficiency plans over the records.
#include <algorithm>
#include <set>

#include "attn/attention.h"
#include "fuzz/fuzz_util.h"
#include "results/collection.h"
#include "results/compare.h"
#include "results/published.h"
#include "results/report.h"
#include "results/report_formats.h"
#include "results/report_html.h"
#include "runner/reproduce.h"
#include "tasks/task.h"
#include "train/config.h"

namespace {

const lra::Published& published() {
  static const lra::Published p = lra::load_published(lra::find_published_dir(""));
  return p;
}

void render(const lra::Report& report) {
  for (const lra::TableText& t : lra::report_tables(report)) {
    lra::table_markdown(t);
    lra::table_csv(t);
  }
  lra::report_markdown(report);
  lra::report_latex(report);
  lra::report_csv(report);
  lra::report_html(report);
}

bool known(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lra;
  const auto dir = fuzz::scratch() / "runs";
  const std::vector<std::string> parts = fuzz::split_parts(data, size, 6);
  for (size_t i = 0; i < parts.size(); ++i) fuzz::write(dir / ("r" + std::to_string(i) + ".json"), parts[i]);
  const RecordSet records = load_records({dir.string()});
  fuzz::require(records.runs.size() + records.benches.size() + records.skipped.size() <= parts.size(),
                "each file is a run, a bench record, skipped or a published table");

  fuzz::expect_error([&] {
    ReportScope scope;
    scope.preset_config = preset_config_json;
    render(build_report(records, published(), scope));
  });
  fuzz::expect_error([&] {
    ReportScope scope;
    scope.latest = true;
    scope.preset = "cpu";
    render(build_report(records, published(), scope));
  });

  fuzz::expect_error([&] {
    const std::vector<CompareColumn> columns = columns_per_run(records);
    if (!columns.empty()) table_markdown(compare_table(columns));
  });
  std::set<std::string> tasks, attns;
  for (const RunEntry& e : records.runs) {
    if (known(task_names(), e.task)) tasks.insert(e.task);
    if (known(attention_names(), e.attn)) attns.insert(e.attn);
  }
  for (const std::string& task : tasks)
    fuzz::expect_error([&] {
      table_csv(compare_table(columns_per_variant(records, task, "", {}, preset_config_json)));
    });

  // reproduce's plans, over the tasks and variants the records name (at most two of each: every cell
  // resolves its config).
  GridRequest req;
  for (const std::string& t : tasks)
    if (req.tasks.size() < 2) req.tasks.push_back(t);
  for (const std::string& a : attns)
    if (req.attns.size() < 2) req.attns.push_back(a);
  if (!req.tasks.empty() && !req.attns.empty()) fuzz::expect_error([&] { plan_accuracy_grid(req, records); });
  GridRequest bench;
  bench.attns = {"softmax", "performer"};
  fuzz::expect_error([&] { plan_efficiency_grid(bench, records); });
  return 0;
}

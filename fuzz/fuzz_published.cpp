// The published tables (results/published/*.json): the input as one table for load_published, then a
// report beside fixture runs and bench records (every format), which prints its values, marks, caveats
// and notes.
#include "fuzz/fuzz_util.h"
#include "results/published.h"
#include "results/report.h"
#include "results/report_formats.h"
#include "results/report_html.h"
#include "tests/record_fixtures.h"

namespace {

// Two variants on two tasks, and a bench record at two lengths, so that every kind of published value
// (accuracy, average, speed, memory) is looked up and printed.
const lra::RecordSet& records() {
  static const lra::RecordSet set = [] {
    lra::RecordSet s;
    for (const char* attn : {"softmax", "performer"})
      for (const char* task : {"listops", "text"}) {
        lra::RunEntry e;
        e.record = lra::test::run_record(lra::test::RunSpec(task, attn));
        e.path = std::string(task) + "_" + attn + ".json";
        e.task = task;
        e.attn = attn;
        e.preset = "cpu";
        e.status = "ok";
        s.runs.push_back(std::move(e));
      }
    nlohmann::json rows = nlohmann::json::array();
    for (const char* attn : {"softmax", "performer"})
      for (int len : {1024, 2048})
        rows.push_back({{"attn", attn}, {"mode", "fwdbwd"}, {"device", "cpu"}, {"len", len}, {"batch", 8},
                        {"heads", 4}, {"dim", 128}, {"threads", 2}, {"ms_median", 10.0 * len / 1024},
                        {"peak_arena_bytes", 1048576.0 * len}, {"causal", false}});
    s.benches.push_back({"bench.json", {{"kind", "bench_attn"}, {"rows", rows}, {"env", {{"cpu", "Fuzz CPU"}}}}});
    return s;
  }();
  return set;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lra;
  const auto dir = fuzz::scratch() / "published";
  fuzz::write(dir / "table.json", data, size);
  fuzz::expect_error([&] {
    const Report report = build_report(records(), load_published(dir.string()), ReportScope{});
    for (const TableText& t : report_tables(report)) table_markdown(t);
    report_markdown(report);
    report_latex(report);
    report_csv(report);
    report_html(report);
  });
  return 0;
}

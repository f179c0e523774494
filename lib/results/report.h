// `lra report`: the LRA paper's tables from a folder of records, with the published numbers beside ours.
// build_report groups the records into tables (accuracy: one per preset, variants as rows and tasks as
// columns; efficiency: one per bench setting, LRA Table 2's shape) and report_tables lays them out as
// text; the writers render them as Markdown, CSV and LaTeX (report_formats.h) and as a self-contained
// HTML page with plots (report_html.h).
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "results/collection.h"
#include "results/published.h"

namespace lra {

struct ReportScope {
  std::string preset;              // only this preset; empty = every preset, one accuracy table each
  std::vector<std::string> tasks;  // accuracy columns; empty = the tasks the runs have, in the registry's order
  std::vector<std::string> attns;  // rows; empty = the variants the records have, in LRA's order
  bool accuracy = true, efficiency = true;
  std::function<bool(const RunEntry&)> keep;  // when set, only runs it accepts count
  // What each preset's config is (see run_changes): runs whose configs differ are never one cell; each
  // config of a variant is a row of its own, named by what it changes from the preset.
  PresetConfig preset_config;
  // One config per cell instead: that of its latest ok run (its latest run when none is ok); the runs of
  // other configs are left out and listed.
  bool latest = false;
};

// One (task, variant) cell of an accuracy table: the ok runs, one per seed (the latest when a seed ran
// twice), and the runs that failed or were interrupted with no ok run of their seed.
struct AccuracyCell {
  std::vector<double> values;  // test accuracy (%), per seed
  std::vector<uint64_t> seeds;
  std::vector<double> steps_per_sec, peak_mib;  // per seed: training speed and peak arena memory
  double mean = 0, std = 0;                     // std: sample standard deviation (0 for one seed)
  std::vector<std::string> failures;            // "seed 1: failed: <error>", "seed 2: interrupted at step 40 (...)"
  bool all_interrupted = false;                 // every failure is an interruption
  bool comparable = true;                       // the data is the paper's (see data_comparable)
  std::string data;                             // what the data is
  int other_data = 0;                           // ok runs on other data left out (stand-in data beside the paper's)
  std::vector<std::string> config_diffs;        // config keys on which this cell's runs differ
  bool has_value() const { return !values.empty(); }
  bool empty() const { return values.empty() && failures.empty(); }
};

struct AccuracyRow {
  std::string attn;
  std::string config;               // what its runs change from the preset, beyond the table's common changes
  std::string name() const;         // "cosformer", or "cosformer [num_train_steps=10]"
  std::vector<AccuracyCell> cells;  // one per task column
  std::optional<double> avg;        // ours, over the table's average tasks this row has
  int avg_count = 0;                // how many of them it has
  bool avg_comparable = true;
  std::optional<double> steps_per_sec, peak_mib;  // mean over the ok runs behind avg (accuracy-vs-speed chart)
  std::string published_row;                      // e.g. "LRA Table 1: Transformer"; empty when the paper has no row
};

// One run's training curve, for the plots.
struct RunCurve {
  std::string task, attn, status;
  std::string config;  // as its row's
  uint64_t seed = 0;
  std::vector<double> step, loss, val_accuracy;  // val_accuracy in percent
};

struct AccuracyTable {
  std::string preset;
  std::vector<std::string> tasks;      // columns
  std::vector<std::string> avg_tasks;  // the tasks the average is over: the columns but Path-X
  std::vector<AccuracyRow> rows;
  std::vector<std::string> hardware;  // distinct "CPU, N threads[, GPU]" of the runs
  std::vector<std::string> builds;    // distinct "lra VERSION (git SHA)"
  std::vector<std::string> data;      // per task: what data its runs used
  std::vector<RunCurve> curves;
  std::vector<std::string> common_changes;  // what every run changes from the preset's config
  std::vector<std::string> left_out;        // with ReportScope::latest: "PATH (its changes)" of the runs left out
  // The average is over every task of LRA's (so the paper's Avg is comparable).
  bool avg_is_lra() const;
};

struct EfficiencyCell {
  bool present = false;
  double ms = 0;  // median ms per forward + backward
  double peak_mib = 0;
  std::optional<double> speed_rel, memory_rel;  // softmax ms / ms and peak / softmax peak, same setting and length
  double steps_per_sec() const { return 1000.0 / ms; }
};

struct EfficiencyRow {
  std::string attn;
  nlohmann::json attn_params;         // the variant's hyperparameters, as measured (the latest row)
  std::vector<EfficiencyCell> cells;  // one per length
  std::string published_row;
};

struct EfficiencyTable {
  std::string setting;   // e.g. "B=8 H=4 D=128, forward + backward, bidirectional, cpu"
  std::string hardware;  // "CPU, N threads[, GPU]"
  std::vector<int> lengths;
  std::vector<EfficiencyRow> rows;
  std::vector<std::string> sources;  // the bench records behind it
  std::vector<std::string> presets;  // the lra reproduce presets they were measured for (none for lra bench attn)
};

struct Report {
  std::vector<AccuracyTable> accuracy;
  std::vector<EfficiencyTable> efficiency;
  Published published;
  std::vector<std::string> skipped;  // records that could not be read ("PATH: why")
};

Report build_report(const RecordSet& records, Published published, const ReportScope& opt);

// A table as text, before its format: what each format renders.
struct TableText {
  std::string id;  // e.g. "accuracy-cpu": anchors and file names
  std::string title;
  std::vector<std::string> context;  // what the numbers were measured on
  std::vector<std::string> header;
  size_t label_columns = 2;  // the first columns are labels (left-aligned); the rest are values
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row_kind;  // per row: "ours", "paper" or "diff"
  std::vector<std::string> notes;     // footnotes, in order
};

std::vector<TableText> report_tables(const Report& report);
// Labels used in every format.
std::string task_label(const std::string& task);  // "listops" -> "ListOps"
std::string format_number(double v, int decimals);

}  // namespace lra

// `lra compare`: runs (or variants, each the runs of its seeds) side by side: what ran, accuracy, loss,
// speed, memory, and every config value on which the columns differ.
#pragma once

#include <string>
#include <vector>

#include "results/collection.h"
#include "results/report.h"

namespace lra {

struct CompareColumn {
  std::string label;
  std::vector<const RunEntry*> runs;  // one run, or the seeds of one variant
};

// One column per run given, labelled by its run_id (or file name).
std::vector<CompareColumn> columns_per_run(const RecordSet& records);

// One column per variant and config among the runs of `task` (and `preset`; with runs of several presets
// and no `preset` this throws, listing them: a cpu run and a paper run are never one column). Runs of
// different configs (run_changes against `preset_config`) are never one column either: each config of a
// variant is its own, labelled by what it changes beyond what every column changes. `attns` filters.
std::vector<CompareColumn> columns_per_variant(const RecordSet& records, const std::string& task,
                                               const std::string& preset, const std::vector<std::string>& attns,
                                               const PresetConfig& preset_config);

TableText compare_table(const std::vector<CompareColumn>& columns);

}  // namespace lra

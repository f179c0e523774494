// `lra report`: the LRA paper's tables (accuracy, efficiency) from folders of run and bench records, with
// the published numbers beside ours, as Markdown, CSV, LaTeX and a self-contained HTML page with plots.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace lra {

struct ReportOptions {
  std::vector<std::string> paths{"results"};
  std::string format = "all";
  std::string out = "results/report";
  std::string preset;
  std::vector<std::string> tasks;
  std::vector<std::string> attns;
  std::string published;
  bool latest = false;
  bool quiet = false;
};

void setup_report(CLI::App& app, ReportOptions& opt);
int run_report(const ReportOptions& opt);

}  // namespace lra

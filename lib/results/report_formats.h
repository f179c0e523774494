// The report's tables rendered as Markdown, CSV and LaTeX, and every format written to a folder.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "results/report.h"

namespace lra {

// One table as Markdown (title, context, the table, notes), and as a plain CSV of its header and rows.
std::string table_markdown(const TableText& table);
std::string table_csv(const TableText& table);

std::string report_markdown(const Report& report);
std::string report_latex(const Report& report);
// Long-form CSV, one line per cell: ("accuracy.csv", ...) and ("efficiency.csv", ...).
std::vector<std::pair<std::string, std::string>> report_csv(const Report& report);

// Writes the formats named by `format` (md, csv, latex, html or all) into `dir` (created if needed) and
// returns the paths written.
std::vector<std::string> write_report(const Report& report, const std::string& dir, const std::string& format);

}  // namespace lra

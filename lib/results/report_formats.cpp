#include "results/report_formats.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <optional>

#include "core/check.h"
#include "core/files.h"
#include "results/report_html.h"

namespace lra {

namespace {

// ---- CSV ----

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::string csv_line(const std::vector<std::string>& fields) {
  std::string line;
  for (size_t i = 0; i < fields.size(); ++i) line += (i ? "," : "") + csv_field(fields[i]);
  return line + "\n";
}

std::string opt_number(const std::optional<double>& v, int decimals) {
  return v ? format_number(*v, decimals) : std::string();
}

// ---- Markdown and LaTeX ----

std::string md_cell(const std::string& s) {
  std::string out;
  for (char c : s) out += c == '|' ? std::string("\\|") : std::string(1, c);
  return out;
}

std::string latex_escape(const std::string& s) {
  static const std::vector<std::pair<std::string, std::string>> map = {{"\\", "\\textbackslash{}"},
                                                                       {"&", "\\&"},
                                                                       {"%", "\\%"},
                                                                       {"$", "\\$"},
                                                                       {"#", "\\#"},
                                                                       {"_", "\\_"},
                                                                       {"{", "\\{"},
                                                                       {"}", "\\}"},
                                                                       {"~", "\\textasciitilde{}"},
                                                                       {"^", "\\textasciicircum{}"},
                                                                       {"\u00b1", "$\\pm$"},
                                                                       {"\u2020", "\\textsuperscript{\\dag}"},
                                                                       {"\u2021", "\\textsuperscript{\\ddag}"},
                                                                       {"\u0394", "$\\Delta$"},
                                                                       {"\u2212", "$-$"},
                                                                       {"<", "\\textless{}"},
                                                                       {">", "\\textgreater{}"}};
  std::string out;
  for (size_t i = 0; i < s.size();) {
    bool done = false;
    for (const auto& [from, to] : map)
      if (s.compare(i, from.size(), from) == 0) {
        out += to;
        i += from.size();
        done = true;
        break;
      }
    if (!done) out += s[i++];
  }
  return out;
}

}  // namespace

std::string table_markdown(const TableText& t) {
  std::string md = fmt::format("## {}\n\n", t.title);
  for (const auto& c : t.context) md += fmt::format("- {}\n", c);
  md += "\n|";
  for (const auto& h : t.header) md += " " + md_cell(h) + " |";
  md += "\n|";
  for (size_t i = 0; i < t.header.size(); ++i) md += i < t.label_columns ? "---|" : "---:|";
  md += "\n";
  for (const auto& row : t.rows) {
    md += "|";
    for (const auto& c : row) md += " " + md_cell(c) + " |";
    md += "\n";
  }
  if (!t.notes.empty()) {
    md += "\nNotes:\n";
    for (const auto& n : t.notes) md += fmt::format("- {}\n", n);
  }
  return md;
}

std::string table_csv(const TableText& t) {
  std::string csv = csv_line(t.header);
  for (const auto& row : t.rows) csv += csv_line(row);
  return csv;
}

std::string report_markdown(const Report& report) {
  std::string md = "# LRA report\n\n";
  const auto tables = report_tables(report);
  if (tables.empty()) md += "No run or bench records found.\n\n";
  for (const auto& t : tables) md += table_markdown(t) + "\n";
  if (!report.skipped.empty()) {
    md += "## Skipped files\n\n";
    for (const auto& s : report.skipped) md += fmt::format("- {}\n", s);
    md += "\n";
  }
  return md;
}

std::string report_latex(const Report& report) {
  std::string tex =
      "% Written by lra report. Compiles on its own (pdflatex); copy the table environments into a paper.\n"
      "\\documentclass{article}\n\\usepackage[margin=2cm,landscape]{geometry}\n\\usepackage{booktabs}\n"
      "\\usepackage{graphicx}\n\\begin{document}\n\\section*{LRA report}\n";
  const auto tables = report_tables(report);
  if (tables.empty()) tex += "No run or bench records found.\n";
  for (const auto& t : tables) {
    tex += fmt::format("\n\\subsection*{{{}}}\n\\begin{{itemize}}\n", latex_escape(t.title));
    for (const auto& c : t.context) tex += fmt::format("  \\item {}\n", latex_escape(c));
    tex += "\\end{itemize}\n";
    tex += fmt::format(
        "\\begin{{table}}[h]\n\\centering\n\\label{{tab:{}}}\n\\resizebox{{\\textwidth}}{{!}}{{%\n"
        "\\begin{{tabular}}{{{}{}}}\n\\toprule\n",
        t.id, std::string(t.label_columns, 'l'), std::string(t.header.size() - t.label_columns, 'r'));
    std::vector<std::string> cells;
    for (const auto& h : t.header) cells.push_back(latex_escape(h));
    tex += fmt::format("{} \\\\\n\\midrule\n", fmt::join(cells, " & "));
    for (size_t i = 0; i < t.rows.size(); ++i) {
      if (i > 0 && t.row_kind[i] == "ours") tex += "\\addlinespace\n";
      cells.clear();
      for (const auto& c : t.rows[i]) cells.push_back(latex_escape(c));
      tex += fmt::format("{} \\\\\n", fmt::join(cells, " & "));
    }
    tex += "\\bottomrule\n\\end{tabular}}\n\\end{table}\n";
    if (!t.notes.empty()) {
      tex += "\\begin{itemize}\n";
      for (const auto& n : t.notes) tex += fmt::format("  \\item {}\n", latex_escape(n));
      tex += "\\end{itemize}\n";
    }
  }
  if (!report.skipped.empty()) {
    tex += "\n\\subsection*{Skipped files}\n\\begin{itemize}\n";
    for (const auto& s : report.skipped) tex += fmt::format("  \\item {}\n", latex_escape(s));
    tex += "\\end{itemize}\n";
  }
  return tex + "\\end{document}\n";
}

std::vector<std::pair<std::string, std::string>> report_csv(const Report& report) {
  std::vector<std::pair<std::string, std::string>> out;
  const Published& pub = report.published;
  if (!report.accuracy.empty()) {
    std::string csv = csv_line({"preset", "task", "attn", "config", "status", "n_seeds", "seeds", "values", "mean", "std",
                                "failures", "comparable", "data", "config_diffs", "published", "published_text",
                                "published_row", "published_verified", "published_caveat", "difference"});
    for (const auto& t : report.accuracy) {
      const bool lra_avg = t.avg_is_lra();
      for (const auto& row : t.rows) {
        // What the row's runs change from the preset: the table's common changes and the row's own.
        std::vector<std::string> changes = t.common_changes;
        if (!row.config.empty()) changes.push_back(row.config);
        const std::string config = fmt::format("{}", fmt::join(changes, ", "));
        for (size_t i = 0; i < t.tasks.size(); ++i) {
          const AccuracyCell& c = row.cells[i];
          const PublishedValue* v = pub.accuracy(row.attn, t.tasks[i]);
          std::vector<std::string> values, seeds;
          for (double x : c.values) values.push_back(format_number(x, 4));
          for (uint64_t s : c.seeds) seeds.push_back(std::to_string(s));
          const std::string status = c.has_value()        ? (c.failures.empty() ? "ok" : "partial")
                                     : c.failures.empty() ? "missing"
                                     : c.all_interrupted  ? "interrupted"
                                                          : "failed";
          const bool diff = c.has_value() && c.comparable && v != nullptr && v->value;
          csv += csv_line({t.preset, t.tasks[i], row.attn, config, status, std::to_string(c.values.size()),
                           fmt::format("{}", fmt::join(seeds, " ")), fmt::format("{}", fmt::join(values, " ")),
                           c.has_value() ? format_number(c.mean, 4) : "", c.has_value() ? format_number(c.std, 4) : "",
                           fmt::format("{}", fmt::join(c.failures, " | ")), c.comparable ? "true" : "false", c.data,
                           fmt::format("{}", fmt::join(c.config_diffs, " | ")),
                           v != nullptr ? opt_number(v->value, 2) : "", v != nullptr ? v->text : "",
                           v != nullptr ? fmt::format("{} {}: {}", paper_short(v->paper), v->table, v->row) : "",
                           v != nullptr ? (v->verified ? "true" : "false") : "", v != nullptr ? v->caveat : "",
                           diff ? format_number(c.mean - *v->value, 4) : ""});
        }
        if (t.avg_tasks.size() < 2) continue;  // as the tables: no average of one task
        const bool complete = row.avg && row.avg_count == static_cast<int>(t.avg_tasks.size());
        const PublishedValue* v = lra_avg ? pub.accuracy(row.attn, "avg") : nullptr;
        const bool diff = complete && row.avg_comparable && v != nullptr && v->value;
        csv += csv_line({t.preset, "avg", row.attn, config,
                         !row.avg   ? "missing"
                         : complete ? "ok"
                                    : "partial",
                         std::to_string(row.avg_count), "", "", opt_number(row.avg, 4), "", "",
                         row.avg_comparable ? "true" : "false", fmt::format("{}", fmt::join(t.avg_tasks, " ")), "",
                         v != nullptr ? opt_number(v->value, 2) : "", "",
                         v != nullptr ? fmt::format("{} {}: {}", paper_short(v->paper), v->table, v->row) : "",
                         v != nullptr ? (v->verified ? "true" : "false") : "", v != nullptr ? v->caveat : "",
                         diff ? format_number(*row.avg - *v->value, 4) : ""});
      }
    }
    out.emplace_back("accuracy.csv", csv);
  }
  if (!report.efficiency.empty()) {
    std::string csv =
        csv_line({"setting", "hardware", "attn", "length", "ms_median", "steps_per_sec", "peak_mib", "speed_vs_softmax",
                  "memory_vs_softmax", "published_steps_per_sec", "published_speed_relative", "published_memory_gb",
                  "published_memory_relative", "published_row", "published_verified", "published_caveat"});
    for (const auto& t : report.efficiency)
      for (const auto& row : t.rows)
        for (size_t i = 0; i < t.lengths.size(); ++i) {
          const EfficiencyCell& c = row.cells[i];
          const int L = t.lengths[i];
          const PublishedValue* s = pub.efficiency(row.attn, "steps_per_sec", L);
          const PublishedValue* m = pub.efficiency(row.attn, "memory_gb", L);
          const PublishedValue* ref = pub.efficiency("softmax", "memory_gb", L);
          std::optional<double> mem_rel;
          if (m != nullptr && m->value && ref != nullptr && ref->value) mem_rel = *m->value / *ref->value;
          std::string caveat;
          for (const PublishedValue* v : {s, m})
            if (v != nullptr && !v->caveat.empty()) caveat = v->caveat;
          csv += csv_line(
              {t.setting, t.hardware, row.attn, std::to_string(L), c.present ? format_number(c.ms, 4) : "",
               c.present ? format_number(c.steps_per_sec(), 4) : "", c.present ? format_number(c.peak_mib, 3) : "",
               opt_number(c.speed_rel, 4), opt_number(c.memory_rel, 4), s != nullptr ? opt_number(s->value, 2) : "",
               s != nullptr ? opt_number(s->relative, 2) : "", m != nullptr ? opt_number(m->value, 2) : "",
               opt_number(mem_rel, 4),
               s != nullptr ? fmt::format("{} {}: {}", paper_short(s->paper), s->table, s->row) : "",
               s != nullptr ? ((s->verified && (m == nullptr || m->verified)) ? "true" : "false") : "", caveat});
        }
    out.emplace_back("efficiency.csv", csv);
  }
  return out;
}

std::vector<std::string> write_report(const Report& report, const std::string& dir, const std::string& format) {
  LRA_CHECK(format == "md" || format == "csv" || format == "latex" || format == "html" || format == "all",
            "--format must be md, csv, latex, html or all, got '{}'", format);
  make_dirs(dir);
  std::vector<std::string> paths;
  auto write = [&](const std::string& name, const std::string& content) {
    const std::string path = dir + "/" + name;
    write_file_atomic(path, content);
    paths.push_back(path);
  };
  const bool all = format == "all";
  if (all || format == "md") write("report.md", report_markdown(report));
  if (all || format == "csv")
    for (const auto& [name, content] : report_csv(report)) write(name, content);
  if (all || format == "latex") write("report.tex", report_latex(report));
  if (all || format == "html") write("report.html", report_html(report));
  return paths;
}

}  // namespace lra

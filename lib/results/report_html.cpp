// The HTML page of `lra report`: the tables of report_tables() and the figures, drawn as inline SVG, in one
// self-contained file (inline CSS, no scripts, nothing fetched from elsewhere). Written as well-formed XML
// (every element closed, attributes quoted) so tools and tests can parse it.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "results/report_html.h"
#include "results/svg.h"

namespace lra {

namespace {

const char* const kStyle = R"(
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1400px;
       padding: 0 16px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.8em 0; }
th, td { padding: 3px 8px; border-bottom: 1px solid #eee; white-space: nowrap; }
th { background: #f4f4f4; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.ours td { border-top: 1px solid #bbb; font-weight: 600; }
tr.paper td { color: #555; font-style: italic; }
tr.diff td { color: #666; font-size: 0.92em; }
ul.context { font-size: 0.9em; color: #444; }
ul.notes { font-size: 0.82em; color: #555; }
figure { margin: 1.2em 0; }
figcaption { font-size: 0.85em; color: #444; max-width: 900px; }
svg { background: #fff; font-family: system-ui, sans-serif; }
svg .frame { fill: none; stroke: #999; }
svg .grid { stroke: #e6e6e6; }
svg .tick { font-size: 11px; fill: #555; }
svg .label { font-size: 12px; fill: #333; }
svg .title { font-size: 13px; font-weight: 600; fill: #222; text-anchor: middle; }
svg .legend { font-size: 11px; fill: #333; }
svg .point { font-size: 10px; fill: #333; }
svg .empty { font-size: 12px; fill: #888; text-anchor: middle; }
)";

const char* const kDashes[] = {"", "6 3", "2 3", "8 3 2 3", "10 4"};

std::string table_html(const TableText& t) {
  std::string h =
      fmt::format("<section id=\"{}\">\n<h2>{}</h2>\n<ul class=\"context\">\n", xml_escape(t.id), xml_escape(t.title));
  for (const auto& c : t.context) h += fmt::format("<li>{}</li>\n", xml_escape(c));
  h += "</ul>\n<table>\n<thead><tr>";
  for (size_t i = 0; i < t.header.size(); ++i)
    h += fmt::format("<th{}>{}</th>", i >= t.label_columns ? " class=\"num\"" : "", xml_escape(t.header[i]));
  h += "</tr></thead>\n<tbody>\n";
  for (size_t r = 0; r < t.rows.size(); ++r) {
    h += fmt::format("<tr class=\"{}\">", t.row_kind[r]);
    for (size_t i = 0; i < t.rows[r].size(); ++i)
      h += fmt::format("<td{}>{}</td>", i >= t.label_columns ? " class=\"num\"" : "", xml_escape(t.rows[r][i]));
    h += "</tr>\n";
  }
  h += "</tbody>\n</table>\n";
  if (!t.notes.empty()) {
    h += "<ul class=\"notes\">\n";
    for (const auto& n : t.notes) h += fmt::format("<li>{}</li>\n", xml_escape(n));
    h += "</ul>\n";
  }
  return h;
}

class Figures {
 public:
  std::string add(const std::string& svg, const std::string& caption) {
    ++n_;
    return fmt::format("<figure id=\"figure-{0}\">\n{1}\n<figcaption>Figure {0}. {2}</figcaption>\n</figure>\n", n_,
                       svg, xml_escape(caption));
  }

 private:
  int n_ = 0;
};

// Loss and validation accuracy of every run of one task and preset.
std::string curves_figure(const AccuracyTable& t, const std::string& task, Figures& figs) {
  PlotPanel loss, acc;
  loss.title = "training loss";
  loss.xlabel = acc.xlabel = "step";
  loss.ylabel = "loss (mean since the last evaluation)";
  acc.title = "validation accuracy";
  acc.ylabel = "validation accuracy (%)";
  std::vector<uint64_t> seeds;
  for (const auto& c : t.curves)
    if (c.task == task && std::find(seeds.begin(), seeds.end(), c.seed) == seeds.end()) seeds.push_back(c.seed);
  std::sort(seeds.begin(), seeds.end());
  size_t runs = 0;
  for (const auto& c : t.curves) {
    if (c.task != task) continue;
    ++runs;
    PlotSeries s;
    s.label = fmt::format("{}{} seed {}{}", c.attn, c.config.empty() ? "" : " [" + c.config + "]", c.seed,
                          c.status == "ok" ? "" : " (" + c.status + ")");
    s.color = variant_color(c.attn);
    const size_t k = static_cast<size_t>(std::find(seeds.begin(), seeds.end(), c.seed) - seeds.begin());
    s.dash = kDashes[k % (sizeof kDashes / sizeof kDashes[0])];
    s.x = c.step;
    s.y = c.loss;
    loss.series.push_back(s);
    s.y = c.val_accuracy;
    acc.series.push_back(s);
  }
  const std::string title = fmt::format("Training curves: {}, preset {}", task_label(task), t.preset);
  return figs.add(svg_plot({loss, acc}, title, true),
                  fmt::format("{} ({} runs): training loss and validation accuracy at each evaluation. Colour: the "
                              "variant; line style: the seed.",
                              title, runs));
}

// LRA's Figure 3: accuracy against speed, memory as the marker size; ours beside the paper's.
std::string accuracy_speed_figure(const AccuracyTable& t, const Published& pub, Figures& figs) {
  PlotPanel ours, paper;
  ours.scatter = paper.scatter = true;
  std::vector<std::string> avg_labels;
  for (const auto& task : t.avg_tasks) avg_labels.push_back(task_label(task));
  ours.title = fmt::format("ours, preset {}", t.preset);
  ours.xlabel = "training steps/s (mean over the variant's runs)";
  ours.ylabel = "average test accuracy (%)";
  ours.empty_note = "no variant has both an average and a speed yet";
  double max_mib = 0;
  for (const auto& r : t.rows)
    if (r.avg && r.peak_mib) max_mib = std::max(max_mib, *r.peak_mib);
  double lo = 0, hi = 0;
  for (const auto& r : t.rows) {
    if (!r.avg || !r.steps_per_sec) continue;
    PlotSeries s;
    s.label = r.name();
    s.color = variant_color(r.attn);
    s.x = {*r.steps_per_sec};
    s.y = {*r.avg};
    s.radius = {4 + 14 * std::sqrt(*r.peak_mib / std::max(max_mib, 1e-9))};
    s.point_labels = {r.avg_count < static_cast<int>(t.avg_tasks.size())
                          ? fmt::format("{} ({}/{})", r.name(), r.avg_count, t.avg_tasks.size())
                          : r.name()};
    lo = lo == 0 ? *r.steps_per_sec : std::min(lo, *r.steps_per_sec);
    hi = std::max(hi, *r.steps_per_sec);
    ours.series.push_back(s);
  }
  ours.logx = lo > 0 && hi / lo > 20;

  paper.title = "LRA paper: Table 1 Avg vs Table 2 at 4K";
  paper.xlabel = "training steps/s at length 4K (TPU v3)";
  paper.ylabel = "LRA Avg accuracy (%)";
  double max_gb = 0;
  for (const auto& v : pub.values)
    if (v.metric == "memory_gb" && v.length == 4096 && v.value) max_gb = std::max(max_gb, *v.value);
  for (const auto& attn : report_attention_order()) {
    const PublishedValue* avg = pub.accuracy(attn, "avg");
    const PublishedValue* sps = pub.efficiency(attn, "steps_per_sec", 4096);
    const PublishedValue* mem = pub.efficiency(attn, "memory_gb", 4096);
    if (avg == nullptr || sps == nullptr || mem == nullptr || !avg->value || !sps->value || !mem->value) continue;
    PlotSeries s;
    s.label = avg->row;
    s.color = variant_color(attn);
    s.x = {*sps->value};
    s.y = {*avg->value};
    s.radius = {4 + 14 * std::sqrt(*mem->value / max_gb)};
    s.point_labels = {avg->row};
    paper.series.push_back(s);
  }
  const std::string title = fmt::format("Accuracy against speed, preset {}", t.preset);
  return figs.add(
      svg_plot({ours, paper}, title, false),
      fmt::format("{}: as LRA's Figure 3, the marker area is the peak memory (ours: the planned arenas of the "
                  "training runs; the paper: GB per TPU device at 4K). Our average is over {}; (k/n) marks a variant "
                  "with only k of those n tasks. Speeds are not comparable across the two panels (different models "
                  "and hardware).",
                  title, fmt::join(avg_labels, ", ")));
}

// Speed and memory against sequence length, one line per variant.
std::string efficiency_figure(const EfficiencyTable& t, Figures& figs) {
  PlotPanel speed, mem;
  speed.title = "speed";
  speed.xlabel = mem.xlabel = "sequence length L";
  speed.ylabel = "steps/s";
  mem.title = "peak memory";
  mem.ylabel = "peak MiB";
  speed.logy = mem.logy = true;
  speed.xticks = mem.xticks = std::vector<double>(t.lengths.begin(), t.lengths.end());
  for (const auto& r : t.rows) {
    PlotSeries s;
    s.label = r.attn;
    s.color = variant_color(r.attn);
    PlotSeries m = s;
    for (size_t i = 0; i < t.lengths.size(); ++i) {
      if (!r.cells[i].present) continue;
      s.x.push_back(t.lengths[i]);
      s.y.push_back(r.cells[i].steps_per_sec());
      m.x.push_back(t.lengths[i]);
      m.y.push_back(r.cells[i].peak_mib);
    }
    speed.series.push_back(s);
    mem.series.push_back(m);
  }
  const std::string title = fmt::format("Speed and memory against length ({})", t.setting);
  return figs.add(svg_plot({speed, mem}, title, true),
                  fmt::format("{}, on {}: one line per variant. Speed: forward + backward steps of one attention layer "
                              "per second; memory: the peak of the layer's planned arenas. The value axes are "
                              "logarithmic, so equal slopes mean equal growth rates.",
                              title, t.hardware));
}

}  // namespace

std::string report_html(const Report& report) {
  const auto tables = report_tables(report);
  std::string h = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<title>LRA report</title>\n";
  h += fmt::format("<style>{}</style>\n</head>\n<body>\n<h1>LRA report</h1>\n", kStyle);
  size_t runs = 0;
  for (const auto& t : report.accuracy) runs += t.curves.size();
  h += fmt::format(
      "<p>{} accuracy table(s), {} efficiency table(s); {} file(s) skipped. Published values come from "
      "results/published, each with its paper, table, row and column.</p>\n",
      report.accuracy.size(), report.efficiency.size(), report.skipped.size());
  if (tables.empty()) h += "<p>No run or bench records found.</p>\n";
  Figures figs;
  size_t k = 0;
  for (const auto& t : report.accuracy) {
    h += table_html(tables[k++]);
    std::set<std::string> with_curves;
    for (const auto& c : t.curves) with_curves.insert(c.task);
    for (const auto& task : t.tasks)
      if (with_curves.count(task) > 0) h += curves_figure(t, task, figs);
    h += accuracy_speed_figure(t, report.published, figs);
    h += "</section>\n";
  }
  for (const auto& t : report.efficiency) {
    h += table_html(tables[k++]);
    h += efficiency_figure(t, figs);
    h += "</section>\n";
  }
  if (!report.skipped.empty()) {
    h += "<section id=\"skipped\">\n<h2>Skipped files</h2>\n<ul>\n";
    for (const auto& s : report.skipped) h += fmt::format("<li>{}</li>\n", xml_escape(s));
    h += "</ul>\n</section>\n";
  }
  return h + "</body>\n</html>\n";
}

}  // namespace lra

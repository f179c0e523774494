#include "results/report.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "core/check.h"
#include "tasks/task.h"

namespace lra {

namespace {

// The tasks LRA's Avg is over (Path-X excluded).
const std::vector<std::string> kLraAvgTasks = {"listops", "text", "retrieval", "image", "pathfinder"};

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

void add_unique(std::vector<std::string>& v, const std::string& s) {
  if (!contains(v, s)) v.push_back(s);
}

// `names` in the order of `order`; names it lacks come after, sorted.
std::vector<std::string> ordered(std::set<std::string> names, const std::vector<std::string>& order) {
  std::vector<std::string> out;
  for (const auto& n : order)
    if (names.erase(n) > 0) out.push_back(n);
  out.insert(out.end(), names.begin(), names.end());
  return out;
}

std::string build_of(const nlohmann::json& env) {
  return fmt::format("lra {} (git {})", env.value("lra_version", std::string("?")),
                     env.value("git_sha", std::string("?")));
}

std::string shorten(const std::string& s, size_t n) { return s.size() <= n ? s : s.substr(0, n) + "..."; }

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0.0 : s / static_cast<double>(v.size());
}

// Sample standard deviation (n - 1); 0 for fewer than two values.
double std_of(const std::vector<double>& v) {
  if (v.size() < 2) return 0.0;
  const double m = mean_of(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

// A curve point's value: `missing` where the point lacks it, NaN where it holds null (how JSON writes a
// non-finite number; the plots leave such points out).
double point_value(const nlohmann::json& p, const char* key, double missing) {
  if (!p.contains(key)) return missing;
  return p[key].is_null() ? NAN : p[key].get<double>();
}

std::string describe_failure(const RunEntry& e) {
  const nlohmann::json& r = e.record;
  if (e.status == "interrupted") {
    const int64_t step = r.contains("metrics") ? r["metrics"].value("steps_done", int64_t{0}) : 0;
    return fmt::format("seed {}: interrupted at step {} (continue: lra run --resume {})", e.seed, step,
                       r.value("checkpoint", std::string("?")));
  }
  if (e.status == "failed")
    return fmt::format("seed {}: failed: {}", e.seed, shorten(r.value("error", std::string("no error recorded")), 240));
  return fmt::format("seed {}: did not finish (status '{}'; the process probably died)", e.seed, e.status);
}

AccuracyCell build_cell(const std::vector<const RunEntry*>& runs) {
  AccuracyCell c;
  std::vector<const RunEntry*> ok, comparable_ok;
  for (const RunEntry* e : runs) {
    if (!e->ok()) continue;
    ok.push_back(e);
    if (data_comparable(e->record, nullptr)) comparable_ok.push_back(e);
  }
  // Never average the paper's data with a stand-in: the paper's data wins when both are there.
  std::vector<const RunEntry*> use = comparable_ok.empty() ? ok : comparable_ok;
  c.other_data = static_cast<int>(ok.size() - use.size());
  std::map<uint64_t, const RunEntry*> by_seed;  // the latest ok run of each seed
  for (const RunEntry* e : use) {
    auto& slot = by_seed[e->seed];
    if (slot == nullptr || e->started_at > slot->started_at) slot = e;
  }
  std::set<uint64_t> ok_seeds;
  for (const RunEntry* e : ok) ok_seeds.insert(e->seed);
  std::map<uint64_t, const RunEntry*> failed;  // the latest failure of each seed that has no ok run
  for (const RunEntry* e : runs) {
    if (e->ok() || ok_seeds.count(e->seed) > 0) continue;
    auto& slot = failed[e->seed];
    if (slot == nullptr || e->started_at > slot->started_at) slot = e;
  }
  std::vector<std::string> data;
  nlohmann::json first_config;  // the first seed's config, without its seed
  for (const auto& [seed, e] : by_seed) {
    c.values.push_back(e->test_accuracy_pct());
    c.seeds.push_back(seed);
    c.steps_per_sec.push_back(e->record["speed"]["steps_per_sec"].get<double>());
    c.peak_mib.push_back(e->record["memory"]["peak_arena_bytes"].get<double>() / 1048576.0);
    std::string why;
    c.comparable = data_comparable(e->record, &why) && c.comparable;
    add_unique(data, why);
    // Runs of one cell should differ only in their seed (and threads, which config_matches ignores).
    nlohmann::json cfg = e->record.value("config", nlohmann::json::object());
    cfg.erase("seed");
    if (first_config.is_null()) {
      first_config = cfg;
      continue;
    }
    std::vector<std::string> diffs;
    config_matches(cfg, first_config, &diffs);
    for (const auto& d : diffs) add_unique(c.config_diffs, fmt::format("seed {} {}", seed, d));
  }
  c.all_interrupted = !failed.empty();
  for (const auto& [seed, e] : failed) {
    c.failures.push_back(describe_failure(*e));
    c.all_interrupted = c.all_interrupted && e->status == "interrupted";
    std::string why;
    data_comparable(e->record, &why);
    if (e->record.contains("dataset") && by_seed.empty()) add_unique(data, why);
  }
  c.data = fmt::format("{}", fmt::join(data, "; "));
  c.mean = mean_of(c.values);
  c.std = std_of(c.values);
  return c;
}

AccuracyTable build_accuracy_table(const std::string& preset, const std::vector<const RunEntry*>& all,
                                   const Published& published, const ReportScope& opt) {
  AccuracyTable t;
  t.preset = preset;
  const auto changes = run_changes(all, opt.preset_config);
  std::vector<const RunEntry*> runs = all;
  if (opt.latest) {
    // Per (task, variant): the latest ok run's config (the latest run's when none is ok).
    std::map<std::pair<std::string, std::string>, const RunEntry*> pick;
    for (const RunEntry* e : all) {
      const RunEntry*& slot = pick[{e->task, e->attn}];
      if (slot == nullptr || (e->ok() && !slot->ok()) || (e->ok() == slot->ok() && e->started_at > slot->started_at))
        slot = e;
    }
    runs.clear();
    for (const RunEntry* e : all) {
      if (changes.at(e) == changes.at(pick.at({e->task, e->attn}))) {
        runs.push_back(e);
        continue;
      }
      const std::string what = changes_label(changes.at(e), {});
      t.left_out.push_back(fmt::format("{} ({})", e->path, what.empty() ? "the preset's config" : what));
    }
  }
  t.common_changes = common_changes(runs, changes);
  std::map<const RunEntry*, std::string> labels;  // what names each run's row
  for (const RunEntry* e : runs) labels[e] = changes_label(changes.at(e), t.common_changes);
  auto label = [&](const RunEntry* e) -> const std::string& { return labels.at(e); };
  std::set<std::string> tasks, attns;
  for (const RunEntry* e : runs) {
    tasks.insert(e->task);
    attns.insert(e->attn);
  }
  t.tasks = opt.tasks.empty() ? ordered(tasks, task_names()) : opt.tasks;
  const std::vector<std::string> attn_order = opt.attns.empty() ? ordered(attns, report_attention_order()) : opt.attns;
  for (const auto& task : t.tasks)
    if (task != "pathx") t.avg_tasks.push_back(task);

  std::map<std::string, std::vector<std::string>> data_by_task;
  // A row per (variant, config): the preset's config first, then the others by name.
  std::vector<std::pair<std::string, std::string>> row_keys;
  for (const auto& attn : attn_order) {
    std::set<std::string> configs;
    for (const RunEntry* e : runs)
      if (e->attn == attn && contains(t.tasks, e->task)) configs.insert(label(e));
    if (configs.empty()) configs.insert("");  // a variant asked for by name, with no runs yet
    for (const auto& c : configs) row_keys.emplace_back(attn, c);
  }
  for (const auto& [attn, config] : row_keys) {
    AccuracyRow row;
    row.attn = attn;
    row.config = config;
    row.published_row = published.accuracy_row(attn);
    std::vector<double> avg_values, speeds, mems;
    for (const auto& task : t.tasks) {
      std::vector<const RunEntry*> cell_runs;
      for (const RunEntry* e : runs)
        if (e->task == task && e->attn == attn && label(e) == config) cell_runs.push_back(e);
      AccuracyCell cell = build_cell(cell_runs);
      if (!cell.data.empty()) add_unique(data_by_task[task], cell.data);
      if (cell.has_value() && (contains(t.avg_tasks, task) || t.avg_tasks.empty())) {
        speeds.insert(speeds.end(), cell.steps_per_sec.begin(), cell.steps_per_sec.end());
        mems.insert(mems.end(), cell.peak_mib.begin(), cell.peak_mib.end());
      }
      if (cell.has_value() && contains(t.avg_tasks, task)) {
        avg_values.push_back(cell.mean);
        row.avg_comparable = row.avg_comparable && cell.comparable;
      }
      row.cells.push_back(std::move(cell));
    }
    if (!avg_values.empty()) {
      row.avg = mean_of(avg_values);
      row.avg_count = static_cast<int>(avg_values.size());
    }
    if (!speeds.empty()) {
      row.steps_per_sec = mean_of(speeds);
      row.peak_mib = mean_of(mems);
    }
    t.rows.push_back(std::move(row));
  }
  for (const auto& task : t.tasks)
    if (data_by_task.count(task) > 0)
      t.data.push_back(fmt::format("{}: {}", task_label(task), fmt::join(data_by_task[task], "; ")));

  std::vector<const RunEntry*> in_grid;
  for (const RunEntry* e : runs)
    if (contains(t.tasks, e->task) && contains(attn_order, e->attn)) in_grid.push_back(e);
  for (const RunEntry* e : in_grid) {
    if (e->record.contains("env")) {
      add_unique(t.hardware, describe_hardware(e->record["env"]));
      add_unique(t.builds, build_of(e->record["env"]));
    }
    const nlohmann::json curve = e->record.value("curve", nlohmann::json::array());
    if (curve.empty()) continue;
    RunCurve rc;
    rc.task = e->task;
    rc.attn = e->attn;
    rc.config = label(e);
    rc.status = e->status;
    rc.seed = e->seed;
    for (const auto& p : curve) {
      rc.step.push_back(point_value(p, "step", 0.0));
      rc.loss.push_back(point_value(p, "loss", 0.0));
      rc.val_accuracy.push_back(100.0 * point_value(p, "val_accuracy", 0.0));
    }
    t.curves.push_back(std::move(rc));
  }
  // Curves in table order: by task column, then variant row, then seed.
  auto rank = [](const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) - v.begin();
  };
  std::stable_sort(t.curves.begin(), t.curves.end(), [&](const RunCurve& a, const RunCurve& b) {
    return std::make_tuple(rank(t.tasks, a.task), rank(attn_order, a.attn), a.config, a.seed) <
           std::make_tuple(rank(t.tasks, b.task), rank(attn_order, b.attn), b.config, b.seed);
  });
  return t;
}

std::vector<EfficiencyTable> build_efficiency_tables(const std::vector<BenchEntry>& benches, const Published& published,
                                                     const ReportScope& opt) {
  struct Measured {
    std::string created;
    const nlohmann::json* row;
    std::string path;
  };
  struct Group {
    std::string setting, hardware;
    std::vector<std::string> presets;
    std::map<std::pair<std::string, int>, Measured> cells;  // (attn, length): the latest measurement
  };
  std::vector<std::pair<std::string, Group>> groups;  // keyed by setting + hardware, in order of appearance
  for (const BenchEntry& b : benches) {
    const std::string created = b.record.value("created", std::string());
    const nlohmann::json& env = b.record["env"];
    for (const auto& r : b.record["rows"]) {
      const std::string attn = r["attn"].get<std::string>();
      if (!opt.attns.empty() && !contains(opt.attns, attn)) continue;
      const int dim = r["dim"].get<int>(), heads = r["heads"].get<int>();
      const std::string setting =
          fmt::format("B={} H={} D={} (head size {}), {}, {}, device {}", r["batch"].get<int>(), heads, dim,
                      dim / heads, r["mode"] == "fwd" ? "forward only" : "forward + backward",
                      r["causal"].get<bool>() ? "causal" : "bidirectional", r["device"].get<std::string>());
      nlohmann::json run_env = env;
      run_env["threads"] = r["threads"];
      const std::string hardware = describe_hardware(run_env);
      const std::string key = setting + " | " + hardware;
      auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == key; });
      if (it == groups.end()) {
        groups.push_back({key, Group{setting, hardware, {}, {}}});
        it = groups.end() - 1;
      }
      const std::string preset = b.record.value("config", nlohmann::json::object()).value("preset", std::string());
      if (!preset.empty()) add_unique(it->second.presets, preset);
      Measured& m = it->second.cells[{attn, r["len"].get<int>()}];
      if (m.row == nullptr || created >= m.created) m = Measured{created, &r, b.path};
    }
  }
  std::vector<EfficiencyTable> tables;
  for (const auto& [key, g] : groups) {
    EfficiencyTable t;
    t.setting = g.setting;
    t.hardware = g.hardware;
    t.presets = g.presets;
    std::set<std::string> attns;
    std::set<int> lengths;
    for (const auto& [k, m] : g.cells) {
      attns.insert(k.first);
      lengths.insert(k.second);
      add_unique(t.sources, m.path);
    }
    t.lengths.assign(lengths.begin(), lengths.end());
    for (const auto& attn : opt.attns.empty() ? ordered(attns, report_attention_order()) : opt.attns) {
      EfficiencyRow row;
      row.attn = attn;
      row.published_row = published.efficiency_row(attn);
      for (int L : t.lengths) {
        EfficiencyCell c;
        const auto it = g.cells.find({attn, L});
        if (it != g.cells.end()) {
          c.present = true;
          row.attn_params = it->second.row->value("attn_params", nlohmann::json::object());
          c.ms = (*it->second.row)["ms_median"].get<double>();
          c.peak_mib = (*it->second.row)["peak_arena_bytes"].get<double>() / 1048576.0;
          const auto sm = g.cells.find({"softmax", L});
          if (sm != g.cells.end()) {
            c.speed_rel = (*sm->second.row)["ms_median"].get<double>() / c.ms;
            c.memory_rel = c.peak_mib / ((*sm->second.row)["peak_arena_bytes"].get<double>() / 1048576.0);
          }
        }
        row.cells.push_back(c);
      }
      t.rows.push_back(std::move(row));
    }
    std::sort(t.sources.begin(), t.sources.end());
    tables.push_back(std::move(t));
  }
  return tables;
}

// Footnotes of one table: symbol notes (one each) and numbered notes ([1], [2], ...).
class Notes {
 public:
  // Adds a line under a symbol's note (e.g. "†"), once.
  void symbol(const std::string& mark, const std::string& heading, const std::string& line) {
    auto it = std::find_if(symbols_.begin(), symbols_.end(), [&](const auto& s) { return s.mark == mark; });
    if (it == symbols_.end()) {
      symbols_.push_back({mark, heading, {}});
      it = symbols_.end() - 1;
    }
    add_unique(it->lines, line);
  }
  // A numbered note; returns its reference, e.g. "[2]".
  std::string numbered(const std::string& text) {
    numbered_.push_back(text);
    return fmt::format("[{}]", numbered_.size());
  }
  void plain(const std::string& text) { add_unique(plain_, text); }
  // A published table a printed value came from: its notes follow the table's.
  void source(const std::string& file) { add_unique(sources_, file); }
  const std::vector<std::string>& sources() const { return sources_; }
  std::vector<std::string> lines() const {
    std::vector<std::string> out = plain_;
    for (const auto& s : symbols_)
      out.push_back(fmt::format("{} {}{}{}", s.mark, s.heading, s.lines.empty() ? "" : ": ", fmt::join(s.lines, "; ")));
    for (size_t i = 0; i < numbered_.size(); ++i) out.push_back(fmt::format("[{}] {}", i + 1, numbered_[i]));
    return out;
  }

 private:
  struct Symbol {
    std::string mark, heading;
    std::vector<std::string> lines;
  };
  std::vector<std::string> plain_, sources_;
  std::vector<Symbol> symbols_;
  std::vector<std::string> numbered_;
};

const char* const kUnverified = "\u2020";  // dagger
const char* const kStandIn = "\u2021";     // double dagger
const char* const kCaveat = "*";

// The marks of a published value (unverified, caveat), noting what they mean.
std::string published_marks(const PublishedValue& v, Notes& notes) {
  notes.source(v.file);
  std::string s;
  if (!v.verified) {
    s += std::string(" ") + kUnverified;
    notes.symbol(kUnverified, "not yet checked against the paper",
                 fmt::format("{} {}, {} ({})", paper_short(v.paper), v.table, v.row,
                             v.note.empty() ? "marked [UNVERIFIED] in the reference" : v.note));
  }
  if (!v.caveat.empty()) {
    s += std::string(" ") + kCaveat;
    notes.symbol(kCaveat, "caveat",
                 fmt::format("{} {}, {}, {}: {}", paper_short(v.paper), v.table, v.row, v.column, v.caveat));
  }
  return s;
}

// A published value as printed, with its marks; "n/a" when the paper has none.
std::string published_cell(const PublishedValue* v, Notes& notes, int decimals) {
  if (v == nullptr) return "n/a";
  return (v->value ? format_number(*v->value, decimals) : v->text) + published_marks(*v, notes);
}

std::string signed_number(double v) { return (v >= 0 ? "+" : "") + format_number(v, 2); }

// The notes of the published tables the table printed values from, one line each.
void add_file_notes(const Published& p, Notes& notes) {
  for (const auto& f : p.files)
    if (contains(notes.sources(), f.path) && !f.notes.empty())
      notes.plain(fmt::format("{} ({}): {}", f.title, f.path, fmt::join(f.notes, " ")));
}

TableText accuracy_text(const AccuracyTable& t, const Published& published) {
  TableText out;
  out.id = "accuracy-" + t.preset;
  out.title = fmt::format("Accuracy (test %), preset {}", t.preset);
  out.context.push_back(
      fmt::format("Measured on: {}; built as {}",
                  t.hardware.empty() ? std::string("no finished run") : fmt::format("{}", fmt::join(t.hardware, "; ")),
                  t.builds.empty() ? std::string("?") : fmt::format("{}", fmt::join(t.builds, "; "))));
  out.context.push_back(fmt::format(
      "Preset: {}", t.preset == "cpu"     ? "cpu (lra's small models for a CPU, not the paper's hyperparameters)"
                    : t.preset == "paper" ? "paper (LRA's official configs)"
                                          : t.preset));
  out.context.push_back(
      fmt::format("Data: {}", t.data.empty() ? std::string("none") : fmt::format("{}", fmt::join(t.data, "; "))));
  if (!t.common_changes.empty())
    out.context.push_back(fmt::format("Config: every run changes the preset's {}", fmt::join(t.common_changes, ", ")));
  out.context.push_back(
      "Ours: test accuracy of the final model, mean \u00b1 sample std over seeds (n = number of seeds); the paper's "
      "row follows, then the difference ours \u2212 paper in points");

  Notes notes;
  const bool has_avg = t.avg_tasks.size() > 1;  // an average of one task is that task
  std::vector<std::string> avg_labels;
  for (const auto& task : t.avg_tasks) avg_labels.push_back(task_label(task));
  const bool lra_avg = t.avg_is_lra();
  if (has_avg)
    notes.plain(fmt::format(
        "Avg: the mean over {}{}; (k/n) marks a row with only k of those n tasks. {}", fmt::join(avg_labels, ", "),
        contains(t.tasks, "pathx") ? " (Path-X left out, as in LRA)" : "",
        lra_avg ? "The paper's Avg is the one it prints."
                : "The paper's Avg covers ListOps, Text, Retrieval, Image and Pathfinder, so the paper's row shows "
                  "the mean of its own values over the same tasks instead."));

  if (!t.left_out.empty())
    notes.plain(fmt::format("--latest: each cell shows the config of its latest run; left out, of other configs: {}.",
                            fmt::join(t.left_out, "; ")));
  if (std::any_of(t.rows.begin(), t.rows.end(), [](const AccuracyRow& r) { return !r.config.empty(); }))
    notes.plain("variant [changes]: the runs of a config other than the preset's, named by what they change; runs "
                "of different configs are never averaged (lra report --latest shows the latest config of each cell "
                "instead).");
  out.header = {"Variant", "Source"};
  for (const auto& task : t.tasks) out.header.push_back(task_label(task));
  if (has_avg) out.header.push_back("Avg");

  std::vector<std::string> no_row;
  for (const AccuracyRow& row : t.rows) {
    std::vector<std::string> ours = {row.name(), "ours"};
    for (size_t i = 0; i < t.tasks.size(); ++i) {
      const AccuracyCell& c = row.cells[i];
      std::string s;
      const char* what = c.all_interrupted ? "interrupted" : "failed";
      if (c.has_value()) {
        s = format_number(c.mean, 2);
        if (c.values.size() > 1) s += fmt::format(" \u00b1 {} (n={})", format_number(c.std, 2), c.values.size());
        if (!c.comparable) {
          s += std::string(" ") + kStandIn;
          notes.symbol(kStandIn, "not comparable with the paper, so no difference is printed",
                       fmt::format("{}: {}", task_label(t.tasks[i]), c.data));
        }
        if (!c.failures.empty())
          s += fmt::format(
              " + {} {} {}", c.failures.size(), what,
              notes.numbered(fmt::format("{} / {}: {}", t.tasks[i], row.name(), fmt::join(c.failures, "; "))));
      } else if (!c.failures.empty()) {
        s = fmt::format("{} {}", what,
                        notes.numbered(fmt::format("{} / {}: {}", t.tasks[i], row.name(), fmt::join(c.failures, "; "))));
      } else {
        s = "missing";
      }
      if (!c.config_diffs.empty())
        s += " " + notes.numbered(fmt::format("{} / {}: the runs differ in config ({}); they are averaged anyway",
                                              t.tasks[i], row.name(), fmt::join(c.config_diffs, "; ")));
      if (c.other_data > 0)
        s += " " + notes.numbered(fmt::format("{} / {}: {} run(s) on stand-in data left out beside the paper's data",
                                              t.tasks[i], row.name(), c.other_data));
      ours.push_back(s);
    }
    if (has_avg) {
      std::string s = row.avg ? format_number(*row.avg, 2) : std::string("missing");
      if (row.avg && row.avg_count < static_cast<int>(t.avg_tasks.size()))
        s += fmt::format(" ({}/{})", row.avg_count, t.avg_tasks.size());
      if (row.avg && !row.avg_comparable) s += std::string(" ") + kStandIn;
      ours.push_back(s);
    }
    out.rows.push_back(ours);
    out.row_kind.push_back("ours");
    if (row.published_row.empty()) {
      add_unique(no_row, row.attn);
      continue;
    }
    std::vector<std::string> paper = {"", row.published_row}, diff = {"", "\u0394 ours \u2212 paper"};
    for (size_t i = 0; i < t.tasks.size(); ++i) {
      const PublishedValue* v = published.accuracy(row.attn, t.tasks[i]);
      paper.push_back(published_cell(v, notes, 2));
      const AccuracyCell& c = row.cells[i];
      if (!c.has_value() || v == nullptr || !v->value)
        diff.push_back("");
      else
        diff.push_back(c.comparable ? signed_number(c.mean - *v->value) : std::string("n/c ") + kStandIn);
    }
    if (has_avg) {
      std::optional<double> pub_avg;
      if (lra_avg) {
        const PublishedValue* v = published.accuracy(row.attn, "avg");
        paper.push_back(published_cell(v, notes, 2));
        if (v != nullptr) pub_avg = v->value;
      } else {
        std::vector<double> vals;
        bool verified = true;
        for (const auto& task : t.avg_tasks) {
          const PublishedValue* v = published.accuracy(row.attn, task);
          if (v == nullptr || !v->value) break;
          vals.push_back(*v->value);
          verified = verified && v->verified;
          published_marks(*v, notes);
        }
        if (vals.size() == t.avg_tasks.size()) {
          pub_avg = mean_of(vals);
          paper.push_back(format_number(*pub_avg, 2) + (verified ? "" : std::string(" ") + kUnverified));
        } else {
          paper.push_back("n/a");
        }
      }
      const bool complete = row.avg && row.avg_count == static_cast<int>(t.avg_tasks.size());
      if (!complete || !pub_avg)
        diff.push_back("");
      else
        diff.push_back(row.avg_comparable ? signed_number(*row.avg - *pub_avg) : std::string("n/c ") + kStandIn);
    }
    out.rows.push_back(paper);
    out.row_kind.push_back("paper");
    out.rows.push_back(diff);
    out.row_kind.push_back("diff");
  }
  if (!no_row.empty())
    notes.plain(fmt::format("No published row for {}: shown without a paper value.", fmt::join(no_row, ", ")));
  add_file_notes(published, notes);
  out.notes = notes.lines();
  return out;
}

TableText efficiency_text(const EfficiencyTable& t, size_t index, const Published& published) {
  TableText out;
  out.id = fmt::format("efficiency-{}", index + 1);
  out.title = fmt::format("Efficiency: speed and peak memory by sequence length ({})", t.setting);
  out.context.push_back(fmt::format("Measured on: {}", t.hardware));
  out.context.push_back(
      t.presets.empty() ? std::string("Preset: none (lra bench attn, with the setting above)")
                        : fmt::format("Preset: {} (lra reproduce --table lra-efficiency)", fmt::join(t.presets, ", ")));
  out.context.push_back("Data: random inputs and weights drawn from the bench seed, the same for every variant");
  out.context.push_back(fmt::format(
      "Ours: one attention layer (qkv projection, attention, output projection) timed by lra bench attn, {}; "
      "steps/s = 1000 / median ms of one step; memory = peak of the layer's planned arenas; (x) = relative to "
      "softmax at the same length: speed as softmax ms / ms, memory as peak / softmax peak",
      t.setting));
  out.context.push_back(
      "Paper: LRA Table 2, training steps/s of the whole model on byte-level Text, batch 32, 4x4 TPU v3, peak GB per "
      "device; (x) as printed for speed, computed from the GB for memory. The workloads and hardware differ: compare "
      "the relative figures");
  out.context.push_back(fmt::format("Records: {}", fmt::join(t.sources, ", ")));

  Notes notes;
  out.header = {"Variant", "Source"};
  for (int L : t.lengths) out.header.push_back(fmt::format("steps/s L={}", L));
  for (int L : t.lengths) out.header.push_back(fmt::format("memory L={}", L));
  auto rel = [](const std::optional<double>& x) { return x ? fmt::format(" ({:.2f}x)", *x) : std::string(); };
  std::vector<std::string> no_row;
  for (const EfficiencyRow& row : t.rows) {
    if (row.attn == "softmax" && !row.attn_params.value("store_probs", false))
      notes.plain(
          "softmax is lra's tiled softmax, which never stores the L x L attention matrix, so its memory "
          "grows linearly; LRA's Transformer stored it. --set store_probs=true measures that standard "
          "implementation (lra bench attn and lra reproduce --table lra-efficiency take it).");
    std::vector<std::string> ours = {row.attn, "ours"};
    for (const auto& c : row.cells)
      ours.push_back(c.present ? format_number(c.steps_per_sec(), c.steps_per_sec() >= 100 ? 1 : 2) + rel(c.speed_rel)
                               : std::string("missing"));
    for (const auto& c : row.cells)
      ours.push_back(c.present ? format_number(c.peak_mib, 1) + " MiB" + rel(c.memory_rel) : std::string("missing"));
    out.rows.push_back(ours);
    out.row_kind.push_back("ours");
    if (row.published_row.empty()) {
      no_row.push_back(row.attn);
      continue;
    }
    std::vector<std::string> paper = {"", row.published_row};
    for (int L : t.lengths) {
      const PublishedValue* v = published.efficiency(row.attn, "steps_per_sec", L);
      if (v == nullptr || !v->value) {
        paper.push_back(published_cell(v, notes, 1));
        continue;
      }
      paper.push_back(format_number(*v->value, 1) + (v->relative ? fmt::format(" ({:.1f}x)", *v->relative) : "") +
                      published_marks(*v, notes));
    }
    for (int L : t.lengths) {
      const PublishedValue* v = published.efficiency(row.attn, "memory_gb", L);
      const PublishedValue* ref = published.efficiency("softmax", "memory_gb", L);
      if (v == nullptr || !v->value) {
        paper.push_back(published_cell(v, notes, 2));
        continue;
      }
      paper.push_back(format_number(*v->value, 2) + " GB" +
                      (ref != nullptr && ref->value ? fmt::format(" ({:.2f}x)", *v->value / *ref->value) : "") +
                      published_marks(*v, notes));
    }
    out.rows.push_back(paper);
    out.row_kind.push_back("paper");
  }
  if (!no_row.empty())
    notes.plain(fmt::format("No published row for {}: shown without a paper value.", fmt::join(no_row, ", ")));
  add_file_notes(published, notes);
  out.notes = notes.lines();
  return out;
}

}  // namespace

std::string AccuracyRow::name() const { return config.empty() ? attn : fmt::format("{} [{}]", attn, config); }

bool AccuracyTable::avg_is_lra() const {
  for (const auto& task : kLraAvgTasks)
    if (!contains(avg_tasks, task)) return false;
  return true;
}

std::string task_label(const std::string& task) {
  static const std::map<std::string, std::string> labels = {{"listops", "ListOps"},       {"text", "Text"},
                                                            {"retrieval", "Retrieval"},   {"image", "Image"},
                                                            {"pathfinder", "Pathfinder"}, {"pathx", "Path-X"}};
  const auto it = labels.find(task);
  return it == labels.end() ? task : it->second;
}

std::string format_number(double v, int decimals) { return fmt::format("{:.{}f}", v, decimals); }

Report build_report(const RecordSet& records, Published published, const ReportScope& opt) {
  Report r;
  r.published = std::move(published);
  r.skipped = records.skipped;
  if (opt.accuracy) {
    std::set<std::string> presets;
    std::vector<const RunEntry*> runs;
    for (const RunEntry& e : records.runs) {
      if (!opt.preset.empty() && e.preset != opt.preset) continue;
      if (!opt.tasks.empty() && !contains(opt.tasks, e.task)) continue;
      if (!opt.attns.empty() && !contains(opt.attns, e.attn)) continue;
      if (opt.keep && !opt.keep(e)) continue;
      runs.push_back(&e);
      presets.insert(e.preset);
    }
    // A grid given explicitly (lra reproduce) gets its table even before any cell has run.
    if (presets.empty() && !opt.preset.empty() && !opt.tasks.empty() && !opt.attns.empty()) presets.insert(opt.preset);
    // The paper's preset first, then the others by name: never one table for two presets.
    std::vector<std::string> order = ordered(presets, {"paper", "cpu"});
    for (const auto& preset : order) {
      std::vector<const RunEntry*> mine;
      for (const RunEntry* e : runs)
        if (e->preset == preset) mine.push_back(e);
      r.accuracy.push_back(build_accuracy_table(preset, mine, r.published, opt));
    }
  }
  if (opt.efficiency) r.efficiency = build_efficiency_tables(records.benches, r.published, opt);
  return r;
}

std::vector<TableText> report_tables(const Report& report) {
  std::vector<TableText> out;
  for (const auto& t : report.accuracy) out.push_back(accuracy_text(t, report.published));
  for (size_t i = 0; i < report.efficiency.size(); ++i)
    out.push_back(efficiency_text(report.efficiency[i], i, report.published));
  return out;
}

}  // namespace lra
